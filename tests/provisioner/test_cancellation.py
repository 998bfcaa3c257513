"""Cancelling the caller of a sent confirm: the answer still arrives and is reported.

Real sockets on 127.0.0.1 (aioresponses bypasses timeouts): the sandbox,
delaying its confirm answers, and every kind of cancellation: anyio scopes,
`asyncio.wait_for`, `asyncio.timeout`, `task.cancel()` (once and twice).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from provisioner_support import check_ledger, connect, our_tasks

import sendblue_lines._shield
from sendblue_lines import (
    LinesClient,
    OutcomeUnknownError,
    Preview,
    ProvisionedLine,
    Provisioner,
    ProvisionOutcome,
    RetryPolicy,
)
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

#: How long the sandbox holds every confirm (and a slow preview) before answering.
SLOW_SECONDS = 0.3


@pytest.fixture
def server(sendblue_sandbox: Sandbox[ManualClock]) -> Sandbox[ManualClock]:
    """The sandbox, room for many lines; every confirm answer waits SLOW_SECONDS."""
    sendblue_sandbox.account.daily_limit = 100
    sendblue_sandbox.account.monthly_limit = 100
    slow_confirms(sendblue_sandbox, SLOW_SECONDS)
    return sendblue_sandbox


def slow_confirms(server: Sandbox[ManualClock], seconds: float) -> None:
    """Make every confirm from now on wait `seconds` before it commits and answers."""
    server.faults.clear("confirm")
    server.inject("confirm", Fault.delay(seconds), times=1000)


@pytest.fixture
async def client(server: Sandbox[ManualClock]) -> AsyncIterator[LinesClient]:
    """A LinesClient on the sandbox, with short timeouts."""
    async with connect(
        server,
        timeout=2.0,
        retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0),
    ) as c:
        yield c


async def settled(server: Sandbox[ManualClock]) -> None:
    """Wait for the server's handlers, and check that nothing of ours runs."""
    await server.wait_idle()
    assert our_tasks() == []


class StuckClient(LinesClient):
    """A client whose confirm never answers, whatever its timeouts say."""

    async def confirm(self, preview: Preview | str) -> ProvisionedLine:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")


async def consume(
    provisioner: Provisioner, count: int, concurrency: int | None = None
) -> None:
    async with provisioner.batch(count, concurrency=concurrency or count) as outcomes:
        async for _ in outcomes:
            pass


Canceller = Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]


async def by_anyio(run: Callable[[], Awaitable[None]]) -> None:
    with anyio.move_on_after(0.1):
        await run()


async def by_wait_for(run: Callable[[], Awaitable[None]]) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(run(), 0.1)


async def by_task_cancel(run: Callable[[], Awaitable[None]]) -> None:
    async def go() -> None:
        await run()

    task = asyncio.create_task(go())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_anyio_scope_waits_for_the_sent_confirm(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """move_on_after mid-confirm: the line reaches on_outcome, then the scope ends."""
    seen: list[ProvisionOutcome] = []
    #: What happened, in order, and whether the scope was cancelled by then.
    events: list[tuple[str, bool]] = []
    scope = anyio.move_on_after(0.1)

    def report(outcome: ProvisionOutcome) -> None:
        seen.append(outcome)
        events.append(("reported", scope.cancel_called))

    provisioner = Provisioner(client, on_outcome=report)
    with scope:
        await provisioner.provision()
    events.append(("left the scope", scope.cancel_called))
    assert scope.cancelled_caught
    # Cancelled while the confirm was out, the scope still waited for its answer.
    assert events == [("reported", True), ("left the scope", True)]
    assert [o.ok for o in seen] == [True]
    assert seen[0].line is not None
    assert [seen[0].line.phone_number] == [c.phone_number for c in server.purchases()]
    await settled(server)


async def test_waiting_for_a_sent_confirm_does_not_spin(
    client: LinesClient, server: Sandbox[ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shielded wait sleeps: anyio's repeated cancel delivery is held off.

    Counted, not timed: a spinning wait would call `asyncio.wait` again at
    every re-delivered cancellation, thousands of times in half a second.
    """
    slow_confirms(server, 0.5)
    waits = CountedWaits()
    monkeypatch.setattr(sendblue_lines._shield, "asyncio", waits)
    provisioner = Provisioner(client)
    scope = anyio.CancelScope()

    async def buy() -> None:
        with scope:
            await provisioner.provision()

    async with anyio.create_task_group() as group:
        group.start_soon(buy)
        await server.wait_for_requests("confirm")  # the confirm is out
        scope.cancel()
    assert scope.cancelled_caught
    assert 1 <= waits.count <= 3
    await settled(server)


class CountedWaits:
    """`asyncio` as `_shield` sees it, counting its calls of `asyncio.wait`."""

    def __init__(self) -> None:
        self.count = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def wait(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return await asyncio.wait(*args, **kwargs)


async def test_wait_for_raises_timeout_after_the_outcome_is_reported(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """asyncio.wait_for cannot break the shield: line reported, then TimeoutError."""
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, on_outcome=seen.append)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(provisioner.provision(), 0.1)
    assert [o.ok for o in seen] == [True]
    assert len(server.ledger) == 1
    await settled(server)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
async def test_asyncio_timeout_is_held_off_too(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """asyncio.timeout() around provision(): the outcome comes before TimeoutError."""
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, on_outcome=seen.append)
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.1):
            await provisioner.provision()
    assert [o.ok for o in seen] == [True]
    await settled(server)


@pytest.mark.parametrize("cancels", [1, 2, 5])
async def test_task_cancel_waits_for_the_answer(
    client: LinesClient, server: Sandbox[ManualClock], cancels: int
) -> None:
    """task.cancel(), even repeated, lets the confirm finish and report first."""
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, on_outcome=seen.append)
    task = asyncio.create_task(provisioner.provision())
    await server.wait_for_requests("confirm")
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0.02)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [o.ok for o in seen] == [True]
    assert len(server.ledger) == 1
    await settled(server)


async def test_an_anyio_task_group_cancel_is_held_off(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """Cancelling the task group that runs provision() still reports its line."""
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, on_outcome=seen.append)
    async with anyio.create_task_group() as group:
        group.start_soon(provisioner.provision)
        await server.wait_for_requests("confirm")
        group.cancel_scope.cancel()
    assert [o.ok for o in seen] == [True]
    await settled(server)


async def test_a_cancelled_confirm_is_logged_at_warning_when_nobody_listens(
    client: LinesClient, server: Sandbox[ManualClock], caplog: pytest.LogCaptureFixture
) -> None:
    """Without on_outcome, a line bought after the cancellation is logged at WARNING."""
    with caplog.at_level(logging.INFO, logger="sendblue_lines"):
        with anyio.move_on_after(0.1):
            await Provisioner(client).provision()
    late = [r for r in caplog.records if "after its caller was cancelled" in r.message]
    assert len(late) == 1
    assert late[0].levelno == logging.WARNING
    assert "+1415555" in late[0].getMessage()
    await settled(server)


async def test_an_async_on_outcome_finishes_despite_the_cancellation(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """An async on_outcome that awaits still completes after the cancellation."""
    seen: list[ProvisionOutcome] = []

    async def record(outcome: ProvisionOutcome) -> None:
        await asyncio.sleep(0.05)
        seen.append(outcome)

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(Provisioner(client, on_outcome=record).provision(), 0.1)
    assert len(seen) == 1
    await settled(server)


async def test_cancelling_before_the_confirm_sends_nothing(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """A cancellation during preview is immediate: no confirm, no outcome."""
    server.inject("preview", Fault.delay(SLOW_SECONDS))
    seen: list[ProvisionOutcome] = []
    started = anyio.current_time()
    with anyio.move_on_after(0.05):
        await Provisioner(client, on_outcome=seen.append).provision()
    assert anyio.current_time() - started < SLOW_SECONDS
    await server.wait_idle()
    assert server.counters["confirm"].requests == 0
    assert seen == []
    assert our_tasks() == []


async def test_the_client_stays_usable_after_a_cancellation(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """After a cancelled provision(), the same client and Provisioner buy again."""
    provisioner = Provisioner(client)
    with anyio.move_on_after(0.1):
        await provisioner.provision()
    line = await provisioner.provision()
    assert isinstance(line, ProvisionedLine)
    assert len(server.ledger) == 2
    await settled(server)


async def test_a_confirm_past_its_bound_is_reported_unknown(
    server: Sandbox[ManualClock],
) -> None:
    """A sent confirm that outlives its worst case is given up as OutcomeUnknown."""
    seen: list[ProvisionOutcome] = []
    async with StuckClient(
        server.api_key_id,
        server.api_secret_key,
        base_url=server.url,
        timeout=0.1,
        confirm_attempts=1,
        retry=RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0),
    ) as stuck:
        provisioner = Provisioner(stuck, on_outcome=seen.append)
        started = anyio.current_time()
        with anyio.move_on_after(0.05):
            await provisioner.provision()
        waited = anyio.current_time() - started
    assert 1.0 <= waited < 3.0  # 0.1 s x 1 attempt + 1 s of slack
    [outcome] = seen
    assert isinstance(outcome.error, OutcomeUnknownError)
    assert "no answer within" in outcome.error.reason
    assert outcome.error.preview_token.startswith("lpv_")
    assert our_tasks() == []
    assert provisioner.lines_left is None


@pytest.mark.parametrize("cancel", [by_anyio, by_wait_for, by_task_cancel])
async def test_a_cancelled_batch_still_reports_its_sent_confirms(
    client: LinesClient, server: Sandbox[ManualClock], cancel: Canceller
) -> None:
    """Cancelling a batch's consumer mid-confirm: every charge reaches on_outcome."""
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, on_outcome=seen.append)
    await cancel(lambda: consume(provisioner, 3))
    await server.wait_idle()
    assert len(server.ledger) == 3
    assert sorted(o.index for o in seen if o.ok) == [0, 1, 2]
    assert our_tasks() == []


async def test_a_native_cancel_of_a_batch_worker_still_reports_the_line(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """A native cancel of a batch's worker mid-confirm: its line is still reported.

    A worker's confirm runs as a task of its own, as `provision()`'s does; a
    native `task.cancel()` of the worker itself, as an event loop's shutdown
    does to every task, cannot cut it off: the worker waits for its answer.
    """
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, on_outcome=seen.append)
    consumer = asyncio.create_task(consume(provisioner, 1))
    await server.wait_for_requests("confirm")
    # anyio names a task group's task after the function it runs.
    workers = [t for t in asyncio.all_tasks() if t.get_name().endswith("Batch._work")]
    assert len(workers) == 1
    workers[0].cancel()
    await consumer  # anyio's task group ends quietly on its worker's cancellation
    [outcome] = seen
    assert outcome.line is not None
    assert [c.phone_number for c in server.purchases()] == [outcome.line.phone_number]
    await settled(server)


async def test_a_cancelled_batch_sends_no_confirm_for_slots_still_previewing(
    client: LinesClient, server: Sandbox[ManualClock]
) -> None:
    """Leaving early: the slot in confirm finishes, the one in preview sends nothing."""
    slow_confirms(server, SLOW_SECONDS)
    server.inject("preview", Fault("none"))
    server.inject("preview", Fault.delay(SLOW_SECONDS))
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, on_outcome=seen.append)
    with anyio.move_on_after(0.15):
        await consume(provisioner, 2)
    await server.wait_idle()
    assert server.counters["confirm"].requests == 1
    assert [o.ok for o in seen] == [True]
    assert our_tasks() == []


@pytest.mark.parametrize(
    ("cancel_when", "previews"),
    [
        # Mid-confirm, shielded: the worker takes the cancellation before slot 1.
        ("confirm", 1),
        # Slot 1's slow preview is in flight: the shield lasted the confirm only.
        ("second preview", 2),
    ],
)
async def test_a_worker_is_cancellable_outside_its_confirm_only(
    client: LinesClient, server: Sandbox[ManualClock], cancel_when: str, previews: int
) -> None:
    """One worker, three slots, cancelled during slot 0's confirm or slot 1's preview.

    Either way, one confirm: slot 1 never previews, or its preview is cut.
    """
    server.inject("preview", Fault("none"))
    server.inject("preview", Fault.delay(SLOW_SECONDS))
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, on_outcome=seen.append)
    async with anyio.create_task_group() as group:
        group.start_soon(consume, provisioner, 3, 1)
        if cancel_when == "confirm":
            await server.wait_for_requests("confirm")
        else:
            await server.wait_for_requests("preview", count=2)
        group.cancel_scope.cancel()
    await server.wait_idle()
    assert server.counters["preview"].requests == previews
    assert server.counters["confirm"].requests == 1
    assert [o.ok for o in seen] == [True]
    await settled(server)


async def test_leaving_a_batch_block_early_logs_late_outcomes(
    client: LinesClient, server: Sandbox[ManualClock], caplog: pytest.LogCaptureFixture
) -> None:
    """Confirms that settle after the consumer left are logged at WARNING.

    A batch's confirm runs on in its worker, shielded, and its outcome goes
    to the batch's stream, which nobody reads any more: the batch logs it.
    """
    provisioner = Provisioner(client)
    with caplog.at_level(logging.INFO, logger="sendblue_lines"):
        async with provisioner.batch(2, concurrency=2) as outcomes:
            await server.wait_for_requests("confirm")
            await asyncio.sleep(0.05)  # both confirms are in flight now
            del outcomes  # leave without reading a single outcome
    late = [
        r
        for r in caplog.records
        if "settled after its caller was cancelled" in r.message
        and r.levelno == logging.WARNING
    ]
    assert len(late) == 2
    assert all(r.levelno == logging.WARNING for r in late)
    await settled(server)


async def test_a_cancelled_caller_still_gets_its_line_reported(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """wait_for expiring mid-confirm: the line is reported, then TimeoutError."""
    sendblue_sandbox.inject("confirm", Fault.delay(0.3))
    seen: list[ProvisionOutcome] = []
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(
            Provisioner(sandbox_client, on_outcome=seen.append).provision(), 0.1
        )
    assert [o.ok for o in seen] == [True]
    check_ledger(sendblue_sandbox, seen)
