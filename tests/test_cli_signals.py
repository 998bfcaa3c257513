"""SIGTERM at every step of every subcommand behaves as Ctrl-C does.

Each test holds the command at one step with the sandbox's fault injection
(a delay on an endpoint) or at the prompt, sends SIGTERM (and SIGINT where
the two must agree), and checks the exit code, the output and the sandbox's
record: confirms sent == outcomes printed, and nothing sent after the
signal except the confirms already in flight.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import pytest
from cli_support import (
    PIPE,
    Terminal,
    catches,
    finish,
    spawn,
    wait_until,
)

from sendblue_lines.sandbox import Fault

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals and terminals"
)

BOTH = pytest.mark.parametrize(
    "number", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"]
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("argv", [["limits"], ["provision", "--yes"], ["demo"]])
async def test_before_the_first_request(sendblue_sandbox, argv):
    """A SIGTERM as soon as the command handles it: 130, nothing bought."""
    async with spawn(sendblue_sandbox, *argv) as process:
        await wait_until(lambda: catches(process.pid, signal.SIGTERM), "a handler")
        process.send_signal(signal.SIGTERM)
        result = await finish(process, sendblue_sandbox)
    assert result.code == 130
    assert "Interrupted" in result.err
    assert sendblue_sandbox.counters["preview"].requests == 0
    assert sendblue_sandbox.ledger == []


@BOTH
@pytest.mark.parametrize(
    "argv",
    [["limits"], ["limits", "--json"], ["plan", "3"], ["provision", "--yes"]],
    ids=" ".join,
)
async def test_during_the_limits_read(sendblue_sandbox, argv, number):
    """Held in GET /accounts/limits: 130, one sentence, no preview is ever sent."""
    sendblue_sandbox.inject("limits", Fault.delay(10.0))
    async with spawn(sendblue_sandbox, *argv) as process:
        await wait_until(
            lambda: sendblue_sandbox.counters["limits"].requests == 1, "limits"
        )
        process.send_signal(number)
        result = await finish(process, sendblue_sandbox)
    assert result.code == 130
    assert result.out == ""
    assert result.err == "Interrupted; nothing more was sent.\n"
    assert sendblue_sandbox.counters["preview"].requests == 0
    counters = sendblue_sandbox.counters
    assert sum(counter.requests for counter in counters.values()) == 1


@BOTH
@pytest.mark.parametrize("argv", [["preview"], ["provision", "--yes", "--count", "2"]])
async def test_during_a_preview(sendblue_sandbox, argv, number):
    """Held in a preview: 130, no confirm is sent, nothing is bought."""
    sendblue_sandbox.inject("preview", Fault.delay(10.0), times=2)
    async with spawn(sendblue_sandbox, *argv) as process:
        await wait_until(
            lambda: sendblue_sandbox.counters["preview"].requests >= 1, "preview"
        )
        process.send_signal(number)
        result = await finish(process, sendblue_sandbox)
    assert result.code == 130
    assert result.out == ""
    assert sendblue_sandbox.counters["confirm"].requests == 0
    assert sendblue_sandbox.ledger == []


@BOTH
async def test_during_a_confirm_the_line_is_waited_for_and_printed(
    sendblue_sandbox, number
):
    """Held in a confirm: it finishes, its line is printed, then exit 130."""
    sandbox = sendblue_sandbox
    sandbox.inject("confirm", Fault.delay(1.0))
    async with spawn(sandbox, "provision", "--yes", "--json") as process:
        await wait_until(lambda: sandbox.counters["confirm"].requests == 1, "confirm")
        process.send_signal(number)
        result = await finish(process, sandbox)
    assert result.code == 130
    [printed] = result.json_lines()
    [charge] = sandbox.ledger
    assert printed["phone_number"] == charge.phone_number
    assert sandbox.counters["confirm"].requests == 1
    assert "Interrupted: 1 line(s) bought before stopping, listed above." in result.err


async def test_between_slots_of_a_batch_nothing_more_starts(sendblue_sandbox):
    """One slot at a time, SIGTERM while slot 0 confirms: slot 1 never previews."""
    sandbox = sendblue_sandbox
    sandbox.inject("confirm", Fault.delay(1.0))
    argv = ("provision", "--count", "3", "--concurrency", "1", "--yes", "--json")
    async with spawn(sandbox, *argv) as process:
        await wait_until(lambda: sandbox.counters["confirm"].requests == 1, "confirm")
        previews = sandbox.counters["preview"].requests
        process.send_signal(signal.SIGTERM)
        result = await finish(process, sandbox)
    assert result.code == 130
    assert sandbox.counters["preview"].requests == previews == 1
    assert sandbox.counters["confirm"].requests == len(result.json_lines()) == 1
    assert [o["phone_number"] for o in result.json_lines()] == [
        c.phone_number for c in sandbox.ledger
    ]


async def test_a_batch_in_flight_under_sigterm(sendblue_sandbox):
    """Two confirms in flight: both finish and are printed; none is sent after."""
    sandbox = sendblue_sandbox
    sandbox.account.daily_limit = 10
    sandbox.inject("confirm", Fault.delay(1.0), times=5)
    argv = ("provision", "--count", "5", "--concurrency", "2", "--yes", "--json")
    async with spawn(sandbox, *argv) as process:
        await wait_until(lambda: sandbox.counters["confirm"].requests == 2, "confirms")
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)  # a second one skips nothing
        result = await finish(process, sandbox)
    assert result.code == 130
    assert result.err.count("Stopping: no new purchase starts") == 1
    printed = sorted(o["phone_number"] for o in result.json_lines())
    assert printed == sorted(c.phone_number for c in sandbox.ledger)
    assert len(printed) == sandbox.counters["confirm"].requests == 2


@BOTH
async def test_at_the_prompt(sendblue_sandbox, number):
    """At "Proceed? [y/N]" on a terminal: 130 at once, no preview, nothing bought."""
    terminal = Terminal()
    try:
        async with spawn(
            sendblue_sandbox, "provision", "--count", "2", stdin=terminal.slave
        ) as process:
            terminal.close_slave()
            assert process.stderr is not None
            asked = await asyncio.wait_for(process.stderr.readuntil(b"[y/N] "), 30)
            process.send_signal(number)
            result = await finish(process, sendblue_sandbox, asked)
    finally:
        terminal.close()
    assert result.code == 130
    assert result.err.endswith("Interrupted; nothing more was sent.\n")
    assert sendblue_sandbox.counters["preview"].requests == 0
    assert sendblue_sandbox.ledger == []


@BOTH
async def test_during_the_demo(number):
    """The demo stops at once, closes its sandbox quietly and exits 130."""
    async with spawn(None, "demo") as process:
        assert process.stdout is not None
        seen = await asyncio.wait_for(process.stdout.readuntil(b"== 3."), 30)
        process.send_signal(number)
        result = await finish(process, None)
    assert result.code == 130
    assert "Interrupted" in result.err
    assert "Unclosed" not in result.err
    assert b"== 1." in seen


@BOTH
async def test_the_sandbox_command_stops_cleanly(number):
    """`sendblue-lines sandbox` ends as documented on either signal: 0, no traceback."""
    async with spawn(
        None,
        "sandbox",
        "--port",
        "0",
        stdout=PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), 30)
        assert re.match(rb"Sendblue sandbox serving on http://127\.0\.0\.1:\d+", banner)
        process.send_signal(number)
        result = await finish(process, None)
    assert result.code == 0
    assert "Sandbox stopped." in result.out
