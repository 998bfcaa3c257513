"""The sandbox in its own process: started, waited for, always stopped.

The server runs as ``python -m sendblue_lines.cli sandbox`` so that its work
is never counted against a client. We give it the credentials (the secret
is ours, so its banner does not print it) and read only its URL from the
banner.

With `--pin` (two or more CPUs) the server and the clients are pinned to
different CPUs everywhere; by default only the scale scenario pins them
(`pin=True`). On the machine the committed results come from (a 2-CPU VM),
pinning made the sequential flows slower and much noisier, since every
request then wakes a process on the other CPU, while at scale it is needed:
two busy processes that the scheduler puts on one CPU serialise.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
KEY_ID = "bench-key-id"
#: How long the sandbox may take to print its URL.
READY_TIMEOUT = 30.0
#: How long a stopped sandbox may take to exit before it is killed.
STOP_TIMEOUT = 5.0
#: Limits high enough that no scenario ever meets them.
UNLIMITED = 1_000_000_000

_BASE_URL = re.compile(r"SENDBLUE_BASE_URL=['\"]?(http://127\.0\.0\.1:\d+)")
_ANY_URL = re.compile(r"(http://127\.0\.0\.1:\d+)")

#: The CPUs this process may use, read before any pinning.
_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
_pin = False


def pinning() -> bool:
    """Say whether clients and server get a CPU each (`--pin`, two or more CPUs)."""
    return _pin and hasattr(os, "sched_setaffinity") and len(_CPUS) >= 2


def client_cpu() -> int | None:
    """The CPU the clients run on when pinned (two or more CPUs)."""
    return _CPUS[0] if len(_CPUS) >= 2 else None


def server_cpu() -> int | None:
    """The CPU the sandbox runs on when pinned (two or more CPUs)."""
    return _CPUS[1] if len(_CPUS) >= 2 else None


def pin_self() -> None:
    """Pin this process (and so its children) to the clients' CPU, from now on."""
    global _pin
    _pin = True
    if pinning():
        os.sched_setaffinity(0, {_CPUS[0]})


@dataclass(frozen=True)
class Server:
    """A running sandbox: where it is and how to sign in."""

    url: str
    key_id: str
    secret: str
    latency_ms: int
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system)."""
        return process_cpu_seconds(self.pid)


def process_cpu_seconds(pid: int) -> float:
    """CPU time process `pid` has used so far (user + system), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    except OSError:
        return float("nan")
    parts = fields.split()
    # utime and stime are fields 14 and 15 of stat; 12 and 13 after ")".
    ticks = int(parts[11]) + int(parts[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class SandboxError(RuntimeError):
    """The sandbox did not start."""


def _command(port: int, latency_ms: int, secret: str, limit: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sendblue_lines.cli",
        "sandbox",
        "--host",
        HOST,
        "--port",
        str(port),
        "--api-key-id",
        KEY_ID,
        "--api-secret-key",
        secret,
        "--daily-limit",
        str(limit),
        "--monthly-limit",
        str(limit),
        "--latency-ms",
        str(latency_ms),
    ]


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Read the server's stdout to its end, so that it never blocks on a pipe."""
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _stop(process: subprocess.Popen[str]) -> None:
    """Stop the server: SIGTERM, then SIGKILL if it lingers. Never raises."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running_sandbox(
    *, latency_ms: int = 0, limit: int = UNLIMITED, pin: bool = False
) -> Iterator[Server]:
    """Start a sandbox on 127.0.0.1 in a new process; stop it on the way out.

    The process is stopped whatever happens in the block, Ctrl-C included.
    With `pin` (or `--pin`), on two or more CPUs, it runs on `server_cpu()`.

    Raises:
        SandboxError: it exited or printed no URL within `READY_TIMEOUT`.
    """
    secret = "bench-" + secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="sendblue-bench-") as scratch:
        stderr_path = Path(scratch) / "sandbox.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                _command(0, latency_ms, secret, limit),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                # Its own session: a Ctrl-C reaches us, and we stop it ourselves.
                start_new_session=True,
            )
        try:
            if pinning() or (pin and len(_CPUS) >= 2):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(process.pid, {_CPUS[1]})
            assert process.stdout is not None
            lines: queue.Queue[str | None] = queue.Queue()
            threading.Thread(
                target=_pump, args=(process.stdout, lines), daemon=True
            ).start()
            url = _wait_for_url(process, lines, stderr_path)
            yield Server(
                url=url,
                key_id=KEY_ID,
                secret=secret,
                latency_ms=latency_ms,
                pid=process.pid,
            )
        finally:
            _stop(process)


def _wait_for_url(
    process: subprocess.Popen[str], lines: queue.Queue[str | None], stderr: Path
) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    seen: list[str] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxError(
                f"the sandbox printed no URL within {READY_TIMEOUT:.0f} s; it said:\n"
                + "".join(seen)
                + _tail(stderr)
            )
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            if process.poll() is not None:
                line = None
            else:
                continue
        if line is None:
            process.wait(timeout=STOP_TIMEOUT)
            raise SandboxError(
                f"the sandbox exited with code {process.returncode} before serving:\n"
                + "".join(seen)
                + _tail(stderr)
            )
        seen.append(line)
        found = _BASE_URL.search(line) or _ANY_URL.search(line)
        if found:
            return found.group(1)
