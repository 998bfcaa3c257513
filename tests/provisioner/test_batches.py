"""batch() and provision_many(): one limits read, slot order, the stream."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest
from provisioner_support import Make
from scripted_api import ScriptedApi, canonical

from sendblue_lines import (
    AuthenticationError,
    BatchResult,
    ConfigurationError,
    DailyLimitReachedError,
    LinesClient,
    MonthlyLimitReachedError,
    ProvisionedLine,
    ProvisionOutcome,
    SendblueError,
)


async def test_a_batch_buys_count_lines_with_one_limits_read(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """provision_many(3) reads the limits once and buys three lines."""
    api.limits()
    api.buys(3)
    result = await make().provision_many(3, concurrency=2)
    assert len(result.lines) == 3
    assert (result.requested, result.errors, result.not_attempted) == (3, [], 0)
    assert result.stopped_by is None
    assert api.count("limits") == 1
    assert (api.count("preview"), api.count("confirm")) == (3, 3)


async def test_lines_and_outcomes_are_in_slot_order(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Whatever order slots settle in, the result lists them by slot."""
    api.limits()
    api.preview(times=3)
    api.confirm(delay=0.15)  # the first confirm sent settles last
    api.confirm(times=2)
    settled: list[int] = []
    result = await make(on_outcome=lambda o: settled.append(o.index)).provision_many(
        3, concurrency=3
    )
    assert settled != sorted(settled)
    assert [o.index for o in result.outcomes] == [0, 1, 2]
    assert result.lines == [o.line for o in result.outcomes]


async def test_the_plan_caps_the_slots_at_what_the_limits_leave(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """With room for 2 of 5, two slots run; the rest are not attempted."""
    api.limits(canonical(2, 10))
    api.buys(2)
    result = await make().provision_many(5, concurrency=5)
    assert len(result.lines) == 2
    assert result.not_attempted == 3
    assert isinstance(result.stopped_by, DailyLimitReachedError)
    assert result.stopped_by.limits.daily.remaining == 2
    assert (api.count("preview"), api.count("confirm")) == (2, 2)


async def test_a_full_window_starts_no_slot(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A full monthly window: nothing previewed, every slot not attempted."""
    api.limits(canonical(3, 0))
    result = await make().provision_many(4)
    assert (result.lines, result.errors, result.not_attempted) == ([], [], 4)
    assert isinstance(result.stopped_by, MonthlyLimitReachedError)
    assert api.names() == ["limits"]


@pytest.mark.parametrize(
    ("body", "slots"),
    [
        pytest.param({"status": "OK"}, 4, id="unknown"),
        pytest.param(
            {"status": "OK", "limits": {"api_provision_monthly": 2}}, 2, id="limit-only"
        ),
    ],
)
async def test_limits_without_remaining_plan_by_limit_or_count(
    make: Make, client: LinesClient, api: ScriptedApi, body: dict[str, Any], slots: int
) -> None:
    """Unknown limits plan the whole count; a bare limit plans up to that limit."""
    api.limits(body)
    api.buys(slots)
    result = await make().provision_many(4, concurrency=4)
    assert len(result.lines) == slots
    assert api.count("confirm") == slots
    assert result.not_attempted == 4 - slots


async def test_a_failed_limits_read_stops_the_batch_without_raising(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A 401 on the limits read becomes stopped_by; no slot starts, nothing raised."""
    api.fail("limits", "401")
    result = await make().provision_many(3)
    assert isinstance(result.stopped_by, AuthenticationError)
    assert (result.lines, result.errors, result.not_attempted) == ([], [], 3)
    assert api.names() == ["limits"]


async def test_an_empty_batch_sends_nothing(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """count=0 returns an empty result without a request."""
    result = await make().provision_many(0)
    assert result == BatchResult(
        requested=0, lines=[], errors=[], not_attempted=0, stopped_by=None
    )
    assert api.calls == []


async def test_confirms_never_exceed_the_plan_despite_410s(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Re-previews after 410s stay inside their slots: purchases never pass the plan."""
    api.limits(canonical(2, 10))
    api.preview(times=3)
    api.fail("confirm", "410")
    api.confirm(times=2)
    result = await make().provision_many(6, concurrency=6)
    assert len(result.lines) == 2
    assert api.count("confirm") == 3  # one 410, which bought nothing
    assert result.not_attempted == 4


async def test_concurrency_bounds_the_requests_in_flight(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """No more than `concurrency` slots have a request in flight at once."""
    api.limits()
    api.delay = 0.02
    api.buys(6)
    result = await make().provision_many(6, concurrency=2)
    assert len(result.lines) == 6
    assert api.max_in_flight == 2


async def test_outcomes_arrive_as_they_settle(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """The batch yields each outcome once, with every slot index exactly once."""
    api.limits()
    api.buys(3)
    seen: list[ProvisionOutcome] = []
    async with make(on_outcome=seen.append).batch(3, concurrency=3) as outcomes:
        assert outcomes.planned == 3
        got = [outcome async for outcome in outcomes]
    assert sorted(o.index for o in got) == [0, 1, 2]
    assert sorted(o.index for o in seen) == [0, 1, 2]
    assert outcomes.not_attempted == 0


async def test_leaving_the_block_early_cancels_what_was_not_sent(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Breaking out after the first outcome sends no further confirm."""
    api.limits()
    api.buys()
    api.preview(times=3, delay=5.0)
    async with make().batch(4, concurrency=1) as outcomes:
        async for outcome in outcomes:
            assert outcome.ok
            break
    assert api.count("confirm") == 1
    assert outcomes.started == 2
    assert outcomes.not_attempted == 2


async def test_unconsumed_outcomes_are_logged(
    make: Make, client: LinesClient, api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Outcomes settled but never taken from the stream are logged at WARNING."""
    api.limits()
    api.buys(3)
    with caplog.at_level(logging.INFO, logger="sendblue_lines"):
        async with make().batch(3, concurrency=3) as outcomes:
            async for _ in outcomes:
                await asyncio.sleep(0.1)  # the other two settle meanwhile
                break
    never = [r for r in caplog.records if "never consumed" in r.getMessage()]
    assert len(never) == 2
    assert all(r.levelno == logging.WARNING for r in never)


async def test_consumed_outcomes_are_not_kept(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """The batch holds no reference to outcomes already taken from it."""
    api.limits()
    api.buys(2)
    api.preview(delay=0.2)
    api.confirm()
    async with make().batch(3, concurrency=3) as outcomes:
        first = await outcomes.__anext__()
        second = await outcomes.__anext__()
        refs = [weakref.ref(first), weakref.ref(second)]
        del first, second
        gc.collect()
        assert [r() for r in refs] == [None, None]
        assert (await outcomes.__anext__()).ok


async def test_a_consumer_that_stops_reading_does_not_block_the_slots(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Slots settle and report even while nobody reads the stream."""
    api.limits()
    api.buys(4)
    seen: list[ProvisionOutcome] = []
    async with make(on_outcome=seen.append).batch(4, concurrency=4):
        for _ in range(100):
            if len(seen) == 4:
                break
            await asyncio.sleep(0.01)
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("count", "concurrency"),
    [(-1, 1), (1.5, 1), (True, 1), (3, 0), (3, 2.0), (3, False)],
)
async def test_bad_batch_arguments_are_refused_at_once(
    make: Make, client: LinesClient, api: ScriptedApi, count: Any, concurrency: Any
) -> None:
    """batch() checks its arguments when called, before any await or request."""
    with pytest.raises(ConfigurationError):
        make().batch(count, concurrency=concurrency)
    assert api.calls == []


async def test_a_batch_is_entered_once(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Entering one batch twice is refused."""
    api.limits()
    batch = make().batch(0)
    async with batch:
        pass
    with pytest.raises(ConfigurationError):
        await batch.__aenter__()


async def test_iterating_outside_the_block_is_refused(
    make: Make, client: LinesClient
) -> None:
    """A batch yields nothing before its block is entered."""
    batch = make().batch(1)
    with pytest.raises(ConfigurationError):
        await batch.__anext__()


def test_an_outcome_has_exactly_one_of_line_and_error() -> None:
    """ProvisionOutcome refuses both or neither."""
    line = ProvisionedLine(phone_number="+1", worker_id="w", subscription_id="s")
    with pytest.raises(ValueError, match="exactly one"):
        ProvisionOutcome(index=0)
    with pytest.raises(ValueError, match="exactly one"):
        ProvisionOutcome(index=0, line=line, error=SendblueError("x"))
