"""On a terminal, the live progress line never shares a line with a result.

The command runs as a real process with stdout and stderr on a
pseudo-terminal; the test reads the bytes the terminal receives and replays
them as a terminal would (a carriage return goes back to column 0, later
characters overwrite earlier ones), then looks at each line on the screen.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from typing import Any

import pytest
from cli_support import (
    LINE,
    PIPE,
    Terminal,
    finish,
    run,
    screen,
    spawn,
    wait_until,
)

from sendblue_lines.cli import explain
from sendblue_lines.sandbox import Fault, Sandbox

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX pseudo-terminals"
)

PROGRESS = re.compile(r"\[\d+/\d+\] bought \d+, failed \d+")
STEP = re.compile(r"\[\d+/\d+\] slot \d+: bought \+1\d{10}")


async def on_terminal(
    sandbox: Sandbox[Any], *argv: str, stdout_pipe: bool = False
) -> tuple[int | None, list[str], str]:
    """Run with stderr (and stdout, unless a pipe) on a pty; return the screen."""
    terminal = Terminal()
    try:
        async with spawn(
            sandbox,
            *argv,
            stdin=terminal.slave,
            stdout=PIPE if stdout_pipe else terminal.slave,
            stderr=terminal.slave,
        ) as process:
            terminal.close_slave()
            shown = await terminal.read_all()
            out = b""
            if stdout_pipe:
                assert process.stdout is not None
                out = await asyncio.wait_for(process.stdout.read(), 30)
            await asyncio.wait_for(process.wait(), 30)
    finally:
        terminal.close()
    text = shown.decode(errors="replace")
    assert "Traceback" not in text
    assert sandbox.api_secret_key not in text
    return process.returncode, screen(shown), out.decode()


def assert_results_stand_alone(lines: list[str], bought: int) -> None:
    """Each result, and its `[n/N] slot i: bought` line, is a whole screen line."""
    for pattern in (LINE, STEP):
        results = [line for line in lines if pattern.search(line)]
        assert len(results) == bought, lines
        for line in results:
            assert pattern.fullmatch(line), line  # from column 0, nothing after
            assert not PROGRESS.search(line)
    for line in lines:
        if PROGRESS.search(line):
            assert PROGRESS.fullmatch(line), line


async def test_progress_and_results_on_one_terminal(sendblue_sandbox):
    """`provision --count 3` at a terminal: every bought line alone on its line."""
    code, lines, _ = await on_terminal(
        sendblue_sandbox, "provision", "--count", "3", "--concurrency", "1", "--yes"
    )
    assert code == 0
    assert_results_stand_alone(lines, 3)
    # The live line is wiped before the summary, which says the same.
    assert [line for line in lines if PROGRESS.search(line)] == []
    assert "Done: bought 3 of 3." in lines


async def test_failures_and_the_log_on_a_terminal(sendblue_sandbox):
    """A failed slot's sentence and -v log lines start at column 0 too."""
    sendblue_sandbox.inject(
        "confirm", Fault.respond(400, {"status": "ERROR", "message": "bad token"})
    )
    code, lines, _ = await on_terminal(
        sendblue_sandbox,
        "-v",
        "provision",
        "--count",
        "3",
        "--concurrency",
        "1",
        "--yes",
    )
    assert code == 1
    assert_results_stand_alone(lines, 2)
    said = [line for line in lines if "bad token" in line]
    [failure] = [line for line in said if not line.startswith("sendblue-lines: ")]
    assert failure.startswith("[1/3] slot 0: ")
    logs = [line for line in lines if "sendblue-lines: " in line]
    assert logs
    assert all(line.startswith("sendblue-lines: ") for line in logs)


async def test_json_results_on_a_terminal(sendblue_sandbox):
    """With --json on a terminal, each object is a whole line that parses."""
    code, lines, _ = await on_terminal(
        sendblue_sandbox, "provision", "--count", "2", "--yes", "--json"
    )
    assert code == 0
    objects = [json.loads(line) for line in lines if line.startswith("{")]
    assert [o["outcome"] for o in objects] == ["bought", "bought"]
    assert not any(PROGRESS.search(line) and "{" in line for line in lines)


async def test_stdout_piped_while_stderr_is_a_terminal(sendblue_sandbox):
    """Stdout to a pipe gets the rows only; the terminal gets no result text."""
    code, lines, out = await on_terminal(
        sendblue_sandbox, "provision", "--count", "2", "--yes", stdout_pipe=True
    )
    assert code == 0
    assert all(LINE.fullmatch(row) for row in out.splitlines())
    assert len(out.splitlines()) == 2
    assert not any(LINE.search(line) for line in lines)


async def test_through_pipes_there_is_no_live_line(sendblue_sandbox):
    """With stderr a pipe, progress is one plain line per outcome, no CR."""
    result = await run(sendblue_sandbox, "provision", "--count", "2", "--yes")
    assert result.code == 0
    assert "\r" not in result.err
    assert all(LINE.fullmatch(row) for row in result.out.splitlines())
    assert re.findall(r"^\[\d/2\] slot \d: bought \+1\d{10}$", result.err, re.M)


async def test_the_stop_message_on_a_terminal_starts_at_column_0(sendblue_sandbox):
    """SIGTERM mid-batch on a terminal: "Stopping" gets a line of its own."""
    sandbox = sendblue_sandbox
    sandbox.account.daily_limit = 10
    sandbox.inject("confirm", Fault.delay(1.0), times=2)
    terminal = Terminal()
    try:
        async with spawn(
            sandbox,
            "provision",
            "--count",
            "4",
            "--concurrency",
            "1",
            "--yes",
            stdin=terminal.slave,
            stdout=terminal.slave,
            stderr=terminal.slave,
        ) as process:
            terminal.close_slave()
            reading = asyncio.ensure_future(terminal.read_all())
            # The first line is bought and the second confirm is in flight.
            await wait_until(lambda: len(sandbox.ledger) == 1, "a line")
            await wait_until(lambda: sandbox.counters["confirm"].requests == 2, "2nd")
            process.send_signal(signal.SIGTERM)
            shown = await reading
            await asyncio.wait_for(process.wait(), 30)
    finally:
        terminal.close()
    lines = screen(shown)
    assert process.returncode == 130
    assert_results_stand_alone(lines, 2)
    assert any(line.startswith("Stopping: no new purchase starts") for line in lines)
    assert "Interrupted: 2 line(s) bought before stopping, listed above." in lines
    assert sandbox.counters["confirm"].requests == 2


# -- saying things once -------------------------------------------------------


async def test_a_full_window_names_its_next_slot_once(sendblue_sandbox):
    """The demo-like batch stop: one "next slot", in the command's format."""
    sandbox = sendblue_sandbox
    result = await run(sandbox, "provision", "--count", "5", "--yes")
    assert result.code == 1
    assert result.err.count("next slot") <= 1
    await asyncio.sleep(0)
    full = await run(sandbox, "provision", "--count", "2", "--yes")
    assert full.code == 2
    assert full.err.count("next slot") == 1
    assert "No line can be bought now: the daily limit is reached" in full.err


async def test_the_demo_says_each_thing_once():
    """The demo's batch stop names the next slot once; the 410 story is told once."""
    async with spawn(None, "demo") as process:
        result = await finish(process, None)
    assert result.code == 0
    [stopped] = re.findall(r"stopped by: (.*)", result.out)
    assert stopped.count("next slot") == 1
    assert "T" not in re.findall(r"opens at (\S+)", stopped)[0]  # not ISO 8601
    # The expiry step, and the lost answer; counted as words, since a random
    # port or token can hold the digits 410.
    assert len(re.findall(r"\b410 token_expired\b", result.out)) == 2
    [failed] = [
        line for line in result.out.splitlines() if "could not provision" in line
    ]
    assert failed.count("was created, but provisioning the line failed") == 1
    assert "not attempted (nothing was sent)" in result.out


def test_explain_a_pre_check_limit_names_the_next_slot_once():
    """The SDK's pre-check message already holds the slot: explain says it once."""
    from datetime import datetime, timezone

    from sendblue_lines.errors import DailyLimitReachedError
    from sendblue_lines.models import LimitWindow, ProvisioningLimits

    moment = datetime(2026, 5, 19, 14, 0, tzinfo=timezone.utc)
    error = DailyLimitReachedError(
        "the daily provisioning limit is reached according to GET /accounts/limits; "
        f"the next slot opens at {moment.isoformat()}",
        limits=ProvisioningLimits(daily=LimitWindow(limit=3, used=3, remaining=0)),
        next_available_at=moment,
    )
    text = explain(error)
    assert text.count("next slot") == 1
    assert "2026-05-19 14:00:00 UTC" in text
