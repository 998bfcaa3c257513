"""The command line of the benchmarks: options, the run, the files written."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from . import _instructions, _journal, _report, _scenarios
from ._peers import AiohttpPeer, OursPeer
from ._results import Results
from ._server import client_cpu, pin_self, pinning, server_cpu

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
#: The part of the docs page that a full run rewrites.
DOCS_START, DOCS_END = "<!-- results:start -->", "<!-- results:end -->"

Scenario = Callable[[Results, _scenarios.Settings, Callable[[str], None]], None]
SCENARIOS: dict[str, Scenario] = {
    "overhead": _scenarios.overhead,
    "batches": _scenarios.batches,
    "scale": _scenarios.scale,
    "import": _scenarios.import_time,
    "cpu": _scenarios.cpu_per_flow,
    "journal": _journal.journal,
    "instructions": _instructions.instructions,
}
#: Clients whose failure means the harness itself is broken.
REQUIRED = (OursPeer.name, AiohttpPeer.name)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=here.parent / "sendblue_lines",
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    return f"commit {head}" + (", sendblue_lines/ modified" if dirty else "")


def environment() -> dict[str, str]:
    """What the run ran on, for the report's first line."""
    if pinning():
        pinned = f"clients pinned to CPU {client_cpu()}, sandbox to CPU {server_cpu()}"
    elif client_cpu() is not None:
        pinned = (
            "processes pinned only at scale: client CPU "
            f"{client_cpu()}, sandbox CPU {server_cpu()}"
        )
    else:
        pinned = "one CPU: not pinned"
    return {
        "load_start": _load(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        "pinning": pinned,
        "sendblue_lines": _version("sendblue-lines"),
        "commit": _commit(),
        "aiohttp": _version("aiohttp"),
        "httpx": _version("httpx"),
        "sendblue": _version("sendblue"),
    }


def _load() -> str:
    """The 1-minute load average: other work on the machine adds noise."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def refresh_docs(report: str, page: Path = DOCS_PAGE) -> bool:
    """Put `report` between the markers of the docs page; False if it has none.

    The report's title is dropped and its headings go one level down, to sit
    under the page's own; its image (a path beside results.md) is left out.
    """
    try:
        text = page.read_text(encoding="utf-8")
    except OSError:
        return False
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start:
        return False
    body = []
    for line in report.splitlines()[1:]:
        if line.startswith("!["):
            continue
        body.append("#" + line if line.startswith("## ") else line)
    _write(
        page,
        text[: start + len(DOCS_START)]
        + "\n"
        + "\n".join(body).strip()
        + "\n"
        + text[end:],
    )
    return True


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Handled like Ctrl-C, so that every `finally` stops its sandbox: through
    # SIGINT's own handler when there is one (inside `asyncio.run` it cancels
    # the running task cleanly), else by raising as Ctrl-C would.
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Benchmark sendblue-lines against plain aiohttp, httpx and the official "
            "sendblue SDK, on a local sandbox, and write results.md, results.json "
            "and chart.png."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny counts, well under a minute: a smoke test; times are not judged",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where to write the results (default: {RESULTS_DIR})",
    )
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated scenarios to run (default: all: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the clients to one CPU and the sandbox to another",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a target is missed (never with --quick)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and write the report; return the exit code.

    0 when the harness ran (whatever the times), 1 when it broke (or a
    target was missed, with --strict), 2 for bad options, 130 when
    interrupted.
    """
    args = build_parser().parse_args(argv)
    only = args.only or ",".join(SCENARIOS)
    selected = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in selected if name not in SCENARIOS]
    if unknown:
        _log(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
        return 2
    output: Path = args.output or RESULTS_DIR
    output.mkdir(parents=True, exist_ok=True)
    settings = _scenarios.QUICK if args.quick else _scenarios.FULL
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.pin:
        pin_self()
    results = Results(quick=args.quick, environment=environment())
    started = time.perf_counter()
    try:
        for name in selected:
            SCENARIOS[name](results, settings, _log)
    except KeyboardInterrupt:
        _log("interrupted: every sandbox was stopped; nothing written")
        return 130
    results.elapsed = time.perf_counter() - started
    results.environment["load_end"] = _load()
    results.targets = _report.evaluate(results)
    top = _scenarios.top_imports("sendblue_lines") if "import" in selected else None
    report = _report.markdown(results, top)
    _write(output / "results.md", report)
    _write(output / "results.json", _report.to_json(results))
    problem = _report.chart(results, output / "chart.png")
    if problem:
        _log(f"no chart: {problem}")
    _log("")
    _log(_report.targets_text(results))
    _log(f"\nwrote {output / 'results.md'} in {results.elapsed:.0f} s")
    # Only a full run of every scenario into the committed results may
    # rewrite the docs' table.
    full_default = (
        not args.quick and output.resolve() == RESULTS_DIR and args.only is None
    )
    if full_default and refresh_docs(report):
        _log(f"refreshed the table in {DOCS_PAGE}")
    broken = [
        f"{row.name} in {table.title}: {row.skipped}"
        for table in [*results.tables.values(), *results.batches.values()]
        for row in table.rows
        if row.name in REQUIRED and row.skipped
    ]
    if broken:
        _log("the harness is broken:\n  " + "\n  ".join(broken))
        return 1
    if args.strict and not args.quick and any(t.met is False for t in results.targets):
        return 1
    return 0
