"""Provisioner.batch() and provision_many(): plans, stops, concurrency, the stream."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _mock_api import (
    BASE_URL,
    FAST_NO_LINES,
    KEY_ID,
    NO_WAIT,
    SECRET,
    MockApi,
    canonical,
)
from aioresponses import aioresponses as AioResponses

from sendblue_lines import (
    APIError,
    AuthenticationError,
    BatchResult,
    ConfigurationError,
    DailyLimitReachedError,
    DeclinedError,
    LinesClient,
    MalformedResponseError,
    MaxLinesReachedError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProvisionedLine,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    RateLimitError,
    SendblueError,
    TokenExpiredError,
    TransportError,
)


@pytest.fixture
async def client() -> AsyncIterator[LinesClient]:
    """A LinesClient on the mocked base URL, retrying without waiting."""
    async with LinesClient(KEY_ID, SECRET, base_url=BASE_URL, retry=NO_WAIT) as c:
        yield c


@pytest.fixture
def api(mocked: AioResponses) -> MockApi:
    """The scripted API, recording every call in order."""
    return MockApi(mocked)


def make(client: LinesClient, **options: Any) -> Provisioner:
    options.setdefault("no_lines_retry", FAST_NO_LINES)
    return Provisioner(client, **options)


# -- the plan --------------------------------------------------------------------


async def test_a_batch_buys_count_lines_with_one_limits_read(
    client: LinesClient, api: MockApi
) -> None:
    """provision_many(3) reads the limits once and buys three lines."""
    api.limits()
    api.buys(3)
    result = await make(client).provision_many(3, concurrency=2)
    assert len(result.lines) == 3
    assert (result.requested, result.errors, result.not_attempted) == (3, [], 0)
    assert result.stopped_by is None
    assert api.count("limits") == 1
    assert (api.count("preview"), api.count("confirm")) == (3, 3)


async def test_lines_and_outcomes_are_in_slot_order(
    client: LinesClient, api: MockApi
) -> None:
    """Whatever order slots settle in, the result lists them by slot."""
    api.limits()
    api.preview(times=3)
    api.confirm(delay=0.15)  # the first confirm sent settles last
    api.confirm(times=2)
    settled: list[int] = []
    result = await make(
        client, on_outcome=lambda o: settled.append(o.index)
    ).provision_many(3, concurrency=3)
    assert settled != sorted(settled)
    assert [o.index for o in result.outcomes] == [0, 1, 2]
    assert result.lines == [o.line for o in result.outcomes]


async def test_the_plan_caps_the_slots_at_what_the_limits_leave(
    client: LinesClient, api: MockApi
) -> None:
    """With room for 2 of 5, two slots run; the rest are not attempted."""
    api.limits(canonical(2, 10))
    api.buys(2)
    result = await make(client).provision_many(5, concurrency=5)
    assert len(result.lines) == 2
    assert result.not_attempted == 3
    assert isinstance(result.stopped_by, DailyLimitReachedError)
    assert result.stopped_by.limits.daily.remaining == 2
    assert (api.count("preview"), api.count("confirm")) == (2, 2)


async def test_a_full_window_starts_no_slot(client: LinesClient, api: MockApi) -> None:
    """A full monthly window: nothing previewed, every slot not attempted."""
    api.limits(canonical(3, 0))
    result = await make(client).provision_many(4)
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
    client: LinesClient, api: MockApi, body: dict[str, Any], slots: int
) -> None:
    """Unknown limits plan the whole count; a bare limit plans up to that limit."""
    api.limits(body)
    api.buys(slots)
    result = await make(client).provision_many(4, concurrency=4)
    assert len(result.lines) == slots
    assert api.count("confirm") == slots
    assert result.not_attempted == 4 - slots


async def test_a_failed_limits_read_stops_the_batch_without_raising(
    client: LinesClient, api: MockApi
) -> None:
    """A 401 on the limits read becomes stopped_by; no slot starts, nothing raised."""
    api.fail("limits", "401")
    result = await make(client).provision_many(3)
    assert isinstance(result.stopped_by, AuthenticationError)
    assert (result.lines, result.errors, result.not_attempted) == ([], [], 3)
    assert api.names() == ["limits"]


async def test_an_empty_batch_sends_nothing(client: LinesClient, api: MockApi) -> None:
    """count=0 returns an empty result without a request."""
    result = await make(client).provision_many(0)
    assert result == BatchResult(
        requested=0, lines=[], errors=[], not_attempted=0, stopped_by=None
    )
    assert api.calls == []


async def test_confirms_never_exceed_the_plan_despite_410s(
    client: LinesClient, api: MockApi
) -> None:
    """Re-previews after 410s stay inside their slots: purchases never pass the plan."""
    api.limits(canonical(2, 10))
    api.preview(times=3)
    api.fail("confirm", "410")
    api.confirm(times=2)
    result = await make(client).provision_many(6, concurrency=6)
    assert len(result.lines) == 2
    assert api.count("confirm") == 3  # one 410, which bought nothing
    assert result.not_attempted == 4


# -- what stops a batch ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "failure", "error"),
    [
        pytest.param("preview", "401", AuthenticationError, id="401"),
        pytest.param("preview", "402", NoCardOnFileError, id="402"),
        pytest.param("confirm", "403", PermissionDeniedError, id="403"),
        pytest.param("confirm", "429d", DailyLimitReachedError, id="429-daily"),
        pytest.param("preview", "429m", MonthlyLimitReachedError, id="429-monthly"),
        pytest.param("preview", "429", RateLimitError, id="429-plain"),
        pytest.param("preview", "503nl", NoLinesAvailableError, id="no-lines"),
    ],
)
async def test_account_level_errors_stop_new_slots(
    client: LinesClient,
    api: MockApi,
    step: str,
    failure: str,
    error: type[APIError],
) -> None:
    """401, 402, 403, a 429 and no-lines stop the batch: the rest not attempted."""
    api.limits()
    if step == "confirm":
        api.preview()
    api.fail(step, failure)
    result = await make(client, no_lines_retry=None).provision_many(4, concurrency=1)
    assert isinstance(result.stopped_by, error)
    assert result.errors == [result.stopped_by]
    assert (result.lines, result.not_attempted) == ([], 3)
    assert api.count("preview") == 1


async def test_no_lines_stops_only_after_its_retries(
    client: LinesClient, api: MockApi
) -> None:
    """NoLinesAvailableError is retried inside the slot before it stops the batch."""
    api.limits()
    api.fail("preview", "503nl", times=3)
    result = await make(client).provision_many(2, concurrency=1)
    assert isinstance(result.stopped_by, NoLinesAvailableError)
    assert api.count("preview") == 3
    assert result.not_attempted == 1


async def test_an_account_error_wins_over_the_plans_limit_error(
    client: LinesClient, api: MockApi
) -> None:
    """When both the plan and a 401 held slots back, stopped_by is the 401."""
    api.limits(canonical(2, 10))
    api.fail("preview", "401")
    result = await make(client).provision_many(5, concurrency=1)
    assert isinstance(result.stopped_by, AuthenticationError)
    assert result.not_attempted == 4


async def test_slots_in_flight_finish_after_a_stop(
    client: LinesClient, api: MockApi
) -> None:
    """A stop lets the slot already previewing buy its line, and starts no other."""
    api.limits()
    api.fail("preview", "401", delay=0.02)
    api.preview(delay=0.1)
    api.confirm()
    result = await make(client).provision_many(5, concurrency=2)
    assert isinstance(result.stopped_by, AuthenticationError)
    assert len(result.lines) == 1
    assert result.not_attempted == 3


def _unclear(api: MockApi) -> None:
    api.preview()
    api.fail("confirm", "502")
    api.fail("confirm", "410")


def _failed(api: MockApi) -> None:
    api.preview()
    api.fail("confirm", "500pf")


def _expired(api: MockApi) -> None:
    api.preview()
    api.fail("confirm", "410")


def _transport(api: MockApi) -> None:
    api.raise_("preview", aiohttp.ServerDisconnectedError(), times=3)


def _malformed(api: MockApi) -> None:
    api.raw("preview", 200, {"status": "OK", "preview_token": 7})


@pytest.mark.parametrize(
    ("script", "error"),
    [
        pytest.param(_unclear, OutcomeUnknownError, id="outcome-unknown"),
        pytest.param(_failed, ProvisioningFailedError, id="provisioning-failed"),
        pytest.param(_expired, TokenExpiredError, id="token-expired"),
        pytest.param(_transport, TransportError, id="transport"),
        pytest.param(_malformed, MalformedResponseError, id="malformed"),
    ],
)
async def test_per_slot_errors_do_not_stop_the_batch(
    client: LinesClient, api: MockApi, script: Any, error: type[SendblueError]
) -> None:
    """A slot's own failure is reported and the other slots still run."""
    api.limits()
    script(api)
    api.buys(2)
    result = await make(client, max_repreviews=0).provision_many(3, concurrency=1)
    assert [type(e) for e in result.errors] == [error]
    assert len(result.lines) == 2
    assert (result.not_attempted, result.stopped_by) == (0, None)
    assert result.outcomes[0].error is result.errors[0]


async def test_a_declined_slot_is_reported_and_the_batch_goes_on(
    client: LinesClient, api: MockApi
) -> None:
    """Approve declining a preview fails that slot only; nothing confirmed for it."""
    api.limits()
    api.preview(times=3)
    api.confirm(times=2)
    answers = iter([False, True, True])
    result = await make(client, approve=lambda p: next(answers)).provision_many(
        3, concurrency=1
    )
    assert [type(e) for e in result.errors] == [DeclinedError]
    assert len(result.lines) == 2
    assert api.count("confirm") == 2
    assert result.charged == 2


# -- max_lines -------------------------------------------------------------------------


async def test_max_lines_caps_a_batch(client: LinesClient, api: MockApi) -> None:
    """A batch plans no more slots than max_lines leaves, and says so."""
    api.limits()
    api.buys(2)
    provisioner = make(client, max_lines=2)
    result = await provisioner.provision_many(4)
    assert len(result.lines) == 2
    assert result.not_attempted == 2
    assert isinstance(result.stopped_by, MaxLinesReachedError)
    assert provisioner.lines_left == 0


async def test_failed_slots_give_their_max_lines_units_back(
    client: LinesClient, api: MockApi
) -> None:
    """Slots that bought nothing, or never started, do not use up max_lines."""
    api.limits(canonical(2, 10))
    api.preview()
    api.fail("confirm", "410")
    api.buys()
    provisioner = make(client, max_lines=5, max_repreviews=0)
    result = await provisioner.provision_many(4, concurrency=1)
    assert len(result.lines) == 1
    assert provisioner.lines_left == 4


async def test_two_flows_share_max_lines(client: LinesClient, api: MockApi) -> None:
    """A batch's planned slots are reserved: a provision() alongside is refused."""
    api.limits(repeat=True)
    api.preview(times=2, delay=0.05)
    api.confirm(times=2)
    provisioner = make(client, max_lines=2)
    async with provisioner.batch(2) as outcomes:
        with pytest.raises(MaxLinesReachedError):
            await provisioner.provision()
        lines = [o.line async for o in outcomes]
    assert len(lines) == 2
    assert api.count("preview") == 2


# -- concurrency, the stream, the block ------------------------------------------


async def test_concurrency_bounds_the_requests_in_flight(
    client: LinesClient, api: MockApi
) -> None:
    """No more than `concurrency` slots have a request in flight at once."""
    api.limits()
    api.delay = 0.02
    api.buys(6)
    result = await make(client).provision_many(6, concurrency=2)
    assert len(result.lines) == 6
    assert api.max_in_flight == 2


async def test_outcomes_arrive_as_they_settle(
    client: LinesClient, api: MockApi
) -> None:
    """The batch yields each outcome once, with every slot index exactly once."""
    api.limits()
    api.buys(3)
    seen: list[ProvisionOutcome] = []
    async with make(client, on_outcome=seen.append).batch(3, concurrency=3) as outcomes:
        assert outcomes.planned == 3
        got = [outcome async for outcome in outcomes]
    assert sorted(o.index for o in got) == [0, 1, 2]
    assert sorted(o.index for o in seen) == [0, 1, 2]
    assert outcomes.not_attempted == 0


async def test_leaving_the_block_early_cancels_what_was_not_sent(
    client: LinesClient, api: MockApi
) -> None:
    """Breaking out after the first outcome sends no further confirm."""
    api.limits()
    api.buys()
    api.preview(times=3, delay=5.0)
    async with make(client).batch(4, concurrency=1) as outcomes:
        async for outcome in outcomes:
            assert outcome.ok
            break
    assert api.count("confirm") == 1
    assert outcomes.started == 2
    assert outcomes.not_attempted == 2


async def test_unconsumed_outcomes_are_logged(
    client: LinesClient, api: MockApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Outcomes settled but never taken from the stream are logged at WARNING."""
    api.limits()
    api.buys(3)
    with caplog.at_level(logging.INFO, logger="sendblue_lines"):
        async with make(client).batch(3, concurrency=3) as outcomes:
            async for _ in outcomes:
                await asyncio.sleep(0.1)  # the other two settle meanwhile
                break
    never = [r for r in caplog.records if "never consumed" in r.getMessage()]
    assert len(never) == 2
    assert all(r.levelno == logging.WARNING for r in never)


async def test_consumed_outcomes_are_not_kept(
    client: LinesClient, api: MockApi
) -> None:
    """The batch holds no reference to outcomes already taken from it."""
    api.limits()
    api.buys(2)
    api.preview(delay=0.2)
    api.confirm()
    async with make(client).batch(3, concurrency=3) as outcomes:
        first = await outcomes.__anext__()
        second = await outcomes.__anext__()
        refs = [weakref.ref(first), weakref.ref(second)]
        del first, second
        gc.collect()
        assert [r() for r in refs] == [None, None]
        assert (await outcomes.__anext__()).ok


async def test_a_consumer_that_stops_reading_does_not_block_the_slots(
    client: LinesClient, api: MockApi
) -> None:
    """Slots settle and report even while nobody reads the stream."""
    api.limits()
    api.buys(4)
    seen: list[ProvisionOutcome] = []
    async with make(client, on_outcome=seen.append).batch(4, concurrency=4):
        for _ in range(100):
            if len(seen) == 4:
                break
            await asyncio.sleep(0.01)
    assert len(seen) == 4


async def test_on_outcome_sees_every_slot_of_a_batch(
    client: LinesClient, api: MockApi
) -> None:
    """on_outcome is called once per attempted slot, failures included."""
    api.limits()
    api.preview()
    api.fail("confirm", "500pf")
    api.buys(2)
    seen: list[ProvisionOutcome] = []
    result = await make(client, on_outcome=seen.append).provision_many(3, concurrency=1)
    assert sorted(seen, key=lambda o: o.index) == result.outcomes
    assert result.charged == 3


@pytest.mark.parametrize(
    ("count", "concurrency"),
    [(-1, 1), (1.5, 1), (True, 1), (3, 0), (3, 2.0), (3, False)],
)
async def test_bad_batch_arguments_are_refused_at_once(
    client: LinesClient, api: MockApi, count: Any, concurrency: Any
) -> None:
    """batch() checks its arguments when called, before any await or request."""
    with pytest.raises(ConfigurationError):
        make(client).batch(count, concurrency=concurrency)
    assert api.calls == []


async def test_a_batch_is_entered_once(client: LinesClient, api: MockApi) -> None:
    """Entering one batch twice is refused."""
    api.limits()
    batch = make(client).batch(0)
    async with batch:
        pass
    with pytest.raises(ConfigurationError):
        await batch.__aenter__()


async def test_iterating_outside_the_block_is_refused(client: LinesClient) -> None:
    """A batch yields nothing before its block is entered."""
    batch = make(client).batch(1)
    with pytest.raises(ConfigurationError):
        await batch.__anext__()


def test_an_outcome_has_exactly_one_of_line_and_error() -> None:
    """ProvisionOutcome refuses both or neither."""
    line = ProvisionedLine(phone_number="+1", worker_id="w", subscription_id="s")
    with pytest.raises(ValueError, match="exactly one"):
        ProvisionOutcome(index=0)
    with pytest.raises(ValueError, match="exactly one"):
        ProvisionOutcome(index=0, line=line, error=SendblueError("x"))
