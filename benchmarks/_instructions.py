"""7. Instructions per sequential purchase, counted by callgrind.

The timed scenarios follow the machine: on a shared virtual machine the same
code's verdicts move by several percent from one run to the next. An
instruction count does not: `valgrind --tool=callgrind` counts what the
client process executes (user space only: the kernel's side of a system
call, and waiting, are not counted), the same figure on a loaded machine as
on a quiet one. Each client runs `benchmarks._count_worker` twice under
callgrind, with a few flows and with more; the difference of the two
counts, divided by the difference in flows, is one purchase's cost without
the interpreter's start, the imports and the first requests. Both clients
buy from one fresh sandbox, so their answers have the same sizes, and
every run has the same string hashes (`PYTHONHASHSEED=0`): two runs then
agree within 0.02% (1,452,289 and 1,452,397 for ours). The runs go one
after the other: four at once on two CPUs counted ours higher (1,457k and
1,467k against 1,435k-1,456k one after the other, with random hash seeds),
most likely because a server that answers later costs the client's event
loop extra passes.

Reported, not judged: it is the figure that says whether a change made the
client cheaper, where the timed targets can only say how the machine was.
Left out, with a note, where valgrind is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from ._peers import AiohttpPeer, OursPeer
from ._results import Results, Row, Table
from ._server import Server, running_sandbox
from ._workers import last_words, run_worker

Log = Callable[[str], None]

#: Per-run budget of one callgrind run (it runs some 50 times slower).
COUNT_TIMEOUT = 600.0
#: The client process's total, as callgrind prints it on stderr.
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
#: The two clients counted, by the worker's `--impl`.
IMPLS = {OursPeer.name: "ours", AiohttpPeer.name: "aiohttp"}


def valgrind() -> str | None:
    """The valgrind executable, or None when it is not installed."""
    return shutil.which("valgrind")


def _count(binary: str, server: Server, impl: str, flows: int) -> int:
    """Instructions the whole worker process ran, buying `flows` lines.

    Raises:
        RuntimeError: the worker failed, or callgrind printed no total.
        subprocess.TimeoutExpired: it ran longer than `COUNT_TIMEOUT`.
        OSError: valgrind could not be started.
    """
    # One string hash for every run: with random ones, dicts and sets probe
    # differently from one process to the next, and so does the count.
    done = run_worker(
        server,
        "benchmarks._count_worker",
        ["--impl", impl, "--flows", str(flows)],
        timeout=COUNT_TIMEOUT,
        wrapper=[binary, "--tool=callgrind", "--callgrind-out-file=/dev/null"],
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"callgrind run exited with {done.returncode}: {last_words(done)}"
        )
    return int(found.group(1))


def instructions(results: Results, settings: Any, log: Log) -> None:
    """Scenario 7: instructions per sequential purchase, ours and aiohttp's."""
    few, many = settings.count_flows
    binary = valgrind()
    if binary is None:
        note = "instructions: valgrind is not installed; not counted"
        results.notes.append(note)
        log(f"[7/7] {note}")
        return
    table = Table(
        title="Instructions per sequential purchase (callgrind)",
        unit="instructions",
        rows=[Row(name) for name in IMPLS],
        params={"flows": [few, many], "latency_ms": 0},
    )
    results.tables["instructions"] = table
    log(f"[7/7] instructions: {few} and {many} sequential flows per client, callgrind")
    with running_sandbox() as server:
        for row in table.rows:
            try:
                counts = [
                    _count(binary, server, IMPLS[row.name], flows)
                    for flows in (few, many)
                ]
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                row.skipped = f"failed: {reason}"
                results.failures.append(f"{table.title} / {row.name}: {reason}")
                log(f"  {row.name}: FAILED {reason}")
                continue
            per_flow = (counts[1] - counts[0]) / (many - few)
            row.add(per_flow, total_few=counts[0], total_many=counts[1])
            log(f"  {row.name:<20} {per_flow:,.0f} instructions per purchase")
