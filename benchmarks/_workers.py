"""Clients run in processes of their own: the hand-over both sides share.

A scenario that needs a fresh process per run (the scale runs, for their
memory; the instruction counts, under callgrind) starts a worker module with
`run_worker`; the worker reads its options with `worker_parser` and builds
its `Server` with `worker_server`. The sandbox's URL and key id go on the
command line, the secret on stdin: never on a command line others can read.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence

from ._server import Server

#: A line valgrind writes on a process's stderr (``==1234== ...``).
_VALGRIND_LINE = re.compile(r"^==\d+==")


def run_worker(
    server: Server,
    module: str,
    arguments: Sequence[str],
    *,
    timeout: float,
    wrapper: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m module` against `server` to its end; its output.

    `--url` and `--key-id` come first, then `arguments`; `wrapper` goes
    before the interpreter (valgrind, say). The worker is killed if we are
    interrupted or it overruns `timeout`.

    Raises:
        subprocess.TimeoutExpired: it ran longer than `timeout`.
        OSError: it could not be started.
    """
    command = [
        *wrapper,
        sys.executable,
        "-m",
        module,
        "--url",
        server.url,
        "--key-id",
        server.key_id,
        *arguments,
    ]
    return subprocess.run(
        command,
        input=server.secret + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def last_words(done: subprocess.CompletedProcess[str]) -> str:
    """The last line a failed worker wrote: why it failed, for the report.

    From stderr (stdout when stderr is empty), leaving out valgrind's own
    lines; "no output" when there is none.
    """
    lines = [
        line
        for line in (done.stderr or done.stdout).strip().splitlines()
        if not _VALGRIND_LINE.match(line)
    ]
    return lines[-1] if lines else "no output"


def worker_parser(prog: str) -> argparse.ArgumentParser:
    """A worker's options: `--impl`, `--url` and `--key-id`; add the rest."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--impl", choices=("ours", "aiohttp"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key-id", required=True)
    return parser


def worker_server(args: argparse.Namespace) -> Server:
    """The sandbox a worker was given, its secret read from stdin."""
    secret = sys.stdin.readline().strip()
    return Server(url=args.url, key_id=args.key_id, secret=secret, latency_ms=0, pid=-1)
