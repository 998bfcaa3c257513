"""Purchases for a reason: one line per key, and totals per key, across processes.

Every purchase here runs in a process of its own, as a replica or a cron
run would, on both real stores: a replica killed mid-confirm and the
caller's retry elsewhere, two processes racing one key, overlapping runs
toward one total, and a total reached over simulated days.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import anyio
import pytest
from crash_support import (
    PATIENCE,
    child_command,
    child_env,
    open_spec,
    run_purchase,
    run_purchases_together,
)

from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="SIGKILL and /proc are POSIX"
)

KEY = "agent:3"


async def kill_mid_confirm(
    sandbox: Sandbox[Any], spec: dict[str, Any], point: str
) -> None:
    """A replica buys for `KEY` and is killed by SIGKILL at `point` of its confirm.

    On PostgreSQL its lease runs out a millisecond after its last write.
    """
    if point == "before_answer":
        sandbox.inject("confirm", Fault.delay(0.5))
    dying = dict(spec, options={"lease": 0.001}) if spec["kind"] == "postgres" else spec
    child = await anyio.open_process(
        child_command("crash_child.py", sandbox.url, dying, point, 1, KEY),
        env=child_env(sandbox),
        stdout=None,
        stderr=None,
    )
    async with child:
        with anyio.fail_after(PATIENCE):
            if point == "before_answer":
                await sandbox.wait_for_requests("confirm", within=PATIENCE)
                child.send_signal(signal.SIGKILL)
            await child.wait()
    assert child.returncode == -signal.SIGKILL
    await sandbox.wait_idle(within=30)


async def test_a_retry_after_a_replica_died_before_its_send_buys_with_its_token(
    spec: dict[str, Any], sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """The caller retries on another process: one charge, both answers one line.

    The dead replica wrote its intent and never sent it. The retry finds
    the key's purchase orphaned, resends its token (no new preview), and
    answers with the line; a second retry answers with the same line and
    sends nothing.
    """
    await kill_mid_confirm(sendblue_sandbox, spec, "before_send")
    env = child_env(sendblue_sandbox)
    url = sendblue_sandbox.url
    order = {"action": "one", "key": KEY}
    first = await run_purchase(url, spec, order, env)
    second = await run_purchase(url, spec, order, env)
    [charge] = sendblue_sandbox.ledger
    assert first["lines"] == second["lines"] == [charge.phone_number]
    assert sendblue_sandbox.counters["preview"].requests == 1  # the dead one's
    assert sendblue_sandbox.counters["confirm"].requests == 1  # the retry's resend
    async with open_spec(spec) as journal:
        [entry] = await journal.entries(sendblue_sandbox.api_key_id, key=KEY)
    assert (entry.preview_token, entry.state) == (charge.preview_token, "bought")


async def test_a_retry_after_a_replica_died_waiting_for_its_answer_buys_nothing(
    spec: dict[str, Any], sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """The confirm bought, its answer died with the replica: the retry never buys again.

    The retry resends the same token, which the server refuses as spent:
    unknown, with the line as evidence. A second retry raises the same
    unknown, with the same token, and sends nothing.
    """
    await kill_mid_confirm(sendblue_sandbox, spec, "before_answer")
    env = child_env(sendblue_sandbox)
    url = sendblue_sandbox.url
    order = {"action": "one", "key": KEY}
    first = await run_purchase(url, spec, order, env)
    second = await run_purchase(url, spec, order, env)
    [charge] = sendblue_sandbox.ledger
    for answer in (first, second):
        [error] = answer["errors"]
        assert error["type"] == "OutcomeUnknownError"
        assert error["token"] == charge.preview_token
        assert charge.phone_number in error["message"]  # the evidence names it
    assert sendblue_sandbox.counters["preview"].requests == 1
    assert sendblue_sandbox.counters["confirm"].requests == 2  # send, one resend


async def test_two_processes_racing_one_key_buy_one_line(
    spec: dict[str, Any], sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """Two processes ask for one key at once: one line, and both answer with it.

    The first confirm is slow; the second process finds the key in flight
    and waits for it, or its own intent is refused (the key is taken), and
    answers with the line the first one bought.
    """
    sendblue_sandbox.inject("confirm", Fault.delay(1.0))
    env = child_env(sendblue_sandbox)
    url = sendblue_sandbox.url
    order = {"action": "one", "key": KEY}
    answers = await run_purchases_together(url, spec, order, env)
    [charge] = sendblue_sandbox.ledger
    assert [a["lines"] for a in answers] == [[charge.phone_number]] * 2, answers
    assert sendblue_sandbox.counters["confirm"].requests == 1


async def test_overlapping_runs_toward_one_total_never_pass_it(
    spec: dict[str, Any], sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """Two cron runs at once, each told the total is 2, with latency: 2 lines, not 3."""
    sendblue_sandbox.latency = 0.02
    env = child_env(sendblue_sandbox)
    url = sendblue_sandbox.url
    order = {"action": "many", "count": 2, "concurrency": 2, "key": "nightly"}
    await run_purchase(url, spec, {**order, "count": 1}, env)  # one already there
    answers = await run_purchases_together(url, spec, order, env)
    assert len(sendblue_sandbox.ledger) == 2
    bought = {c.phone_number for c in sendblue_sandbox.ledger}
    for answer in answers:
        assert set(answer["all_lines"]) <= bought
    # Once both ended, the total is met: nothing more is bought, both are listed.
    after = await run_purchase(url, spec, order, env)
    assert (after["lines"], set(after["all_lines"])) == ([], bought)
    assert after["not_attempted"] == 0
    assert len(sendblue_sandbox.ledger) == 2


async def test_a_total_converges_over_simulated_days(
    spec: dict[str, Any], sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A nightly run for 5 lines, 3 a day allowed: 3, then 2, then nothing to do."""
    env = child_env(sendblue_sandbox)
    url = sendblue_sandbox.url
    order = {"action": "many", "count": 5, "concurrency": 3, "key": "q1-agents"}
    days = []
    for _ in range(3):
        days.append(await run_purchase(url, spec, order, env))
        sendblue_sandbox.clock.advance(hours=25)
    assert [len(day["lines"]) for day in days] == [3, 2, 0]
    assert [len(day["all_lines"]) for day in days] == [3, 5, 5]
    assert [day["not_attempted"] for day in days] == [2, 0, 0]
    assert len(sendblue_sandbox.ledger) == 5
    # Oldest first: the first day's lines, then the second's.
    first, second = set(days[0]["lines"]), set(days[1]["lines"])
    listed = days[-1]["all_lines"]
    assert (set(listed[:3]), set(listed[3:])) == (first, second)
