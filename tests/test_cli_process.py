"""`sendblue-lines` as a real process: pipes, a terminal, and Ctrl-C (SIGINT).

Each test starts a sandbox in this process and the command as a child
process talking to it over 127.0.0.1; the test awaits the child with
asyncio's subprocess API, so the sandbox keeps serving meanwhile. Every
child is killed in a `finally` if it has not ended, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_support import PIPE, WAIT, Terminal, finish, run, spawn, wait_until

from sendblue_lines.sandbox import Fault, Sandbox

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals and terminals"
)


# -- pipes ------------------------------------------------------------------------


async def test_provision_json_through_pipes(sendblue_sandbox):
    """As a process, --json writes one JSON object per line and progress to stderr."""
    result = await run(sendblue_sandbox, "provision", "--count", "2", "--yes", "--json")
    assert result.code == 0
    outcomes = result.json_lines()
    assert {o["phone_number"] for o in outcomes} == {
        c.phone_number for c in sendblue_sandbox.purchases()
    }
    assert len(outcomes) == 2
    assert "[2/2] slot" in result.err


async def test_read_only_commands_through_pipes(sendblue_sandbox):
    """limits, plan and preview run as processes, print JSON and spend nothing."""
    limits = await run(sendblue_sandbox, "limits", "--json")
    plan = await run(sendblue_sandbox, "plan", "5", "--json")
    preview = await run(sendblue_sandbox, "-vv", "preview", "--json")
    assert [limits.code, plan.code, preview.code] == [0, 0, 0]
    assert json.loads(limits.out)["daily"]["remaining"] == 3
    assert json.loads(plan.out)["allowed"] == 3
    assert json.loads(preview.out)["eligible"] is True
    assert "DEBUG" in preview.err
    assert sendblue_sandbox.ledger == []


async def test_refuses_without_a_terminal_as_a_process(sendblue_sandbox):
    """With stdin a pipe and no --yes, the process buys nothing and exits 2."""
    async with spawn(sendblue_sandbox, "provision", "--count", "2", stdin=PIPE) as p:
        result = await finish(p, sendblue_sandbox)
    assert result.code == 2
    assert result.out == ""
    assert "pass --yes" in result.err
    assert sendblue_sandbox.counters["preview"].requests == 0
    assert sendblue_sandbox.ledger == []


async def test_the_installed_script_documents_the_exit_codes():
    """The installed `sendblue-lines` script runs, and its --help lists exit codes."""
    script = Path(sys.executable).with_name("sendblue-lines")
    if not script.exists():
        pytest.skip("no sendblue-lines script beside this interpreter")
    process = await asyncio.create_subprocess_exec(
        str(script), "--help", stdout=PIPE, stderr=PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), WAIT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert b"exit codes:" in out
    assert b"130" in out


# -- a terminal -------------------------------------------------------------------


@asynccontextmanager
async def on_a_terminal(
    sandbox: Sandbox[Any], *argv: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """The command with a pseudo-terminal as stdin; yields it and the pty's master."""
    terminal = Terminal()
    try:
        async with spawn(sandbox, *argv, stdin=terminal.slave) as process:
            terminal.close_slave()
            yield process, terminal.master
    finally:
        terminal.close()


async def prompt(process: asyncio.subprocess.Process) -> bytes:
    """Read stderr up to the question; return what was read."""
    assert process.stderr is not None
    return await asyncio.wait_for(process.stderr.readuntil(b"[y/N] "), WAIT)


async def test_yes_on_a_terminal_buys(sendblue_sandbox):
    """On a real terminal the command asks, and `y` buys the line."""
    async with on_a_terminal(sendblue_sandbox, "provision") as (process, terminal):
        asked = await prompt(process)
        assert sendblue_sandbox.counters["preview"].requests == 0
        os.write(terminal, b"y\n")
        result = await finish(process, sendblue_sandbox, asked)
    assert result.code == 0
    assert "About to buy 1 line(s)" in result.err
    [charge] = sendblue_sandbox.purchases()
    assert result.out.split("\t")[0] == charge.phone_number


async def test_one_ctrl_c_at_the_prompt_stops_at_once(sendblue_sandbox):
    """A single Ctrl-C at the question exits 130 without previewing or buying."""
    async with on_a_terminal(sendblue_sandbox, "provision") as (process, _):
        asked = await prompt(process)
        process.send_signal(signal.SIGINT)
        result = await finish(process, sendblue_sandbox, asked)
    assert result.code == 130
    assert "Interrupted" in result.err
    assert sendblue_sandbox.counters["preview"].requests == 0
    assert sendblue_sandbox.ledger == []


# -- Ctrl-C -------------------------------------------------------------------


async def test_ctrl_c_during_a_batch_loses_no_bought_line(sendblue_sandbox):
    """SIGINT while confirms are in flight: they finish, are printed, then exit 130."""
    sandbox = sendblue_sandbox
    sandbox.account.daily_limit = 10
    sandbox.latency = 0.2
    sandbox.inject("confirm", Fault.delay(1.0), times=5)
    argv = ("provision", "--count", "5", "--concurrency", "2", "--yes", "--json")
    async with spawn(sandbox, *argv) as process:
        # Both workers are confirming: no slot is in preview any more.
        await wait_until(lambda: sandbox.counters["confirm"].requests == 2, "confirms")
        assert sandbox.ledger == []
        process.send_signal(signal.SIGINT)
        await asyncio.sleep(0.1)
        process.send_signal(signal.SIGINT)  # an impatient second Ctrl-C skips nothing
        result = await finish(process, sandbox)
    assert result.code == 130
    assert "Stopping: no new purchase starts" in result.err
    bought = [charge.phone_number for charge in sandbox.ledger]
    assert len(bought) == 2
    printed = result.json_lines()
    assert {o["outcome"] for o in printed} == {"bought"}
    assert sorted(o["phone_number"] for o in printed) == sorted(bought)
    assert sandbox.counters["confirm"].requests == 2  # none sent after Ctrl-C
    assert "Interrupted: 2 line(s) bought before stopping" in result.err


async def test_ctrl_c_with_an_unknown_outcome_in_flight_exits_3(sendblue_sandbox):
    """A confirm that ends unknown after Ctrl-C is printed with its token: exit 3."""
    sandbox = sendblue_sandbox
    sandbox.latency = 0.2
    sandbox.inject("confirm", Fault.hang(after_commit=True))
    sandbox.inject("confirm", Fault.delay(0.5))
    argv = ("--timeout", "1", "provision", "--count", "3", "--concurrency", "2")
    async with spawn(sandbox, *argv, "--yes", "--json") as process:
        await wait_until(lambda: sandbox.counters["confirm"].requests == 2, "confirms")
        process.send_signal(signal.SIGINT)
        result = await finish(process, sandbox)
    assert result.code == 3
    printed = {o["outcome"]: o for o in result.json_lines()}
    assert set(printed) == {"bought", "unknown"}
    assert {charge.preview_token for charge in sandbox.ledger} >= {
        printed["unknown"]["preview_token"]
    }
    assert printed["bought"]["phone_number"] in {c.phone_number for c in sandbox.ledger}
    assert len(sandbox.ledger) == 2


async def test_ctrl_c_before_the_batch_sends_nothing_more(sendblue_sandbox):
    """SIGINT while the limits are being read exits 130 and never previews."""
    sendblue_sandbox.inject("limits", Fault.delay(2.0))
    async with spawn(sendblue_sandbox, "provision", "--yes") as process:
        await wait_until(
            lambda: sendblue_sandbox.counters["limits"].requests == 1, "limits"
        )
        process.send_signal(signal.SIGINT)
        result = await finish(process, sendblue_sandbox)
    assert result.code == 130
    assert "nothing more was sent" in result.err
    assert sendblue_sandbox.counters["preview"].requests == 0
    assert sendblue_sandbox.ledger == []
