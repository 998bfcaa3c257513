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
from provisioner_support import check_ledger, connect, requests

from sendblue_lines import (
    BatchResult,
    LinesClient,
    ProvisionedLine,
    Provisioner,
    ProvisionOutcome,
    SendblueError,
)
from sendblue_lines.sandbox import ManualClock, Sandbox, SandboxAccount


async def test_concurrent_flows_never_confirm_past_the_limits(
    sendblue_sandbox_factory: Any, secret_canary: Any
) -> None:
    """Two batches and two provision() at once, 2 lines of room: 2 confirms, 2 lines."""
    account = SandboxAccount("shared-key-id", secret_canary.canary, daily_limit=3)
    sandbox: Sandbox[ManualClock] = await sendblue_sandbox_factory(
        accounts=[account], latency=0.02
    )
    seen: list[ProvisionOutcome] = []
    async with connect(sandbox, timeout=2.0) as client:
        await Provisioner(client, on_outcome=seen.append).provision()  # 1 of 3 used
        provisioner = Provisioner(client, on_outcome=seen.append)
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
        assert requests(sandbox, "confirm") == 1 + 2
        assert len(sandbox.ledger) == 1 + 2
        assert sum(outcome.ok for outcome in seen) == 1 + 2
        check_ledger(sandbox, seen)
        # Every reservation was given back: a day later the whole room is seen.
        sandbox.clock.advance(hours=25)
        plan = await provisioner.plan(3)
        assert plan.allowed == 3


async def test_a_settled_flow_gives_its_room_back(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """Reservations end with their slots: sequential flows are never held back."""
    sendblue_sandbox.account.daily_limit = 4
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(sandbox_client, on_outcome=seen.append)
    first = await provisioner.provision_many(2, concurrency=2)
    second = await provisioner.provision_many(2, concurrency=2)
    assert (len(first.lines), len(second.lines)) == (2, 2)
    assert second.not_attempted == 0
    assert len(sendblue_sandbox.ledger) == 4
    check_ledger(sendblue_sandbox, seen)


async def test_a_big_concurrent_batch_never_overspends(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """Twenty slots at concurrency 20 against a limit of 3: three confirms, no 429."""
    result = await Provisioner(sandbox_client).provision_many(20, concurrency=20)
    assert len(result.lines) == 3
    assert requests(sendblue_sandbox, "confirm") == 3
    assert 429 not in sendblue_sandbox.counters["confirm"].statuses
    check_ledger(sendblue_sandbox, result.outcomes)
