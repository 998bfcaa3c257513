"""Invariant 3 under concurrency: flows of one Provisioner share one reservation.

A limits read does not count purchases still in flight, so two flows that
read the same limits must not both spend the same room: together they never
send more confirms than the limits leave. The server's 429 would still win,
but every confirm past the room is a wasted call and a spurious error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from reliability_support import Recorder, check_ledger, connect

from sendblue_lines import BatchResult, ProvisionedLine, Provisioner, SendblueError
from sendblue_lines.sandbox import ManualClock, Sandbox, SandboxAccount


async def test_concurrent_flows_never_confirm_past_the_limits(
    sendblue_sandbox_factory: Any, secret_canary: Any
) -> None:
    """Two batches and two provision() at once, 2 lines of room: 2 confirms, 2 lines."""
    account = SandboxAccount("shared-key-id", secret_canary.canary, daily_limit=3)
    sandbox: Sandbox[ManualClock] = await sendblue_sandbox_factory(
        accounts=[account], latency=0.02
    )
    recorder = Recorder(renumber=True)
    async with connect(sandbox) as client:
        await Provisioner(client).provision()  # one of the three used
        provisioner = Provisioner(client, **recorder.callbacks())
        with anyio.fail_after(15):
            results = await asyncio.gather(
                provisioner.provision_many(3, concurrency=3),
                provisioner.provision_many(3, concurrency=3),
                provisioner.provision(),
                provisioner.provision(),
                return_exceptions=True,
            )
        for result in results:
            assert isinstance(result, (BatchResult, ProvisionedLine, SendblueError))
        assert sandbox.counters["confirm"].requests == 1 + 2
        counts = check_ledger(sandbox.ledger[1:], recorder)
        assert (counts["charges"], counts["lines"]) == (2, 2)
        # Every reservation was given back: a day later the whole room is seen.
        sandbox.clock.advance(hours=25)
        plan = await provisioner.plan(3)
        assert plan.allowed == 3


async def test_a_settled_flow_gives_its_room_back(
    sandbox: Sandbox[ManualClock], secret_canary: Any
) -> None:
    """Reservations end with their slots: sequential flows are never held back."""
    sandbox.account.daily_limit = 4
    recorder = Recorder(renumber=True)
    async with connect(sandbox) as client:
        provisioner = Provisioner(client, **recorder.callbacks())
        first = await provisioner.provision_many(2, concurrency=2)
        second = await provisioner.provision_many(2, concurrency=2)
    assert (len(first.lines), len(second.lines)) == (2, 2)
    assert second.not_attempted == 0
    assert check_ledger(sandbox.ledger, recorder)["lines"] == 4
