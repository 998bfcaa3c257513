"""The limits come first: a full window stops a purchase before any preview."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from provisioner_support import Make, check_ledger, requests
from scripted_api import ScriptedApi, canonical

from sendblue_lines import (
    APIError,
    AuthenticationError,
    DailyLimitReachedError,
    LinesClient,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    PermissionDeniedError,
    ProvisionedLine,
    Provisioner,
    ProvisioningLimits,
    ProvisionOutcome,
    RateLimitError,
    ServerError,
)
from sendblue_lines.sandbox import Sandbox


async def test_provision_reads_limits_then_previews_then_confirms(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """One line costs limits, preview, confirm, in that order, with the token."""
    api.limits()
    [token] = api.preview()
    api.confirm()
    line = await make().provision()
    assert line == ProvisionedLine(
        phone_number="+14155550001", worker_id="worker_1", subscription_id="sub_1"
    )
    assert api.names() == ["limits", "preview", "confirm"]
    assert api.confirmed_tokens() == [token]


@pytest.mark.parametrize(
    ("daily", "monthly", "error"),
    [
        pytest.param(0, 5, DailyLimitReachedError, id="daily-full"),
        pytest.param(2, 0, MonthlyLimitReachedError, id="monthly-full"),
        pytest.param(0, 0, MonthlyLimitReachedError, id="both-full-monthly-wins"),
    ],
)
async def test_a_full_window_stops_before_any_preview(
    make: Make,
    client: LinesClient,
    api: ScriptedApi,
    daily: int,
    monthly: int,
    error: type[RateLimitError],
) -> None:
    """A window known to be full raises its limit error and sends no preview."""
    api.limits(canonical(daily, monthly))
    with pytest.raises(error) as caught:
        await make().provision()
    assert type(caught.value) is error
    assert caught.value.status == 429
    assert isinstance(caught.value.limits, ProvisioningLimits)
    assert api.names() == ["limits"]


async def test_the_limit_error_carries_next_available_at(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """The pre-check's error says when the full window frees its next slot."""
    api.limits(canonical(0, 5, next_daily="2026-05-18T14:30:00.000Z"))
    with pytest.raises(DailyLimitReachedError) as caught:
        await make().provision()
    assert caught.value.next_available_at == datetime(
        2026, 5, 18, 14, 30, tzinfo=timezone.utc
    )
    assert caught.value.code == "daily_limit_reached"
    assert caught.value.limits.daily.remaining == 0


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
    make: Make, client: LinesClient, api: ScriptedApi, body: dict[str, Any]
) -> None:
    """Limits we cannot read as full never keep provision() from previewing."""
    api.limits(body)
    api.buys()
    await make().provision()
    assert api.names() == ["limits", "preview", "confirm"]


async def test_unusable_limits_answers_are_logged_once_and_ignored(
    make: Make,
    client: LinesClient,
    api: ScriptedApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unreadable limits body and a 404 count as unknown; the WARNING comes once."""
    api.text("limits", 200, "<html>nope</html>")
    api.buys()
    api.fail("limits", "404")
    api.buys()
    provisioner = make()
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
    make: Make,
    client: LinesClient,
    api: ScriptedApi,
    failure: str,
    error: type[APIError],
) -> None:
    """A limits read refused for the account raises at once, without a preview."""
    api.fail("limits", failure)
    with pytest.raises(error):
        await make().provision()
    assert api.names() == ["limits"]


async def test_a_limits_read_that_keeps_failing_raises(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A 5xx on every try of the limits read raises ServerError, no preview."""
    api.fail("limits", "502", times=3)
    with pytest.raises(ServerError):
        await make().provision()
    assert api.names() == ["limits"] * 3


# -- against the sandbox, through real sockets ------------------------------------


async def test_provision_buys_one_line(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """One provision(): one charge, with the number that was returned."""
    seen: list[ProvisionOutcome] = []
    line = await Provisioner(sandbox_client, on_outcome=seen.append).provision()
    [charge] = sendblue_sandbox.ledger
    assert (charge.phone_number, charge.subscription_id) == (
        line.phone_number,
        line.subscription_id,
    )
    endpoints = ("limits", "preview", "confirm")
    assert [requests(sendblue_sandbox, e) for e in endpoints] == [1, 1, 1]
    check_ledger(sendblue_sandbox, seen)


async def test_a_batch_stops_at_the_daily_limit(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """provision_many(5) with the default daily limit of 3 buys 3 and plans no more."""
    result = await Provisioner(sandbox_client).provision_many(5, concurrency=5)
    assert len(result.lines) == 3
    assert result.not_attempted == 2
    assert isinstance(result.stopped_by, DailyLimitReachedError)
    assert requests(sendblue_sandbox, "limits") == 1
    assert requests(sendblue_sandbox, "confirm") == 3
    check_ledger(sendblue_sandbox, result.outcomes)


async def test_a_full_day_stops_before_preview_until_the_window_rolls(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """A used-up day refuses without a preview; a day later provision() buys."""
    provisioner = Provisioner(sandbox_client)
    await provisioner.provision_many(3)
    previews = requests(sendblue_sandbox, "preview")
    with pytest.raises(DailyLimitReachedError) as caught:
        await provisioner.provision()
    assert requests(sendblue_sandbox, "preview") == previews
    assert caught.value.next_available_at is not None
    sendblue_sandbox.clock.advance(hours=25)
    await provisioner.provision()
    assert len(sendblue_sandbox.ledger) == 4


async def test_the_monthly_window_binds_across_days(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """Ten lines over four days fill the month; the plan then allows nothing."""
    provisioner = Provisioner(sandbox_client)
    for _ in range(4):
        await provisioner.provision_many(3)
        sendblue_sandbox.clock.advance(hours=25)
    assert len(sendblue_sandbox.ledger) == 10
    plan = await provisioner.plan(2)
    assert (plan.allowed, plan.binding) == (0, "monthly")
    with pytest.raises(MonthlyLimitReachedError):
        await provisioner.provision()
