"""The Provisioner against the sandbox, through real sockets on 127.0.0.1.

Every test checks the sandbox's ledger: each charge appears once among the
lines, `ProvisioningFailedError`s and `OutcomeUnknownError`s the SDK reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sendblue_lines import (
    DailyLimitReachedError,
    LinesClient,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    Preview,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    RetryPolicy,
    TokenExpiredError,
)
from sendblue_lines.sandbox import Fault, Sandbox

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


@pytest.fixture
async def client(sendblue_sandbox: Sandbox[Any]) -> AsyncIterator[LinesClient]:
    """A LinesClient on the sandbox, with short timeouts and no waiting retries."""
    async with connect(sendblue_sandbox) as c:
        yield c


def connect(sandbox: Sandbox[Any], **options: Any) -> LinesClient:
    options.setdefault("timeout", 0.5)
    options.setdefault("retry", FAST)
    return LinesClient(
        sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url, **options
    )


def count(sandbox: Sandbox[Any], endpoint: str) -> int:
    return sandbox.counters[endpoint].requests


def check_ledger(sandbox: Sandbox[Any], outcomes: list[ProvisionOutcome]) -> None:
    """Every charge in the ledger is reported exactly once, and nothing else is."""
    reported: list[str] = []
    by_number = {c.phone_number: c.preview_token for c in sandbox.ledger}
    for outcome in outcomes:
        if outcome.line is not None:
            reported.append(by_number[outcome.line.phone_number])
        elif isinstance(outcome.error, OutcomeUnknownError):
            reported.append(outcome.error.preview_token)
    failed = [c for c in sandbox.ledger if not c.provisioned]
    pf = [o for o in outcomes if isinstance(o.error, ProvisioningFailedError)]
    assert len(pf) == len(failed)
    assert sorted(reported) == sorted(
        c.preview_token for c in sandbox.ledger if c.provisioned
    )


async def test_provision_buys_one_line(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """One provision(): one charge, with the number that was returned."""
    seen: list[ProvisionOutcome] = []
    line = await Provisioner(client, on_outcome=seen.append).provision()
    [charge] = sendblue_sandbox.ledger
    assert (charge.phone_number, charge.subscription_id) == (
        line.phone_number,
        line.subscription_id,
    )
    assert [count(sendblue_sandbox, e) for e in ("limits", "preview", "confirm")] == [
        1,
        1,
        1,
    ]
    check_ledger(sendblue_sandbox, seen)


async def test_a_batch_stops_at_the_daily_limit(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """provision_many(5) with the default daily limit of 3 buys 3 and plans no more."""
    result = await Provisioner(client).provision_many(5, concurrency=5)
    assert len(result.lines) == 3
    assert result.not_attempted == 2
    assert isinstance(result.stopped_by, DailyLimitReachedError)
    assert count(sendblue_sandbox, "limits") == 1
    assert count(sendblue_sandbox, "confirm") == 3
    check_ledger(sendblue_sandbox, result.outcomes)


async def test_a_full_day_stops_before_preview_until_the_window_rolls(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """A used-up day refuses without a preview; a day later provision() buys."""
    provisioner = Provisioner(client)
    await provisioner.provision_many(3)
    previews = count(sendblue_sandbox, "preview")
    with pytest.raises(DailyLimitReachedError) as caught:
        await provisioner.provision()
    assert count(sendblue_sandbox, "preview") == previews
    assert caught.value.next_available_at is not None
    sendblue_sandbox.clock.advance(hours=25)
    await provisioner.provision()
    assert len(sendblue_sandbox.ledger) == 4


async def test_the_monthly_window_binds_across_days(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """Ten lines over four days fill the month; the plan then allows nothing."""
    provisioner = Provisioner(client)
    for _ in range(4):
        await provisioner.provision_many(3)
        sendblue_sandbox.clock.advance(hours=25)
    assert len(sendblue_sandbox.ledger) == 10
    plan = await provisioner.plan(2)
    assert (plan.allowed, plan.binding) == (0, "monthly")
    with pytest.raises(MonthlyLimitReachedError):
        await provisioner.provision()


async def test_plan_matches_the_sandbox(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """plan() reads the sandbox's windows: 3 a day, one less after a purchase."""
    provisioner = Provisioner(client)
    assert (await provisioner.plan(5)).allowed == 3
    await provisioner.provision()
    plan = await provisioner.plan(5)
    assert (plan.allowed, plan.binding) == (2, "daily")
    assert count(sendblue_sandbox, "preview") == 1


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.drop_after_commit(), id="drop-after-commit"),
        pytest.param(Fault.hang(after_commit=True), id="hang-after-commit"),
        pytest.param(Fault.proxy_502(after_commit=True), id="502-after-commit"),
    ],
)
async def test_an_unclear_confirm_that_charged_is_outcome_unknown(
    client: LinesClient, sendblue_sandbox: Sandbox[Any], fault: Fault
) -> None:
    """Charged but the answer lost: OutcomeUnknown, and never a new preview."""
    sendblue_sandbox.inject("confirm", fault)
    seen: list[ProvisionOutcome] = []
    with pytest.raises(OutcomeUnknownError) as caught:
        await Provisioner(client, on_outcome=seen.append).provision()
    [charge] = sendblue_sandbox.ledger
    assert charge.preview_token == caught.value.preview_token
    assert count(sendblue_sandbox, "preview") == 1
    check_ledger(sendblue_sandbox, seen)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.drop_before(), id="drop-before"),
        pytest.param(Fault.hang(), id="hang-before"),
        pytest.param(Fault.proxy_502(), id="502-before"),
    ],
)
async def test_an_unclear_confirm_that_did_not_charge_is_resent(
    client: LinesClient, sendblue_sandbox: Sandbox[Any], fault: Fault
) -> None:
    """A lost confirm that never arrived is resent with the same token: one line."""
    sendblue_sandbox.inject("confirm", fault)
    seen: list[ProvisionOutcome] = []
    await Provisioner(client, on_outcome=seen.append).provision()
    assert len(sendblue_sandbox.ledger) == 1
    assert count(sendblue_sandbox, "preview") == 1
    check_ledger(sendblue_sandbox, seen)


async def test_provisioning_failed_is_reported_once(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """A provisioning_failed charge is raised as it is, with no second purchase."""
    sendblue_sandbox.inject("confirm", Fault.provisioning_failed())
    seen: list[ProvisionOutcome] = []
    with pytest.raises(ProvisioningFailedError):
        await Provisioner(client, on_outcome=seen.append).provision()
    [charge] = sendblue_sandbox.ledger
    assert charge.outcome == "provisioning_failed"
    assert count(sendblue_sandbox, "preview") == 1
    check_ledger(sendblue_sandbox, seen)


async def test_a_token_expired_on_the_server_is_previewed_again(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """The sandbox clock outruns ours during approval: a 410, then a new token buys."""
    asked: list[str] = []

    def approve(preview: Preview) -> bool:
        asked.append(preview.token)
        if len(asked) == 1:
            sendblue_sandbox.clock.advance(minutes=11)
        return True

    await Provisioner(client, approve=approve).provision()
    assert len(asked) == 2
    [charge] = sendblue_sandbox.ledger
    assert charge.preview_token == asked[1]
    assert sendblue_sandbox.counters["confirm"].statuses[410] == 1


async def test_tokens_that_keep_expiring_end_in_token_expired(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """Every token expiring before its confirm: TokenExpiredError, nothing charged."""

    def approve(preview: Preview) -> bool:
        sendblue_sandbox.clock.advance(minutes=11)
        return True

    with pytest.raises(TokenExpiredError):
        await Provisioner(client, approve=approve, max_repreviews=2).provision()
    assert sendblue_sandbox.ledger == []
    assert count(sendblue_sandbox, "preview") == 3


async def test_no_card_stops_a_batch_at_its_first_slot(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """402 is account-level: one slot fails, the others are not attempted."""
    sendblue_sandbox.account.card_on_file = False
    result = await Provisioner(client).provision_many(3, concurrency=1)
    assert isinstance(result.stopped_by, NoCardOnFileError)
    assert (len(result.errors), result.not_attempted) == (1, 2)
    assert sendblue_sandbox.ledger == []


async def test_another_plan_is_refused(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """An account off the inbound_only plan gets PermissionDeniedError."""
    sendblue_sandbox.account.plan = "standard"
    with pytest.raises(PermissionDeniedError):
        await Provisioner(client).provision()


async def test_an_empty_inventory_stops_the_batch_after_retries(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """One line in stock: one bought, then no_lines_available stops the batch."""
    sendblue_sandbox.set_inventory(1)
    result = await Provisioner(client, no_lines_retry=FAST).provision_many(
        3, concurrency=1
    )
    assert len(result.lines) == 1
    assert isinstance(result.stopped_by, NoLinesAvailableError)
    assert result.not_attempted == 1
    assert count(sendblue_sandbox, "preview") == 1 + 3


async def test_the_flat_limits_shape_is_understood(
    sendblue_sandbox_factory: Callable[..., Awaitable[Sandbox[Any]]],
) -> None:
    """Against a sandbox answering the flat shape, the plan is the same."""
    sandbox = await sendblue_sandbox_factory(limits_shape="flat")
    async with connect(sandbox) as client:
        provisioner = Provisioner(client)
        await provisioner.provision()
        plan = await provisioner.plan(5)
    assert (plan.allowed, plan.binding) == (2, "daily")


async def test_a_cancelled_caller_still_gets_its_line_reported(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """wait_for expiring mid-confirm: the line is reported, then TimeoutError."""
    sendblue_sandbox.inject("confirm", Fault.delay(0.3))
    seen: list[ProvisionOutcome] = []
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(
            Provisioner(client, on_outcome=seen.append).provision(), 0.1
        )
    assert [o.ok for o in seen] == [True]
    check_ledger(sendblue_sandbox, seen)


async def test_a_big_concurrent_batch_never_overspends(
    client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """Twenty slots at concurrency 20 against a limit of 3: three confirms, no 429."""
    result = await Provisioner(client).provision_many(20, concurrency=20)
    assert len(result.lines) == 3
    assert count(sendblue_sandbox, "confirm") == 3
    assert 429 not in sendblue_sandbox.counters["confirm"].statuses
    check_ledger(sendblue_sandbox, result.outcomes)
