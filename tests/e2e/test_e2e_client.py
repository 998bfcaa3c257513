"""LinesClient against the sandbox, through real sockets on 127.0.0.1.

The two sides were written independently from the contract; these tests are
where their readings have to agree. Each one checks the client's typed answer
and the sandbox's ledger, since the ledger is what a card would be charged for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sendblue_lines import (
    AuthenticationError,
    BadRequestError,
    DailyLimitReachedError,
    LinesClient,
    MalformedResponseError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProvisioningFailedError,
    RetryPolicy,
    TokenExpiredError,
)
from sendblue_lines.sandbox import Fault, Sandbox, SandboxAccount

NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


def connect(sandbox: Sandbox[Any], **options: Any) -> LinesClient:
    options.setdefault("retry", NO_WAIT)
    return LinesClient(
        sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url, **options
    )


@pytest.fixture
async def client(sendblue_sandbox: Sandbox[Any]) -> AsyncIterator[LinesClient]:
    async with connect(sendblue_sandbox) as c:
        yield c


async def test_preview_then_confirm_buys_the_line_the_ledger_records(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A preview and its confirm buy exactly the line the sandbox recorded."""
    preview = await client.preview()
    assert preview.token.startswith("lpv_")
    assert preview.expires_at.tzinfo is not None
    line = await client.confirm(preview)
    [charge] = sendblue_sandbox.ledger
    assert charge.preview_token == preview.token
    assert (line.phone_number, line.worker_id, line.subscription_id) == (
        charge.phone_number,
        charge.worker_id,
        charge.subscription_id,
    )


@pytest.mark.parametrize("shape", ["canonical", "flat"])
async def test_limits_follow_purchases_in_both_shapes(
    sendblue_sandbox: Sandbox[Any], client: LinesClient, shape: str
) -> None:
    """After one purchase the limits read 1 used and 2 / 9 left, in either shape."""
    sendblue_sandbox.limits_shape = shape  # type: ignore[assignment]
    await client.confirm(await client.preview())
    limits = await client.get_limits()
    assert limits.daily is not None
    assert limits.monthly is not None
    assert (limits.daily.limit, limits.daily.used, limits.daily.remaining) == (3, 1, 2)
    assert (limits.monthly.limit, limits.monthly.remaining) == (10, 9)
    assert limits.remaining == 2


async def test_limits_of_an_unknown_shape_are_unknown_not_an_error(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A limits body of a shape nobody documented reads as 'unknown'."""
    sendblue_sandbox.limits_shape = lambda snapshot: {"status": "OK", "quota": [1, 2]}
    limits = await client.get_limits()
    assert not limits.known
    assert limits.remaining is None


async def test_next_available_at_is_when_the_oldest_purchase_leaves(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A full daily window says when its first purchase drops out, 24 hours on."""
    for _ in range(3):
        await client.confirm(await client.preview())
    first = sendblue_sandbox.ledger[0].charged_at
    limits = await client.get_limits()
    assert limits.daily is not None
    assert limits.daily.exhausted
    assert limits.daily.next_available_at is not None
    gap = limits.daily.next_available_at - first
    assert abs(gap.total_seconds() - 24 * 3600) < 0.01


async def test_wrong_secret_is_an_authentication_error_on_every_endpoint(
    sendblue_sandbox: Sandbox[Any],
) -> None:
    """Wrong credentials give AuthenticationError from each of the three calls."""
    async with LinesClient(
        sendblue_sandbox.api_key_id, "wrong-secret", base_url=sendblue_sandbox.url
    ) as bad:
        with pytest.raises(AuthenticationError):
            await bad.get_limits()
        with pytest.raises(AuthenticationError):
            await bad.preview()
        with pytest.raises(AuthenticationError):
            await bad.confirm("lpv_whatever")
    assert sendblue_sandbox.ledger == []


async def test_account_refusals_are_typed(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """No card is 402, another plan is 403, an empty inventory is 503."""
    account = sendblue_sandbox.account
    account.card_on_file = False
    with pytest.raises(NoCardOnFileError) as no_card:
        await client.preview()
    assert no_card.value.code == "no_card_on_file"
    account.card_on_file = True
    account.plan = "standard"
    with pytest.raises(PermissionDeniedError):
        await client.preview()
    account.plan = "inbound_only"
    sendblue_sandbox.set_inventory(0)
    with pytest.raises(NoLinesAvailableError) as empty:
        await client.preview()
    assert empty.value.code == "no_lines_available"
    assert sendblue_sandbox.ledger == []


async def test_a_used_token_is_token_expired_and_buys_nothing_more(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """Confirming a token twice buys one line; the second is a clean 410."""
    preview = await client.preview()
    await client.confirm(preview)
    with pytest.raises(TokenExpiredError) as expired:
        await client.confirm(preview)
    assert expired.value.code == "token_expired"
    assert len(sendblue_sandbox.ledger) == 1


async def test_a_token_past_ten_minutes_is_token_expired(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A token confirmed after the sandbox clock passed ten minutes is refused."""
    preview = await client.preview()
    sendblue_sandbox.clock.advance(minutes=10)
    with pytest.raises(TokenExpiredError):
        await client.confirm(preview.token)
    assert sendblue_sandbox.ledger == []


async def test_a_token_of_another_account_is_permission_denied(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """Another account cannot spend our token, and the token stays usable."""
    other = sendblue_sandbox.add_account(SandboxAccount("other-id", "other-secret"))
    preview = await client.preview()
    async with LinesClient(
        other.api_key_id, other.api_secret_key, base_url=sendblue_sandbox.url
    ) as intruder:
        with pytest.raises(PermissionDeniedError):
            await intruder.confirm(preview)
    await client.confirm(preview)
    assert [c.api_key_id for c in sendblue_sandbox.ledger] == [
        sendblue_sandbox.api_key_id
    ]


async def test_daily_then_monthly_limits_are_typed_by_their_code(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """The 4th line of a day is DailyLimitReached; the 11th of a month, Monthly."""
    for _ in range(3):
        await client.confirm(await client.preview())
    with pytest.raises(DailyLimitReachedError) as daily:
        await client.preview()
    assert "per day" in daily.value.message
    for _ in range(2):
        sendblue_sandbox.clock.advance(hours=25)
        for _ in range(3):
            await client.confirm(await client.preview())
    sendblue_sandbox.clock.advance(hours=25)
    await client.confirm(await client.preview())
    with pytest.raises(MonthlyLimitReachedError):
        await client.preview()
    assert len(sendblue_sandbox.purchases()) == 10


async def test_confirm_without_a_token_is_a_bad_request(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A missing token in the body is the server's 400, typed BadRequestError."""
    sendblue_sandbox.inject(
        "confirm", Fault.respond(400, {"status": "ERROR", "message": "missing"})
    )
    with pytest.raises(BadRequestError):
        await client.confirm("lpv_x")
    assert sendblue_sandbox.ledger == []


async def test_lost_answer_after_the_purchase_is_unknown_and_charged_once(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A drop after the charge: same token resent, 410, unknown, one charge."""
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit())
    preview = await client.preview()
    with pytest.raises(OutcomeUnknownError) as unknown:
        await client.confirm(preview)
    assert unknown.value.preview_token == preview.token
    assert unknown.value.attempts == 2
    [charge] = sendblue_sandbox.ledger
    assert charge.preview_token == preview.token
    tokens_confirmed = [r for r in sendblue_sandbox.requests if r.endpoint == "confirm"]
    assert len(tokens_confirmed) == 2
    assert sendblue_sandbox.counters["preview"].requests == 1


async def test_lost_request_before_processing_is_resent_and_buys_once(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A connection dropped before processing: the resend of the same token buys it."""
    sendblue_sandbox.inject("confirm", Fault.drop_before())
    preview = await client.preview()
    line = await client.confirm(preview)
    [charge] = sendblue_sandbox.ledger
    assert charge.phone_number == line.phone_number
    assert charge.preview_token == preview.token


@pytest.mark.parametrize(
    ("after_commit", "bought"),
    [
        pytest.param(False, True, id="before-commit"),
        pytest.param(True, False, id="after-commit"),
    ],
)
async def test_a_proxy_502_is_resolved_with_the_same_token(
    sendblue_sandbox: Sandbox[Any],
    client: LinesClient,
    after_commit: bool,
    bought: bool,
) -> None:
    """A proxy's 502 is unclear: the resend buys the line or finds it bought."""
    sendblue_sandbox.inject("confirm", Fault.proxy_502(after_commit=after_commit))
    preview = await client.preview()
    if bought:
        await client.confirm(preview)
    else:
        with pytest.raises(OutcomeUnknownError):
            await client.confirm(preview)
    assert len(sendblue_sandbox.ledger) == 1


async def test_a_hung_confirm_times_out_then_resolves_with_the_same_token(
    sendblue_sandbox: Sandbox[Any],
) -> None:
    """A confirm that hangs past the timeout is resent with its token and buys once."""
    sendblue_sandbox.inject("confirm", Fault.hang())
    async with connect(sendblue_sandbox, timeout=0.3) as client:
        line = await client.confirm(await client.preview())
    [charge] = sendblue_sandbox.ledger
    assert charge.phone_number == line.phone_number


async def test_provisioning_failed_is_raised_once_and_recorded_as_a_charge(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A provisioning failure is sent once, raised with its body, and charged once."""
    sendblue_sandbox.inject("confirm", Fault.provisioning_failed())
    with pytest.raises(ProvisioningFailedError) as failed:
        await client.confirm(await client.preview())
    assert failed.value.code == "provisioning_failed"
    assert failed.value.body is not None
    assert sendblue_sandbox.counters["confirm"].requests == 1
    [charge] = sendblue_sandbox.ledger
    assert charge.outcome == "provisioning_failed"


async def test_an_unreadable_2xx_to_confirm_is_unknown_not_malformed(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A 200 whose body is garbage after the charge is an unknown outcome."""
    sendblue_sandbox.inject("confirm", Fault.malformed(after_commit=True))
    with pytest.raises(OutcomeUnknownError) as unknown:
        await client.confirm(await client.preview())
    assert unknown.value.status == 200
    assert len(sendblue_sandbox.ledger) == 1


async def test_an_unreadable_preview_is_malformed_and_retried_never(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A preview answered with HTML is MalformedResponseError, sent once."""
    sendblue_sandbox.inject("preview", Fault.html())
    with pytest.raises(MalformedResponseError) as malformed:
        await client.preview()
    assert malformed.value.raw
    assert sendblue_sandbox.counters["preview"].requests == 1


async def test_transient_preview_failures_are_retried_to_success(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """Two dropped previews then a good one: preview succeeds on the third try."""
    sendblue_sandbox.inject("preview", Fault.drop_before(), times=2)
    preview = await client.preview()
    assert preview.token.startswith("lpv_")
    assert sendblue_sandbox.counters["preview"].requests == 3


async def test_the_secret_never_reaches_the_sandbox_request_log(
    sendblue_sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """The sandbox's own log of our requests holds no trace of the secret."""
    await client.confirm(await client.preview())
    assert sendblue_sandbox.api_secret_key not in repr(sendblue_sandbox.requests)
    assert sendblue_sandbox.api_secret_key not in repr(client)
