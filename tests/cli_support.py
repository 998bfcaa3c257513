"""Helpers for tests that run `sendblue-lines` as a real process against a sandbox.

The sandbox runs in the test's process and event loop; the command is a
child process (`python -m sendblue_lines.cli`) awaited with asyncio's
subprocess API, so the sandbox keeps serving meanwhile. Every child is
killed in a `finally` if it has not ended, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest

from sendblue_lines import LinesClient, Provisioner
from sendblue_lines.cli import main
from sendblue_lines.sandbox import Sandbox

PIPE = asyncio.subprocess.PIPE
WAIT = 30.0
"""Seconds any child process or condition is waited for before the test fails."""

DOCUMENTED_EXIT_CODES = frozenset({0, 1, 2, 3, 4, 130})
LINE = re.compile(r"\+1\d{10}\tworker_\w+\tsub_\w+")


@attrs.frozen
class Result:
    code: int | None
    out: str
    err: str

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line parsed as JSON (fails if any line is not JSON)."""
        return [json.loads(line) for line in self.out.splitlines()]


#: Every variable the command takes its base URL or credentials from.
CREDENTIAL_VARIABLES = (
    "SENDBLUE_BASE_URL",
    "SENDBLUE_API_KEY_ID",
    "SENDBLUE_API_SECRET_KEY",
    "SENDBLUE_API_API_KEY",
    "SENDBLUE_API_API_SECRET",
)


def variables(sandbox: Sandbox[Any]) -> dict[str, str]:
    """The base URL and credentials variables that point the command at `sandbox`."""
    return {
        "SENDBLUE_BASE_URL": sandbox.url,
        "SENDBLUE_API_KEY_ID": sandbox.api_key_id,
        "SENDBLUE_API_SECRET_KEY": sandbox.api_secret_key,
    }


def environment(sandbox: Sandbox[Any] | None, **extra: str) -> dict[str, str]:
    """This process's environment without SENDBLUE_*, pointed at `sandbox`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SENDBLUE_") and name != "PYTHONIOENCODING"
    }
    if sandbox is not None:
        env.update(variables(sandbox))
    env.update(extra)
    return env


@asynccontextmanager
async def spawn(
    sandbox: Sandbox[Any] | None,
    *argv: str,
    stdin: int = asyncio.subprocess.DEVNULL,
    stdout: int = PIPE,
    stderr: int = PIPE,
    env: dict[str, str] | None = None,
    program: tuple[str, ...] = ("-m", "sendblue_lines.cli"),
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m sendblue_lines.cli ARGV` against `sandbox`, killed if left running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *program,
        *argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=env if env is not None else environment(sandbox),
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def check(result: Result, sandbox: Sandbox[Any] | None) -> Result:
    """No secret, no traceback, a documented exit code."""
    if sandbox is not None:
        assert sandbox.api_secret_key not in result.out + result.err
    assert "Traceback" not in result.err, result.err
    assert "Exception ignored" not in result.err, result.err
    assert result.code in DOCUMENTED_EXIT_CODES, (result.code, result.err)
    return result


async def finish(
    process: asyncio.subprocess.Process,
    sandbox: Sandbox[Any] | None,
    err: bytes = b"",
    *,
    checked: bool = True,
) -> Result:
    """Wait for the child; its output, checked for the secret and for tracebacks."""
    out, rest = await asyncio.wait_for(process.communicate(), WAIT)
    result = Result(
        process.returncode,
        (out or b"").decode(errors="replace"),
        (err + (rest or b"")).decode(errors="replace"),
    )
    return check(result, sandbox) if checked else result


async def run(
    sandbox: Sandbox[Any] | None, *argv: str, checked: bool = True, **options: Any
) -> Result:
    async with spawn(sandbox, *argv, **options) as process:
        return await finish(process, sandbox, checked=checked)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` every 10 ms for at most WAIT seconds."""
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


@attrs.define
class InProcess:
    """Runs `main(argv)` in a thread against `sandbox` (the `cli` fixture).

    The variables point at the sandbox (the `sandbox_credentials` fixture);
    each result is checked like a child's (`check`), and for every text of
    `secrets` (the sandbox's secret first; a test adds its own).
    """

    sandbox: Sandbox[Any]
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    #: Texts no output may hold; not in the repr, which a failure report shows.
    secrets: list[str] = attrs.field(
        repr=False,
        default=attrs.Factory(lambda self: [self.sandbox.api_secret_key], True),
    )

    async def __call__(self, *argv: str) -> Result:
        self.capsys.readouterr()
        code = await asyncio.wait_for(asyncio.to_thread(main, list(argv)), 2 * WAIT)
        captured = self.capsys.readouterr()
        result = Result(code, captured.out, captured.err)
        for secret in self.secrets:
            assert secret not in result.out + result.err
        return check(result, self.sandbox)

    def client(self) -> LinesClient:
        """A client of the sandbox, for what a test does outside the command."""
        return LinesClient(
            self.sandbox.api_key_id,
            self.sandbox.api_secret_key,
            base_url=self.sandbox.url,
        )

    async def buy(self, count: int) -> None:
        """Buy `count` lines through the SDK, outside the command."""
        async with self.client() as client:
            for _ in range(count):
                await Provisioner(client).provision()


def free_the_window_before_the_batch(sandbox: Sandbox[Any]) -> list[bool]:
    """Free every window between a `provision`'s plan and its batch's limits read.

    The command reads the limits for its plan, then its batch reads them
    again: just before that second read the clock moves 25 hours, once.
    Returns a list that holds True once it moved.
    """
    limits = sandbox.counters["limits"]
    batch_read = limits.requests + 2
    moved: list[bool] = []

    def at_the_batchs_read() -> float:
        if limits.requests == batch_read and not moved:
            moved.append(True)
            sandbox.clock.advance(hours=25)
        return 0.0

    sandbox.latency = at_the_batchs_read
    return moved


def catches(pid: int, number: int) -> bool:
    """True once process `pid` has a handler for signal `number` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (number - 1) & 1)
    except OSError:
        return False
    return False


class Terminal:
    """A pseudo-terminal: its master end to read the screen, its slave for a child."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()

    def close_slave(self) -> None:
        if self.slave != -1:
            os.close(self.slave)
            self.slave = -1

    def close(self) -> None:
        self.close_slave()
        os.close(self.master)

    async def read_all(self) -> bytes:
        """Everything the child writes until it closes the terminal (bounded)."""
        loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        for _ in range(100_000):
            try:
                chunk = await asyncio.wait_for(
                    loop.run_in_executor(None, os.read, self.master, 65536), WAIT
                )
            except OSError:  # EIO: every slave end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def screen(data: bytes) -> list[str]:
    """The lines a terminal shows for `data`: a CR returns, characters overwrite."""
    lines: list[list[str]] = [[]]
    column = 0
    for char in data.decode(errors="replace"):
        if char == "\n":
            lines.append([])
            column = 0
        elif char == "\r":
            column = 0
        else:
            line = lines[-1]
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    return ["".join(line).rstrip() for line in lines]
