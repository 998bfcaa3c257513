"""Turning results into the verdicts, the Markdown table and the chart."""

from __future__ import annotations

import dataclasses
import json
import operator
import statistics
import textwrap
from pathlib import Path
from typing import Any

from ._journal import NONE, POSTGRES, SQLITE, paired_ratio
from ._measure import Summary
from ._peers import AiohttpPeer, HttpxPeer, OfficialPeer, OursPeer
from ._results import Results, Row, Table, Target

OURS = OursPeer.name
AIOHTTP = AiohttpPeer.name

#: The guard of issue 25, which retired issue 13's tighter targets (the
#: sequential and CPU-per-line 1.05x, and the import's 15 ms): CPU per line,
#: import time and instructions are reported, with no target.
OVERHEAD_MAX_RATIO = 1.15
BATCH_MAX_RATIO = 1.05
#: The peers ours must be ahead of in every scenario they run in.
SLOWER_PEERS = (HttpxPeer.name, OfficialPeer.name)
SCALE_MAX_GROWTH_MIB = 30.0
#: Growth allowed between the first tenth of the outcomes consumed from
#: `batch()` and the last: 2 MiB over 9,000 outcomes is ~230 bytes each,
#: less than one retained outcome would cost.
CONSUMED_MAX_GROWTH_MIB = 2.0
#: A journaled batch against the same batch without a journal (issue 25).
JOURNAL_MAX_RATIO = 1.15
#: Durable commits a journaled purchase may cost (issue 25).
JOURNAL_MAX_COMMITS = 2.0
#: Issue 3 quotes the bound at this concurrency.
ISSUE3_CONCURRENCY = 20


def _cell(summary: Summary | None, scale: float = 1.0, digits: int = 3) -> str:
    if summary is None:
        return "-"
    return (
        f"{summary.median * scale:.{digits}f} "
        f"({summary.low * scale:.{digits}f}-{summary.high * scale:.{digits}f})"
    )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def _paired(table: Table, name: str, other: str) -> str:
    """The quartiles and range of the pair-by-pair ratios, when both ran in step."""
    ratios = table.pairs(name, other, operator.truediv)
    if ratios is None or len(ratios) < 2:
        return ""
    return (
        f" (pair by pair: quartiles {_quartiles(ratios)}, "
        f"range {min(ratios):.3f}-{max(ratios):.3f})"
    )


def _quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low:.3f}-{high:.3f}"


def _summary(table: Table, name: str) -> Summary | None:
    row = table.row(name)
    return None if row is None else row.summary


def _skipped(row: Row) -> str:
    return f"not measured: {row.skipped}"


def evaluate(results: Results) -> list[Target]:
    """Check every target of the guard (issues 3, 6, 25) against what was measured."""
    targets: list[Target] = []

    table = results.tables.get("overhead")
    if table is not None:
        flows = table.params["flows"]
        walls = table.params.get("block_wall_ratios") or []
        cpus = table.params.get("block_cpu_ratios") or []
        # Judged block pair by block pair (see `_pair_blocks`): the median
        # of the ratios of adjacent blocks, not the ratio of two medians.
        ratio = statistics.median(walls) if walls else None
        targets.append(
            Target(
                name=f"Overhead: {flows:,} sequential provision() (issue 25)",
                goal=f"≤ {OVERHEAD_MAX_RATIO:.2f}x plain aiohttp (median of "
                "paired blocks)",
                measured=f"{_ratio(ratio)} ({len(walls)} block pairs, "
                f"quartiles {_quartiles(walls)}; totals "
                f"{_ratio(table.ratio(OURS, table.row(AIOHTTP)))})"
                if ratio
                else "not measured",
                met=None if ratio is None else ratio <= OVERHEAD_MAX_RATIO,
            )
        )
        if cpus:
            targets.append(
                Target(
                    name="Overhead: client CPU per sequential provision()",
                    goal="reported (vs plain aiohttp, median of paired blocks)",
                    measured=f"{_ratio(statistics.median(cpus))} (quartiles "
                    f"{_quartiles(cpus)})",
                    met=None,
                )
            )
        controls = table.params.get("control_wall_ratios") or []
        if controls:
            # The same code on both sides: how far this run's machine alone
            # moved a median of paired blocks away from 1.
            targets.append(
                Target(
                    name="Overhead: plain aiohttp against itself (A/A control)",
                    goal="reported (a second aiohttp session, paired as ours is)",
                    measured=f"{_ratio(statistics.median(controls))} wall "
                    f"(quartiles {_quartiles(controls)}), "
                    f"{_ratio(statistics.median(table.params['control_cpu_ratios']))}"
                    " client CPU",
                    met=None,
                )
            )

    for concurrency, table in results.batches.items():
        best = table.best(exclude=OURS)
        ratio = table.ratio(OURS, best)
        bound = results.bounds[concurrency]
        to_bound = table.ratio(OURS, Row("bound", [bound]))
        count = table.params["count"]
        targets.append(
            Target(
                name=f"Batch of {count}, concurrency {concurrency}, "
                f"{table.params['latency_ms']} ms (issue 6)",
                goal=f"≤ {BATCH_MAX_RATIO:.2f}x the fastest peer",
                measured=(
                    f"{_ratio(ratio)} {best.name}; {_ratio(to_bound)} the "
                    f"bound ({bound:.3f} s)"
                    if ratio is not None and best is not None
                    else "not measured"
                ),
                met=None if ratio is None else ratio <= BATCH_MAX_RATIO,
            )
        )
        if concurrency == ISSUE3_CONCURRENCY:
            ratio = table.ratio(OURS, table.row(AIOHTTP))
            targets.append(
                Target(
                    name=f"Batch of {count}, concurrency {concurrency}, "
                    f"{table.params['latency_ms']} ms (issue 3)",
                    goal=f"≤ {BATCH_MAX_RATIO:.2f}x plain aiohttp; "
                    f"ratio to the {bound:.2f} s bound reported",
                    measured=f"{_ratio(ratio)} aiohttp; {_ratio(to_bound)} the bound"
                    if ratio is not None
                    else "not measured",
                    met=None if ratio is None else ratio <= BATCH_MAX_RATIO,
                )
            )

    table = results.tables.get("scale")
    if table is not None:
        ours = table.row(OURS)
        growth = ours.extras.get("rss_growth_mib") if ours and ours.values else None
        targets.append(
            Target(
                name=f"Scale: peak RSS growth, {table.params['count']:,} lines",
                goal=f"< {SCALE_MAX_GROWTH_MIB:.0f} MiB",
                measured=f"{max(growth):.1f} MiB (worst run)"
                if growth
                else "not measured",
                met=None if not growth else max(growth) < SCALE_MAX_GROWTH_MIB,
            )
        )
        flat = (
            ours.extras.get("rss_after_first_tenth_to_end_mib")
            if ours and ours.values
            else None
        )
        # The median run: one run can catch the allocator taking a new
        # arena (a single step of ~1 MiB), which a leak would not look like:
        # a leak grows in every run, step after step.
        middle = statistics.median(flat) if flat else None
        targets.append(
            Target(
                name="Scale: memory vs outcomes consumed from batch()",
                goal=f"RSS from 10% to 100% consumed ≤ +{CONSUMED_MAX_GROWTH_MIB:.0f} "
                "MiB (median run)",
                measured=f"{middle:+.2f} MiB (worst run {max(flat):+.2f})"
                if flat and middle is not None
                else "not measured",
                met=None if middle is None else middle <= CONSUMED_MAX_GROWTH_MIB,
            )
        )
        held = [
            value
            for row in table.rows
            for value in row.extras.get("sandbox_bytes_per_line", [])
        ]
        targets.append(
            Target(
                name="Scale: the sandbox's memory per purchase",
                goal="reported (RSS after the run minus after the warm-up, per line)",
                measured=f"{statistics.median(held):,.0f} B (median run)"
                if held
                else "not measured",
                met=None,
            )
        )
        ratio = table.ratio(OURS, table.row(AIOHTTP))
        targets.append(
            Target(
                name="Scale: lines per second",
                goal="reported (vs plain aiohttp)",
                measured=_ratio(ratio) if ratio else "not measured",
                met=None,
            )
        )

    table = results.tables.get("import")
    if table is not None:
        # Each run times every command once: the two times of one run saw the
        # same machine, and their difference cancels what moved both.
        extras = table.pairs("import sendblue_lines", "import aiohttp", operator.sub)
        if extras is not None:
            extra = statistics.median(extras)
            targets.append(
                Target(
                    name="Import: python -c 'import sendblue_lines'",
                    goal="reported (over aiohttp, median of paired runs)",
                    measured=f"{extra:+.1f} ms",
                    met=None,
                )
            )
        inside = table.params.get("in_process_ms", {}).get("import sendblue_lines")
        if inside:
            targets.append(
                Target(
                    name="Import: import sendblue_lines once aiohttp is loaded",
                    goal="reported (timed in-process, median of runs)",
                    measured=f"{statistics.median(inside):.1f} ms",
                    met=None,
                )
            )
        extras = table.pairs(
            "from sendblue_lines import Provisioner", "import aiohttp", operator.sub
        )
        if extras is not None:
            extra = statistics.median(extras)
            targets.append(
                Target(
                    name="Import: python -c 'from sendblue_lines import Provisioner'",
                    goal="reported (over aiohttp, median of paired runs)",
                    measured=f"{extra:+.1f} ms",
                    met=None,
                )
            )

    table = results.tables.get("cpu")
    if table is not None:
        ours, theirs = table.row(OURS), table.row(AIOHTTP)
        if ours and theirs and ours.summary and theirs.summary:
            extra = ours.summary.median - theirs.summary.median
            ratio = ours.summary.median / theirs.summary.median
            pairs = "medians"
            ratios = table.pairs(OURS, AIOHTTP, operator.truediv)
            if ratios is not None:
                # Pair by pair: the two ran one after the other, side by side.
                ratio = statistics.median(ratios)
                pairs = f"median of {len(ratios)} paired runs"
            targets.append(
                Target(
                    name=f"CPU per line: batch of {table.params['count']:,} at "
                    f"concurrency {table.params['concurrency']}",
                    goal=f"reported (vs plain aiohttp, {pairs})",
                    measured=f"{ratio:.3f}x ({extra:+.0f} µs/line)"
                    + _paired(table, OURS, AIOHTTP),
                    met=None,
                )
            )
    targets += _journal_targets(results)
    targets += _ahead_targets(results)
    table = results.tables.get("instructions")
    if table is not None:
        counted, base = _summary(table, OURS), _summary(table, AIOHTTP)
        if counted is not None and base is not None:
            targets.append(
                Target(
                    name="Instructions per sequential provision() (callgrind)",
                    goal="reported (vs plain aiohttp; the same on a loaded machine)",
                    measured=f"{counted.median / base.median:.3f}x "
                    f"({counted.median / 1e3:,.0f}k against {base.median / 1e3:,.0f}k)",
                    met=None,
                )
            )
    return targets


def _ahead_targets(results: Results) -> list[Target]:
    """Ours ahead of httpx and the official SDK in every scenario both ran in."""
    targets: list[Target] = []
    tables = [*results.tables.values(), *results.batches.values()]
    for table in tables:
        ours = table.row(OURS)
        theirs = [table.row(name) for name in SLOWER_PEERS]
        measured = [row for row in theirs if row is not None and row.summary]
        if ours is None or ours.summary is None or not measured:
            continue
        sign = 1 if table.lower_is_better else -1
        behind = [
            row.name
            for row in measured
            if row.summary is not None
            and sign * ours.summary.median > sign * row.summary.median
        ]
        ratios = ", ".join(
            f"{_ratio(table.ratio(OURS, row))} {row.name}" for row in measured
        )
        targets.append(
            Target(
                name=f"{table.title}: ahead of httpx and the official SDK",
                goal="ours better than each (median)",
                measured=ratios + (f"; behind {', '.join(behind)}" if behind else ""),
                met=not behind,
            )
        )
    return targets


def _journal_targets(results: Results) -> list[Target]:
    targets: list[Target] = []
    table = results.tables.get("journal_batch")
    if table is not None:
        for kind in (SQLITE, POSTGRES):
            row = table.row(kind)
            ratio = paired_ratio(table, kind)
            targets.append(
                Target(
                    name=f"Journal: batch of {table.params['count']}, concurrency "
                    f"{table.params['concurrency']}, {table.params['latency_ms']} ms, "
                    f"{kind} (issue 25)",
                    goal=f"≤ {JOURNAL_MAX_RATIO:.2f}x the batch without a journal "
                    "(median of paired rounds)",
                    measured=_ratio(ratio)
                    if ratio is not None
                    else (_skipped(row) if row and row.skipped else "not measured"),
                    met=None if ratio is None else ratio <= JOURNAL_MAX_RATIO,
                )
            )
    for key, what in (
        ("journal_sequential", "sequential provision()"),
        ("journal_batch", "batch"),
    ):
        table = results.tables.get(key)
        if table is None:
            continue
        extra = "commits_per_purchase"
        # A batch adds its one reservation (the fleet's slots for all of its
        # purchases, taken before any preview), shared by `count` purchases.
        count = table.params.get("count") if key == "journal_batch" else None
        limit = JOURNAL_MAX_COMMITS + (1 / count if count else 0)
        goal = f"≤ {JOURNAL_MAX_COMMITS:g}" + (
            f" + 1 reservation per batch ({limit:.3f})" if count else ""
        )
        for kind in (SQLITE, POSTGRES):
            row = table.row(kind)
            commits = row.extra_summary(extra) if row else None
            targets.append(
                Target(
                    name=f"Journal: durable commits per purchase, {what}, {kind}",
                    goal=goal,
                    measured=f"{commits.high:.3f} (worst run)"
                    if commits
                    else (_skipped(row) if row and row.skipped else "not measured"),
                    met=None if commits is None else commits.high <= limit + 1e-9,
                )
            )
    return targets


def _journal_sections(results: Results) -> list[str]:
    out: list[str] = []
    table = results.tables.get("journal_sequential")
    if table is not None:
        out += ["", f"## 6. {table.title}", ""]
        out += [
            "The same `provision()` with no journal, with `SQLiteJournal` (a "
            "temporary file, WAL, `synchronous=FULL`) and with `PostgresJournal` "
            "(a schema of its own), all open at once, in alternating blocks. "
            "A commit is one journal write (each is one transaction).",
            "",
        ]
        base = table.row(NONE)
        base_wall = base.extra_summary("wall_per_purchase_us") if base else None
        rows = []
        for row in table.rows:
            wall = row.extra_summary("wall_per_purchase_us")
            if wall is None:
                rows.append([row.name, _skipped(row), "", "", ""])
                continue
            rows.append(
                [
                    row.name,
                    _cell(wall, digits=0),
                    "-"
                    if base_wall is None
                    else f"{wall.median - base_wall.median:+.0f}",
                    _cell(row.extra_summary("cpu_per_purchase_us"), digits=0),
                    _cell(row.extra_summary("commits_per_purchase"), digits=2),
                ]
            )
        out += _table(
            [
                "journal",
                "wall per purchase (µs)",
                "journal's cost (µs)",
                "client CPU per purchase (µs)",
                "commits per purchase",
            ],
            rows,
        )
    table = results.tables.get("journal_batch")
    if table is not None:
        out += ["", f"## 7. {table.title}", ""]
        out += [
            "`provision_many()` with each journal, one fresh sandbox per round, "
            "the kinds interleaved; the ratio is the median over rounds of the "
            "journaled batch over the unjournaled one of the same round.",
            "",
        ]
        rows = []
        for row in table.rows:
            if row.summary is None:
                rows.append([row.name, _skipped(row), "", ""])
                continue
            rows.append(
                [
                    row.name,
                    _cell(row.summary),
                    _ratio(paired_ratio(table, row.name)),
                    _cell(row.extra_summary("commits_per_purchase"), digits=3),
                ]
            )
        out += _table(
            ["journal", "batch wall (s)", "÷ no journal", "commits per purchase"],
            rows,
        )
    return out


# -- Markdown ---------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _verdict(target: Target, quick: bool) -> str:
    if quick and target.met is not None:
        return "not judged (--quick)"
    return f"**{target.verdict}**" if target.met is False else target.verdict


def _overhead(table: Table) -> list[str]:
    flows = table.params["flows"]
    best = table.best()
    rows = []
    for row in table.rows:
        if row.summary is None:
            rows.append([row.name, _skipped(row), "", "", "", ""])
            continue
        rows.append(
            [
                row.name,
                _cell(row.summary),
                _cell(row.summary, 1000 / flows),
                _ratio(table.ratio(row.name, best)),
                _cell(row.extra_summary("cpu_per_flow_us"), digits=0),
                _cell(row.extra_summary("server_cpu_per_flow_us"), digits=0),
            ]
        )
    return _table(
        [
            "client",
            f"{flows:,} flows (s)",
            "per flow (ms)",
            "÷ fastest",
            "client CPU/flow (µs)",
            "server CPU/flow (µs)",
        ],
        rows,
    )


def _batches(results: Results) -> list[str]:
    names = [row.name for row in next(iter(results.batches.values())).rows]
    rows = []
    for concurrency, table in results.batches.items():
        bound = results.bounds[concurrency]
        best = table.best(exclude=OURS)
        cells = [str(concurrency), f"{bound:.3f}"]
        for name in names:
            row = table.row(name)
            cells.append(
                "-" if row is None or row.summary is None else _cell(row.summary)
            )
        cells.append(
            f"{_ratio(table.ratio(OURS, best))} ({best.name})" if best else "-"
        )
        cells.append(_ratio(table.ratio(OURS, Row("bound", [bound]))))
        rows.append(cells)
    return _table(
        [
            "concurrency",
            "bound (s)",
            *[f"{name} (s)" for name in names],
            "ours ÷ fastest peer",
            "ours ÷ bound",
        ],
        rows,
    )


def _scale(table: Table) -> list[str]:
    best = table.best()
    rows = []
    for row in table.rows:
        if row.summary is None:
            rows.append([row.name, _skipped(row), "", "", "", "", "", ""])
            continue
        flat = row.extra_summary("rss_after_first_tenth_to_end_mib")
        rows.append(
            [
                row.name,
                _cell(row.summary, digits=0),
                _ratio(table.ratio(row.name, best)),
                _cell(row.extra_summary("rss_growth_mib"), digits=1),
                _cell(flat, digits=2) if flat else "n/a (gather)",
                _cell(row.extra_summary("cpu_per_line_us"), digits=0),
                _cell(row.extra_summary("server_cpu_share"), 100, digits=0),
                _cell(row.extra_summary("sandbox_bytes_per_line"), digits=0),
            ]
        )
    return _table(
        [
            "client",
            "lines/s",
            "÷ fastest",
            "peak RSS growth (MiB)",
            "RSS 10%→100% consumed (MiB)",
            "client CPU/line (µs)",
            "server busy (%)",
            "sandbox B/line",
        ],
        rows,
    )


def _imports(table: Table) -> list[str]:
    base = table.row("python -c pass")
    base_median = base.summary.median if base and base.summary else None
    best = table.best()
    rows = []
    for row in table.rows:
        summary = row.summary
        if summary is None:
            continue
        rows.append(
            [
                f'`python -c "{row.name}"`'
                if row.name != "python -c pass"
                else "`python -c pass`",
                _cell(summary, digits=1),
                "-" if base_median is None else f"{summary.median - base_median:+.1f}",
                _ratio(table.ratio(row.name, best)),
            ]
        )
    return _table(["command", "wall (ms)", "over `pass` (ms)", "÷ fastest"], rows)


def _cpu(table: Table) -> list[str]:
    best = table.best()
    theirs = table.row(AIOHTTP)
    base = theirs.summary.median if theirs and theirs.summary else None
    rows = []
    for row in table.rows:
        if row.summary is None:
            rows.append([row.name, _skipped(row), "", "", ""])
            continue
        rows.append(
            [
                row.name,
                _cell(row.summary, digits=0),
                _ratio(table.ratio(row.name, best)),
                "-" if base is None else f"{row.summary.median - base:+.0f}",
                _cell(row.extra_summary("wall"), digits=3),
            ]
        )
    return _table(
        ["client", "CPU/line (µs)", "÷ fastest", "vs aiohttp (µs)", "batch wall (s)"],
        rows,
    )


def markdown(results: Results, top: list[tuple[str, float]] | None = None) -> str:
    """The whole report as Markdown."""
    env = results.environment
    mode = (
        "Quick smoke run (`--quick`): times are NOT judged"
        if results.quick
        else ("Full run")
    )
    out = [
        "# sendblue-lines benchmarks",
        "",
        f"{mode}, {env.get('date', '?')}, took {results.elapsed / 60:.1f} min. "
        f"Python {env.get('python')}, {env.get('platform')}, {env.get('cpus')} CPUs "
        f"({env.get('pinning')}); sendblue-lines {env.get('sendblue_lines')} "
        f"({env.get('commit')}), aiohttp {env.get('aiohttp')}, httpx "
        f"{env.get('httpx')}, sendblue {env.get('sendblue')}. Load average "
        f"{env.get('load_start')} at the start, {env.get('load_end')} at the end.",
        "",
        "Each cell is the median over repeated runs, with the minimum-maximum in "
        "brackets. The clients ran interleaved (A B C, C B A, ...) against a "
        "sandbox in its own process on 127.0.0.1, a fresh one per round; "
        "`÷ fastest` is the median over the best median of the same table.",
        "",
        "## Targets",
        "",
    ]
    out += _table(
        ["target", "goal", "measured", "verdict"],
        [
            [t.name, t.goal, t.measured, _verdict(t, results.quick)]
            for t in results.targets
        ],
    )
    out += ["", "![chart: every scenario and the targets](chart.png)"]
    table = results.tables.get("overhead")
    if table is not None:
        out += ["", f"## 1. {table.title}", ""]
        out += [
            "Limits, preview and confirm per line, one line after the other, "
            "on one client. In each round all the clients are open at once and "
            f"run their flows in {table.params['blocks']} blocks, the clients' "
            "blocks alternating; a cell is the sum of a client's blocks. Client "
            "CPU is `time.process_time()` of the benchmark process; server CPU "
            "is the sandbox process's, from /proc.",
            "",
        ]
        out += _overhead(table)
    if results.batches:
        first = next(iter(results.batches.values()))
        out += [
            "",
            f"## 2. Latency-bound batches: {first.params['count']} lines, "
            f"{first.params['latency_ms']} ms per request",
            "",
            "Wall time of one batch (one limits read, then preview and confirm per "
            "line) beside the bound: limits + ceil(count / concurrency) rounds of "
            "preview and confirm, each request taking the server's latency. Ours "
            "is `Provisioner.provision_many`; the peers use `asyncio.gather` with "
            "an `asyncio.Semaphore`.",
            "",
        ]
        out += _batches(results)
    table = results.tables.get("scale")
    if table is not None:
        out += ["", f"## 3. {table.title}", ""]
        out += [
            "Each run in a fresh process after a warm-up batch. Peak RSS growth "
            "is VmHWM during the run (reset after the warm-up) minus VmRSS "
            "before it. Ours consumes `Provisioner.batch()` outcome by outcome "
            "and samples VmRSS at every tenth; the aiohttp peer gathers all the "
            "slots at once. `server busy` is the sandbox's CPU time over the "
            "run's wall time; `sandbox B/line` its VmRSS after the run minus "
            "after the warm-up, per line: what a purchase costs a long-running "
            "sandbox, which keeps its charges whole and caps its request log "
            "and old tokens at 10,000 each.",
            "",
        ]
        out += _scale(table)
        if results.memory_samples:
            samples = results.memory_samples[0]
            out += [
                "",
                "RSS (MiB) of our process by outcomes consumed, first run: "
                + ", ".join(f"{n:,}: {mib:.1f}" for n, mib in samples)
                + ".",
            ]
    table = results.tables.get("import")
    if table is not None:
        out += ["", f"## 4. {table.title}", ""]
        out += _imports(table)
        inside = table.params.get("in_process_ms")
        if inside:
            out += [
                "",
                "The same imports timed inside one process once aiohttp is loaded "
                "(what our package adds, without two whole processes' start-up "
                "and exit; ms, median with the minimum-maximum): "
                + ", ".join(
                    f"`{statement}` {_cell(Summary.of(values), digits=1)}"
                    for statement, values in inside.items()
                    if values
                )
                + ".",
            ]
        if top:
            out += [
                "",
                "What `import sendblue_lines` loads once aiohttp is loaded, the "
                "slowest modules by their own time (ms, `-X importtime`, one run, "
                "inflated by the profiler): "
                + ", ".join(f"`{name.strip()}` {ms:.1f}" for name, ms in top)
                + ".",
            ]
    table = results.tables.get("cpu")
    if table is not None:
        out += ["", f"## 5. {table.title}, zero latency", ""]
        out += [
            "Python CPU time of the client process per line bought "
            "(`time.process_time()`), the server's work excluded.",
            "",
        ]
        out += _cpu(table)
    out += _journal_sections(results)
    table = results.tables.get("instructions")
    if table is not None:
        few, many = table.params["flows"]
        out += ["", f"## 8. {table.title}", ""]
        out += [
            "What the whole client process executes, counted by `valgrind "
            "--tool=callgrind` (user space only), for "
            f"{many} sequential purchases minus {few}, divided by {many - few}: "
            "a count, not a time, so it is the same on a loaded machine.",
            "",
        ]
        rows = [
            [row.name, _skipped(row), ""]
            if row.summary is None
            else [
                row.name,
                f"{row.summary.median:,.0f}",
                _ratio(table.ratio(row.name, table.row(AIOHTTP))),
            ]
            for row in table.rows
        ]
        out += _table(["client", "instructions per purchase", "÷ aiohttp"], rows)
    if results.notes or results.failures:
        out += ["", "## Notes", ""]
        out += [f"- {note}" for note in results.notes]
        out += [f"- failed: {failure}" for failure in results.failures]
    return "\n".join(out) + "\n"


def targets_text(results: Results) -> str:
    """The verdicts, one per line, for the terminal."""
    width = max((len(t.name) for t in results.targets), default=0)
    return "\n".join(
        f"{_verdict(t, results.quick):<8} {t.name:<{width}}  {t.goal}: {t.measured}"
        for t in results.targets
    )


def to_json(results: Results) -> str:
    """Every number, for whoever wants to redo the analysis."""

    def default(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        raise TypeError(type(value).__name__)

    return json.dumps(dataclasses.asdict(results), indent=1, default=default)


# -- chart ------------------------------------------------------------------


def chart(results: Results, path: Path) -> str | None:
    """Draw the chart as a PNG; None, or why it could not be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'sendblue-lines[bench]')"

    figure, axes = plt.subplots(2, 4, figsize=(22, 9.5))
    title = "sendblue-lines benchmarks" + (
        " (quick: not judged)" if results.quick else ""
    )
    figure.suptitle(title, fontsize=14)
    _overhead_bars(axes[0][0], results.tables.get("overhead"))
    _batch_lines(axes[0][1], results)
    _batch_ratios(axes[0][2], results)
    _bars(axes[0][3], results.tables.get("cpu"))
    _bars(axes[1][0], results.tables.get("scale"))
    _memory(axes[1][1], results)
    _bars(axes[1][2], results.tables.get("import"))
    _targets(axes[1][3], results)
    figure.tight_layout()
    # "tight": the right-hand column (the CPU panel's title, the verdicts) is
    # wider than its cell, and would otherwise be cut off at the edge.
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return None


def _bars(axis: Any, table: Table | None, per: bool = False) -> None:
    if table is None:
        axis.set_axis_off()
        return
    rows = [row for row in table.rows if row.summary is not None]
    scale = 1.0
    unit = table.unit
    if per:
        scale, unit = 1000 / table.params["flows"], "ms per flow"
    names = [row.name for row in rows]
    medians = [row.summary.median * scale for row in rows if row.summary]
    lows = [
        (row.summary.median - row.summary.low) * scale for row in rows if row.summary
    ]
    highs = [
        (row.summary.high - row.summary.median) * scale for row in rows if row.summary
    ]
    colors = ["tab:blue" if name == OURS else "tab:gray" for name in names]
    axis.barh(names, medians, xerr=[lows, highs], color=colors, capsize=4)
    axis.invert_yaxis()
    axis.set_xlabel(unit + (" (higher is better)" if not table.lower_is_better else ""))
    axis.set_title(table.title, fontsize=10)
    for index, value in enumerate(medians):
        label = f" {value:,.0f}" if value >= 100 else f" {value:.3g}"
        axis.text(value, index, label, va="center", fontsize=8)


def _overhead_bars(axis: Any, table: Table | None) -> None:
    """Per sequential flow: wall time and the client's CPU time, side by side."""
    if table is None:
        axis.set_axis_off()
        return
    rows = [row for row in table.rows if row.summary is not None]
    flows = table.params["flows"]
    names = [row.name for row in rows]
    walls = [row.summary.median * 1e6 / flows for row in rows if row.summary]
    cpus = [
        spent.median if (spent := row.extra_summary("cpu_per_flow_us")) else 0.0
        for row in rows
    ]
    positions = list(range(len(rows)))
    height = 0.4
    axis.barh(
        [p - height / 2 for p in positions],
        walls,
        height=height,
        color=["tab:blue" if n == OURS else "tab:gray" for n in names],
        label="wall per flow",
    )
    axis.barh(
        [p + height / 2 for p in positions],
        cpus,
        height=height,
        color=["tab:cyan" if n == OURS else "silver" for n in names],
        label="client CPU per flow",
    )
    axis.set_yticks(positions, names)
    axis.invert_yaxis()
    axis.set_xlabel("µs per flow")
    axis.set_title(f"{table.title}: wall and client CPU", fontsize=10)
    for position, wall, cpu in zip(positions, walls, cpus, strict=True):
        axis.text(wall, position - height / 2, f" {wall:,.0f}", va="center", size=8)
        axis.text(cpu, position + height / 2, f" {cpu:,.0f} CPU", va="center", size=8)
    axis.legend(fontsize=8, loc="lower right")


def _batch_lines(axis: Any, results: Results) -> None:
    if not results.batches:
        axis.set_axis_off()
        return
    concurrencies = list(results.batches)
    names = [row.name for row in next(iter(results.batches.values())).rows]
    for name in names:
        points = [
            (c, row.summary.median)
            for c in concurrencies
            if (row := results.batches[c].row(name)) and row.summary
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            width = 2.5 if name == OURS else 1.0
            axis.plot(xs, ys, marker="o", label=name, linewidth=width)
    axis.plot(
        concurrencies,
        [results.bounds[c] for c in concurrencies],
        "k--",
        label="latency bound",
    )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks(concurrencies, [str(c) for c in concurrencies])
    axis.set_xlabel("concurrency")
    axis.set_ylabel("wall time of the batch (s)")
    first = next(iter(results.batches.values()))
    axis.set_title(
        f"Batch of {first.params['count']}, {first.params['latency_ms']} ms latency",
        fontsize=10,
    )
    axis.legend(fontsize=8)


def _batch_ratios(axis: Any, results: Results) -> None:
    if not results.batches:
        axis.set_axis_off()
        return
    concurrencies = list(results.batches)
    names = [row.name for row in next(iter(results.batches.values())).rows]
    width = 0.8 / max(len(names), 1)
    # Bars above the top are cut and labelled, so that a peer many times
    # the bound does not flatten the differences that matter near 1.
    top = 2.0
    for index, name in enumerate(names):
        xs, ys = [], []
        for position, c in enumerate(concurrencies):
            row = results.batches[c].row(name)
            if row and row.summary:
                xs.append(position + index * width)
                ys.append(row.summary.median / results.bounds[c])
        axis.bar(xs, [min(y, top) for y in ys], width=width, label=name)
        for x, y in zip(xs, ys, strict=True):
            if y > top:
                axis.text(x, top, f"{y:.0f}x", ha="center", va="bottom", fontsize=7)
    axis.axhline(1.0, color="k", linestyle="--", linewidth=1)
    axis.set_xticks(
        [p + 0.4 - width / 2 for p in range(len(concurrencies))],
        [str(c) for c in concurrencies],
    )
    axis.set_ylim(0.9, top + 0.15)
    axis.set_xlabel("concurrency")
    axis.set_ylabel("wall time ÷ latency bound")
    axis.set_title("Batches against the latency bound (1.0)", fontsize=10)
    axis.legend(fontsize=8)


def _memory(axis: Any, results: Results) -> None:
    if not results.memory_samples:
        axis.set_axis_off()
        return
    for run, samples in enumerate(results.memory_samples, 1):
        xs, ys = zip(*samples, strict=True)
        axis.plot(xs, ys, marker=".", label=f"run {run}")
    axis.set_xlabel("outcomes consumed from batch()")
    axis.set_ylabel("VmRSS (MiB)")
    low = min(mib for samples in results.memory_samples for _, mib in samples)
    axis.set_ylim(low - 5, low + 35)
    axis.set_title("Our RSS while consuming batch() (flat = no growth)", fontsize=10)
    axis.legend(fontsize=8)


def _targets(axis: Any, results: Results) -> None:
    axis.set_axis_off()
    lines = []
    for target in results.targets:
        verdict = "—" if results.quick and target.met is not None else target.verdict
        lines += textwrap.wrap(
            f"{verdict:<4} {target.name}: {target.measured}",
            width=62,
            subsequent_indent="     ",
        )
    axis.text(
        0,
        1,
        "\n".join(lines),
        va="top",
        ha="left",
        family="monospace",
        fontsize=7.5,
    )
    axis.set_title("Targets", fontsize=10)
