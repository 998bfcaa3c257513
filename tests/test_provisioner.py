"""Provisioner.provision() and plan(): every branch, asserted on the requests sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

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
    ConfigurationError,
    DailyLimitReachedError,
    DeclinedError,
    LinesClient,
    MaxLinesReachedError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    Plan,
    Preview,
    ProvisionedLine,
    Provisioner,
    ProvisioningFailedError,
    ProvisioningLimits,
    ProvisionOutcome,
    RateLimitError,
    RetryPolicy,
    ServerError,
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


# -- the happy path ------------------------------------------------------------


async def test_provision_reads_limits_then_previews_then_confirms(
    client: LinesClient, api: MockApi
) -> None:
    """One line costs limits, preview, confirm, in that order, with the token."""
    api.limits()
    [token] = api.preview()
    api.confirm()
    line = await make(client).provision()
    assert line == ProvisionedLine(
        phone_number="+14155550001", worker_id="worker_1", subscription_id="sub_1"
    )
    assert api.names() == ["limits", "preview", "confirm"]
    assert api.confirmed_tokens() == [token]


async def test_provision_reports_the_line_to_on_outcome_as_index_0(
    client: LinesClient, api: MockApi
) -> None:
    """on_outcome sees the bought line as slot 0 before provision() returns."""
    api.limits()
    api.buys()
    seen: list[ProvisionOutcome] = []
    line = await make(client, on_outcome=seen.append).provision()
    assert seen == [ProvisionOutcome(index=0, line=line)]


async def test_provision_reports_an_error_to_on_outcome(
    client: LinesClient, api: MockApi
) -> None:
    """A failed provision() hands its error to on_outcome, then raises it."""
    api.limits()
    api.preview()
    api.fail("confirm", "500pf")
    seen: list[ProvisionOutcome] = []
    with pytest.raises(ProvisioningFailedError) as caught:
        await make(client, on_outcome=seen.append).provision()
    assert seen == [ProvisionOutcome(index=0, error=caught.value)]
    assert seen[0].charged


async def test_an_async_on_outcome_is_awaited(
    client: LinesClient, api: MockApi
) -> None:
    """An async on_outcome callback runs to its end before provision() returns."""
    api.limits()
    api.buys()
    seen: list[ProvisionOutcome] = []

    async def record(outcome: ProvisionOutcome) -> None:
        seen.append(outcome)

    await make(client, on_outcome=record).provision()
    assert [o.ok for o in seen] == [True]


async def test_an_on_outcome_that_raises_is_logged_and_the_line_kept(
    client: LinesClient, api: MockApi, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken on_outcome cannot lose a purchase: it is logged at ERROR."""
    api.limits()
    api.buys()

    def broken(outcome: ProvisionOutcome) -> None:
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.ERROR, logger="sendblue_lines"):
        line = await make(client, on_outcome=broken).provision()
    assert line.phone_number == "+14155550001"
    assert any(
        r.levelno == logging.ERROR and "on_outcome" in r.getMessage()
        for r in caplog.records
    )


# -- limits first --------------------------------------------------------------


@pytest.mark.parametrize(
    ("daily", "monthly", "error"),
    [
        pytest.param(0, 5, DailyLimitReachedError, id="daily-full"),
        pytest.param(2, 0, MonthlyLimitReachedError, id="monthly-full"),
        pytest.param(0, 0, MonthlyLimitReachedError, id="both-full-monthly-wins"),
    ],
)
async def test_a_full_window_stops_before_any_preview(
    client: LinesClient,
    api: MockApi,
    daily: int,
    monthly: int,
    error: type[RateLimitError],
) -> None:
    """A window known to be full raises its limit error and sends no preview."""
    api.limits(canonical(daily, monthly))
    with pytest.raises(error) as caught:
        await make(client).provision()
    assert type(caught.value) is error
    assert caught.value.status == 429
    assert isinstance(caught.value.limits, ProvisioningLimits)
    assert api.names() == ["limits"]


async def test_the_limit_error_carries_next_available_at(
    client: LinesClient, api: MockApi
) -> None:
    """The pre-check's error says when the full window frees its next slot."""
    api.limits(canonical(0, 5, next_daily="2026-05-18T14:30:00.000Z"))
    with pytest.raises(DailyLimitReachedError) as caught:
        await make(client).provision()
    assert caught.value.next_available_at == datetime(
        2026, 5, 18, 14, 30, tzinfo=timezone.utc
    )
    assert caught.value.code == "daily_limit_reached"
    assert caught.value.limits.daily.remaining == 0


async def test_the_limit_error_is_reported_to_on_outcome(
    client: LinesClient, api: MockApi
) -> None:
    """Even the pre-check's refusal reaches on_outcome, as an error of slot 0."""
    api.limits(canonical(0, 5))
    seen: list[ProvisionOutcome] = []
    with pytest.raises(DailyLimitReachedError):
        await make(client, on_outcome=seen.append).provision()
    assert len(seen) == 1
    assert isinstance(seen[0].error, DailyLimitReachedError)
    assert not seen[0].charged


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "OK"}, id="no-limits-key"),
        pytest.param({"status": "OK", "limits": {"something": 1}}, id="unknown-keys"),
        pytest.param(
            {"status": "OK", "limits": {"api_provision_daily": 3}},
            id="flat-without-usage",
        ),
    ],
)
async def test_unknown_or_partial_limits_never_block(
    client: LinesClient, api: MockApi, body: dict[str, Any]
) -> None:
    """Limits we cannot read as full never keep provision() from previewing."""
    api.limits(body)
    api.buys()
    await make(client).provision()
    assert api.names() == ["limits", "preview", "confirm"]


async def test_unusable_limits_answers_are_logged_once_and_ignored(
    client: LinesClient,
    api: MockApi,
    mocked: AioResponses,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unreadable limits body and a 404 count as unknown; the WARNING comes once."""
    api.text("limits", 200, "<html>nope</html>")
    api.buys()
    api.fail("limits", "404")
    api.buys()
    provisioner = make(client)
    with caplog.at_level(logging.DEBUG, logger="sendblue_lines"):
        await provisioner.provision()
        await provisioner.provision()
    assert api.count("confirm") == 2
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "limits unknown" in r.getMessage()
    ]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        pytest.param("401", AuthenticationError, id="401"),
        pytest.param("402", NoCardOnFileError, id="402"),
        pytest.param("403", PermissionDeniedError, id="403"),
        pytest.param("429d", DailyLimitReachedError, id="429"),
    ],
)
async def test_account_errors_from_the_limits_read_are_raised(
    client: LinesClient, api: MockApi, failure: str, error: type[APIError]
) -> None:
    """A limits read refused for the account raises at once, without a preview."""
    api.fail("limits", failure)
    with pytest.raises(error):
        await make(client).provision()
    assert api.names() == ["limits"]


async def test_a_limits_read_that_keeps_failing_raises(
    client: LinesClient, api: MockApi
) -> None:
    """A 5xx on every try of the limits read raises ServerError, no preview."""
    api.fail("limits", "502", times=3)
    with pytest.raises(ServerError):
        await make(client).provision()
    assert api.names() == ["limits"] * 3


# -- expired tokens --------------------------------------------------------------


async def test_a_410_reruns_preview_and_confirm(
    client: LinesClient, api: MockApi
) -> None:
    """A clean 410 at confirm buys with a new preview's token."""
    api.limits()
    first, second = api.preview(times=2)
    api.fail("confirm", "410")
    api.confirm()
    await make(client).provision()
    assert api.names() == ["limits", "preview", "confirm", "preview", "confirm"]
    assert api.confirmed_tokens() == [first, second]


@pytest.mark.parametrize("max_repreviews", [0, 1, 2])
async def test_410s_are_retried_max_repreviews_times_then_raised(
    client: LinesClient, api: MockApi, max_repreviews: int
) -> None:
    """After max_repreviews new previews, the next 410 is raised as it is."""
    api.limits()
    tokens = api.preview(times=max_repreviews + 1)
    api.fail("confirm", "410", times=max_repreviews + 1)
    with pytest.raises(TokenExpiredError):
        await make(client, max_repreviews=max_repreviews).provision()
    assert api.count("preview") == max_repreviews + 1
    assert api.confirmed_tokens() == tokens


async def test_an_expired_token_is_never_sent(
    client: LinesClient, api: MockApi
) -> None:
    """A token already past its expiry (by our clock) is dropped for a new preview."""
    api.limits()
    api.preview(expires_in=-1)
    [fresh] = api.preview()
    api.confirm()
    await make(client).provision()
    assert api.confirmed_tokens() == [fresh]


async def test_a_token_inside_the_margin_counts_as_expired(
    client: LinesClient, api: MockApi
) -> None:
    """A token that expires within expiry_margin seconds is not sent."""
    api.limits()
    api.preview(expires_in=3)
    [fresh] = api.preview()
    api.confirm()
    await make(client, expiry_margin=5.0).provision()
    assert api.confirmed_tokens() == [fresh]


async def test_tokens_that_always_arrive_expired_end_in_token_expired(
    client: LinesClient, api: MockApi
) -> None:
    """Skewed clocks cannot loop: expired tokens use up the re-previews, no confirm."""
    api.limits()
    api.preview(expires_in=-60, times=3)
    with pytest.raises(TokenExpiredError) as caught:
        await make(client, max_repreviews=2).provision()
    assert api.count("confirm") == 0
    assert api.count("preview") == 3
    assert "nothing was sent" in str(caught.value)


# -- no lines available ------------------------------------------------------------


async def test_no_lines_at_preview_is_retried(
    client: LinesClient, api: MockApi
) -> None:
    """NoLinesAvailableError from preview is tried again, and a later line bought."""
    api.limits()
    api.fail("preview", "503nl", times=2)
    api.buys()
    await make(client).provision()
    assert api.count("preview") == 3


async def test_no_lines_is_raised_after_its_tries(
    client: LinesClient, api: MockApi
) -> None:
    """After no_lines_retry's attempts, NoLinesAvailableError is raised."""
    api.limits()
    api.fail("preview", "503nl", times=3)
    with pytest.raises(NoLinesAvailableError):
        await make(client).provision()
    assert api.count("preview") == 3


@pytest.mark.parametrize("disabled", [None, 0])
async def test_no_lines_retry_can_be_disabled(
    client: LinesClient, api: MockApi, disabled: Any
) -> None:
    """no_lines_retry=None or 0 raises on the first NoLinesAvailableError."""
    api.limits()
    api.fail("preview", "503nl")
    with pytest.raises(NoLinesAvailableError):
        await make(client, no_lines_retry=disabled).provision()
    assert api.count("preview") == 1


async def test_no_lines_at_confirm_previews_again(
    client: LinesClient, api: MockApi
) -> None:
    """A 503 no_lines_available at confirm (nothing bought) retries with a new token."""
    api.limits()
    first, second = api.preview(times=2)
    api.fail("confirm", "503nl")
    api.confirm()
    await make(client).provision()
    assert api.confirmed_tokens() == [first, second]


async def test_no_lines_backoff_sleeps_within_its_policy(
    client: LinesClient, api: MockApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backoff between no-lines tries follows the policy's jittered delays."""
    import anyio

    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    api.limits()
    api.fail("preview", "503nl", times=2)
    api.buys()
    policy = RetryPolicy(attempts=3, base_delay=1.0, max_delay=5.0)
    await make(client, no_lines_retry=policy).provision()
    assert len(slept) == 2
    assert 0 <= slept[0] <= 1.0
    assert 0 <= slept[1] <= 2.0


# -- money moved: never a new preview ------------------------------------------------


async def test_outcome_unknown_is_raised_without_a_new_preview(
    client: LinesClient, api: MockApi
) -> None:
    """An unclear confirm then a 410 on its token: OutcomeUnknownError, one preview."""
    api.limits()
    [token] = api.preview()
    api.fail("confirm", "502")
    api.fail("confirm", "410")
    with pytest.raises(OutcomeUnknownError) as caught:
        await make(client).provision()
    assert caught.value.preview_token == token
    assert api.count("preview") == 1
    assert api.confirmed_tokens() == [token, token]


async def test_provisioning_failed_is_raised_without_a_new_preview(
    client: LinesClient, api: MockApi
) -> None:
    """A 500 provisioning_failed is raised as it is: one preview, one confirm."""
    api.limits()
    api.preview()
    api.fail("confirm", "500pf")
    with pytest.raises(ProvisioningFailedError) as caught:
        await make(client).provision()
    assert caught.value.body is not None
    assert api.names() == ["limits", "preview", "confirm"]


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        pytest.param("401", AuthenticationError, id="401"),
        pytest.param("402", NoCardOnFileError, id="402"),
        pytest.param("403", PermissionDeniedError, id="403"),
        pytest.param("429d", DailyLimitReachedError, id="429-daily"),
        pytest.param("429m", MonthlyLimitReachedError, id="429-monthly"),
    ],
)
@pytest.mark.parametrize("step", ["preview", "confirm"])
async def test_refusals_are_raised_as_typed_errors(
    client: LinesClient, api: MockApi, failure: str, error: type[APIError], step: str
) -> None:
    """A refusal at preview or confirm is raised typed, with no further request."""
    api.limits()
    if step == "confirm":
        api.preview()
    api.fail(step, failure)
    with pytest.raises(error):
        await make(client).provision()
    assert api.names()[-1] == step
    assert api.count(step) == 1


async def test_a_malformed_preview_is_raised(client: LinesClient, api: MockApi) -> None:
    """A preview answer that is not a Preview raises MalformedResponseError."""
    from sendblue_lines import MalformedResponseError

    api.limits()
    api.raw("preview", 200, {"status": "OK"})
    with pytest.raises(MalformedResponseError):
        await make(client).provision()
    assert api.count("confirm") == 0


async def test_no_exception_outside_the_tree_escapes(
    client: LinesClient, mocked: AioResponses
) -> None:
    """An unmatched (failed) request surfaces as a TransportError, not aiohttp's."""
    with pytest.raises(TransportError):
        await make(client).provision()


# -- guardrails: approve and max_lines ---------------------------------------------


async def test_approve_true_buys(client: LinesClient, api: MockApi) -> None:
    """Approve sees the Preview before its confirm and True lets it through."""
    api.limits()
    [token] = api.preview()
    api.confirm()
    seen: list[Preview] = []

    def approve(preview: Preview) -> bool:
        seen.append(preview)
        assert api.count("confirm") == 0
        return True

    await make(client, approve=approve).provision()
    assert [p.token for p in seen] == [token]


async def test_an_async_approve_is_awaited(client: LinesClient, api: MockApi) -> None:
    """An async approve callback decides too."""
    api.limits()
    api.buys()

    async def approve(preview: Preview) -> bool:
        return True

    await make(client, approve=approve).provision()
    assert api.count("confirm") == 1


@pytest.mark.parametrize("answer", [False, None, 1, "yes"])
async def test_anything_but_true_declines(
    client: LinesClient, api: MockApi, answer: object
) -> None:
    """Only True approves; any other answer declines and nothing is confirmed."""
    api.limits()
    [token] = api.preview()
    seen: list[ProvisionOutcome] = []
    with pytest.raises(DeclinedError) as caught:
        await make(
            client, approve=lambda preview: answer, on_outcome=seen.append
        ).provision()
    assert caught.value.preview_token == token
    assert api.count("confirm") == 0
    assert isinstance(seen[0].error, DeclinedError)


async def test_an_approve_that_raises_declines(
    client: LinesClient, api: MockApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Approve raising declines the slot, with the exception as the cause."""
    api.limits()
    api.preview()

    def approve(preview: Preview) -> bool:
        raise ValueError("policy service down")

    with pytest.raises(DeclinedError) as caught:
        await make(client, approve=approve).provision()
    assert isinstance(caught.value.__cause__, ValueError)
    assert api.count("confirm") == 0
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_a_token_that_expired_during_approval_is_not_sent(
    client: LinesClient, api: MockApi
) -> None:
    """The expiry check follows approve: a slow approval previews (and asks) again."""
    api.limits()
    api.preview(expires_in=5.5)
    [fresh] = api.preview()
    api.confirm()
    asked: list[str] = []

    async def slow_approve(preview: Preview) -> bool:
        asked.append(preview.token)
        if len(asked) == 1:
            assert not preview.expired(margin=5.0)
            await asyncio.sleep(0.6)
        return True

    await make(client, approve=slow_approve, expiry_margin=5.0).provision()
    assert api.confirmed_tokens() == [fresh]
    assert len(asked) == 2


async def test_max_lines_caps_purchases_without_a_request(
    client: LinesClient, api: MockApi
) -> None:
    """Once max_lines purchases are made, provision() raises before any request."""
    api.limits()
    api.buys()
    provisioner = make(client, max_lines=1)
    await provisioner.provision()
    assert provisioner.lines_left == 0
    with pytest.raises(MaxLinesReachedError) as caught:
        await provisioner.provision()
    assert caught.value.max_lines == 1
    assert api.count("limits") == 1


async def test_max_lines_zero_buys_nothing(client: LinesClient, api: MockApi) -> None:
    """max_lines=0 refuses at once."""
    with pytest.raises(MaxLinesReachedError):
        await make(client, max_lines=0).provision()
    assert api.calls == []


async def test_a_purchase_that_bought_nothing_gives_its_unit_back(
    client: LinesClient, api: MockApi
) -> None:
    """A confirm refused with nothing bought does not use up max_lines."""
    api.limits(repeat=True)
    api.preview()
    api.fail("confirm", "403")
    api.buys()
    provisioner = make(client, max_lines=1)
    with pytest.raises(PermissionDeniedError):
        await provisioner.provision()
    assert provisioner.lines_left == 1
    await provisioner.provision()
    assert provisioner.lines_left == 0


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param("500pf", id="provisioning-failed"),
        pytest.param("502", id="unknown"),
    ],
)
async def test_money_moved_uses_up_max_lines(
    client: LinesClient, api: MockApi, failure: str
) -> None:
    """ProvisioningFailed and OutcomeUnknown count against max_lines like a line."""
    api.limits()
    api.preview()
    api.fail("confirm", failure, times=3)
    provisioner = make(client, max_lines=1)
    with pytest.raises((ProvisioningFailedError, OutcomeUnknownError)):
        await provisioner.provision()
    assert provisioner.lines_left == 0


# -- plan ---------------------------------------------------------------------------


async def test_plan_reads_only_the_limits(client: LinesClient, api: MockApi) -> None:
    """plan() sends no preview and no confirm, and says what binds."""
    api.limits(canonical(2, 6, next_daily="2026-05-18T14:30:00.000Z"))
    plan = await make(client).plan(5)
    assert plan == Plan(
        requested=5,
        allowed=2,
        binding="daily",
        next_available_at=datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc),
        limits=plan.limits,
    )
    assert api.names() == ["limits"]


@pytest.mark.parametrize(
    ("body", "count", "allowed", "binding"),
    [
        pytest.param(canonical(3, 10), 2, 2, None, id="fits"),
        pytest.param(canonical(3, 1), 2, 1, "monthly", id="monthly-tighter"),
        pytest.param(canonical(2, 2), 5, 2, "monthly", id="tie-monthly"),
        pytest.param(canonical(0, 4), 1, 0, "daily", id="daily-full"),
        pytest.param({"status": "OK"}, 7, 7, None, id="unknown"),
        pytest.param(
            {"status": "OK", "limits": {"api_provision_daily": 3}},
            5,
            3,
            "daily",
            id="limit-only",
        ),
        pytest.param(
            {
                "status": "OK",
                "limits": {"api_provision_daily": 3, "api_provision_monthly": 10},
                "usage": {"api_provision_daily": 1, "api_provision_monthly": 9},
            },
            5,
            1,
            "monthly",
            id="flat-with-usage",
        ),
    ],
)
async def test_plan_takes_the_tighter_window(
    client: LinesClient,
    api: MockApi,
    body: dict[str, Any],
    count: int,
    allowed: int,
    binding: str | None,
) -> None:
    """plan() allows the smaller remaining (or limit) and names the binding window."""
    api.limits(body)
    plan = await make(client).plan(count)
    assert (plan.allowed, plan.binding) == (allowed, binding)
    assert plan.blocked is (allowed == 0)


async def test_plan_when_both_windows_are_full_waits_for_the_later(
    client: LinesClient, api: MockApi
) -> None:
    """With both windows full, the next slot opens when the later one frees up."""
    api.limits(
        canonical(
            0,
            0,
            next_daily="2026-05-18T10:00:00.000Z",
            next_monthly="2026-05-20T10:00:00.000Z",
        )
    )
    plan = await make(client).plan(3)
    assert plan.allowed == 0
    assert plan.next_available_at == datetime(2026, 5, 20, 10, tzinfo=timezone.utc)


async def test_plan_counts_max_lines(client: LinesClient, api: MockApi) -> None:
    """A lifetime cap tighter than the limits binds as "max_lines"."""
    api.limits(canonical(3, 10))
    plan = await make(client, max_lines=1).plan(3)
    assert (plan.allowed, plan.binding, plan.next_available_at) == (
        1,
        "max_lines",
        None,
    )


async def test_plan_treats_an_unreadable_answer_as_unknown(
    client: LinesClient, api: MockApi
) -> None:
    """An unusable limits answer plans all of count, with limits unknown."""
    api.fail("limits", "404")
    plan = await make(client).plan(4)
    assert plan.allowed == 4
    assert not plan.limits.known


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_lines": -1}, id="negative-max-lines"),
        pytest.param({"max_lines": True}, id="bool-max-lines"),
        pytest.param({"max_repreviews": -1}, id="negative-repreviews"),
        pytest.param({"max_repreviews": 11}, id="too-many-repreviews"),
        pytest.param({"no_lines_retry": 3}, id="int-retry"),
        pytest.param({"expiry_margin": -1.0}, id="negative-margin"),
        pytest.param({"expiry_margin": 600}, id="margin-as-long-as-a-token"),
        pytest.param({"on_outcome": "print"}, id="on-outcome-not-callable"),
        pytest.param({"approve": 1}, id="approve-not-callable"),
    ],
)
async def test_bad_options_are_refused_by_the_constructor(
    client: LinesClient, options: dict[str, Any]
) -> None:
    """Every option is checked before any await."""
    with pytest.raises(ConfigurationError):
        Provisioner(client, **options)


def test_a_client_is_required() -> None:
    """Only a LinesClient will do."""
    with pytest.raises(ConfigurationError):
        Provisioner(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [-1, 1.5, True])
async def test_plan_refuses_a_bad_count(
    client: LinesClient, api: MockApi, count: Any
) -> None:
    """plan() checks its count before any request."""
    with pytest.raises(ConfigurationError):
        await make(client).plan(count)
    assert api.calls == []


async def test_the_secret_never_reaches_the_logs(
    client: LinesClient, api: MockApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing the Provisioner logs, on success or failure, holds the secret."""
    api.limits()
    api.buys()
    api.limits()
    api.preview()
    api.fail("confirm", "502", times=3)
    provisioner = make(client)
    with caplog.at_level(logging.DEBUG, logger="sendblue_lines"):
        await provisioner.provision()
        with pytest.raises(OutcomeUnknownError) as caught:
            await provisioner.provision()
    assert caplog.records
    assert SECRET not in caplog.text
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(provisioner)
