"""Preview and confirm: every row of the contract, spoken in raw HTTP."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from sendblue_lines.sandbox import ManualClock, Sandbox, SandboxAccount

PREVIEW_PATH = "/accounts/lines/provision-preview"
CONFIRM_PATH = "/accounts/lines/provision-confirm"
LIMITS_PATH = "/accounts/limits"
E164 = re.compile(r"^\+[1-9]\d{7,14}$")


async def test_preview_answers_the_spec_body(api, sandbox, clock):
    """A preview answers OK, an lpv_ token, its expiry in ten minutes, the message."""
    status, body = await api.preview()
    assert status == 200
    assert set(body) == {"status", "preview_token", "expires_at", "message"}
    assert body["status"] == "OK"
    assert re.fullmatch(r"lpv_[A-Za-z0-9_-]{32}", body["preview_token"])
    assert body["expires_at"] == "2026-05-18T14:30:00.000Z"
    assert body["message"] == (
        "Call the confirm endpoint with this token within 10 minutes "
        "to complete the purchase."
    )
    assert sandbox.token_status(body["preview_token"]) == "unused"
    assert sandbox.ledger == []


async def test_expires_at_keeps_milliseconds(api, clock):
    """expires_at is UTC with exactly three fractional digits and a Z."""
    clock.set(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc))
    _, body = await api.preview()
    assert body["expires_at"] == "2026-01-02T03:14:05.678Z"


async def test_tokens_are_unique(api):
    """Every preview issues a different token."""
    tokens = {await api.token() for _ in range(20)}
    assert len(tokens) == 20


async def test_confirm_buys_a_line_and_records_the_charge(api, sandbox, clock):
    """A confirm answers the spec's body and puts the same purchase in the ledger."""
    token = await api.token()
    status, body = await api.confirm(token)
    assert status == 200
    assert set(body) == {"status", "phone_number", "worker_id", "subscription_id"}
    assert body["status"] == "OK"
    assert E164.match(body["phone_number"])
    assert body["worker_id"].startswith("worker_")
    assert body["subscription_id"].startswith("sub_")
    [charge] = sandbox.ledger
    assert charge.preview_token == token
    assert charge.api_key_id == sandbox.api_key_id
    assert charge.charged_at == clock.now()
    assert charge.outcome == "provisioned"
    assert charge.provisioned
    assert (charge.phone_number, charge.worker_id, charge.subscription_id) == (
        body["phone_number"],
        body["worker_id"],
        body["subscription_id"],
    )
    assert sandbox.purchases() == [charge]
    assert sandbox.token_status(token) == "used"


async def test_phone_numbers_are_unique_across_accounts(api, sandbox):
    """Lines bought by several accounts never share a number."""
    other = sandbox.add_account(SandboxAccount("second", "second-secret"))
    numbers = []
    for account in (None, other, None, other, None, other):
        status, body = await api.buy(account)
        assert status == 200
        numbers.append(body["phone_number"])
    assert len(set(numbers)) == 6
    assert all(E164.match(number) for number in numbers)


async def test_a_used_token_answers_410(api, sandbox):
    """The second confirm of a token answers 410 token_expired and buys nothing."""
    token = await api.token()
    assert (await api.confirm(token))[0] == 200
    status, body = await api.confirm(token)
    assert status == 410
    assert body["status"] == "ERROR"
    assert body["error"] == "token_expired"
    assert len(sandbox.ledger) == 1


async def test_an_unknown_token_answers_410(api, sandbox):
    """A token the sandbox never issued answers 410 token_expired."""
    status, body = await api.confirm("lpv_never-issued")
    assert (status, body["error"]) == (410, "token_expired")
    assert sandbox.ledger == []


async def test_token_is_valid_until_just_before_ten_minutes(api, sandbox, clock):
    """At 9:59.999 after the preview the token still buys a line."""
    token = await api.token()
    clock.advance(minutes=9, seconds=59, milliseconds=999)
    status, _ = await api.confirm(token)
    assert status == 200


async def test_token_expires_at_exactly_ten_minutes(api, sandbox, clock):
    """At exactly ten minutes after the preview the token answers 410."""
    token = await api.token()
    clock.advance(minutes=10)
    assert sandbox.token_status(token) == "expired"
    status, body = await api.confirm(token)
    assert (status, body["error"]) == (410, "token_expired")
    assert sandbox.ledger == []


async def test_token_of_another_account_is_403_and_not_consumed(api, sandbox):
    """Another account's confirm of a token is 403; its owner can still use it."""
    other = sandbox.add_account(SandboxAccount("other", "other-secret"))
    token = await api.token()
    status, body = await api.confirm(token, other)
    assert status == 403
    assert body["status"] == "ERROR"
    assert "error" not in body
    assert sandbox.token_status(token) == "unused"
    assert (await api.confirm(token))[0] == 200


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        pytest.param(b"{}", {"Content-Type": "application/json"}, id="empty-object"),
        pytest.param(
            b'{"preview_token": 12}',
            {"Content-Type": "application/json"},
            id="token-not-a-string",
        ),
        pytest.param(
            b'{"preview_token": ""}',
            {"Content-Type": "application/json"},
            id="empty-token",
        ),
        pytest.param(b"", {"Content-Type": "application/json"}, id="no-body"),
        pytest.param(
            b"preview_token=lpv_x", {"Content-Type": "application/json"}, id="not-json"
        ),
        pytest.param(b"[1, 2]", {"Content-Type": "application/json"}, id="json-array"),
        pytest.param(b"\xff\xfe{", {"Content-Type": "application/json"}, id="not-utf8"),
        pytest.param(
            b"[" * 100_000 + b"]" * 100_000,
            {"Content-Type": "application/json"},
            id="deeply-nested",
        ),
        pytest.param(
            b'{"preview_token": "lpv_x"}',
            {"Content-Type": "text/plain"},
            id="not-labelled-json",
        ),
    ],
)
async def test_confirm_without_a_readable_token_is_400(
    api, sandbox, session, data, headers
):
    """A confirm without a string preview_token answers 400, no error code."""
    status, body = await api.call(
        "POST", CONFIRM_PATH, headers={**sandbox.auth_headers(), **headers}, data=data
    )
    assert status == 400
    assert body["status"] == "ERROR"
    assert "error" not in body
    assert body["message"]


async def test_a_400_does_not_consume_the_token(api, sandbox):
    """A confirm refused for its body leaves every token as it was."""
    token = await api.token()
    status, _ = await api.call("POST", CONFIRM_PATH, json={"token": token})
    assert status == 400
    assert sandbox.token_status(token) == "unused"


async def test_plan_other_than_inbound_only_is_403(api, sandbox):
    """An account on another plan gets 403 at preview and at confirm."""
    token = await api.token()
    sandbox.account.plan = "standard"
    status, body = await api.preview()
    assert status == 403
    assert "error" not in body
    status, body = await api.confirm(token)
    assert status == 403
    assert sandbox.ledger == []


async def test_no_card_on_file_is_402(api, sandbox):
    """Without a card, preview and confirm answer 402 no_card_on_file."""
    token = await api.token()
    sandbox.account.card_on_file = False
    for status, body in (await api.preview(), await api.confirm(token)):
        assert status == 402
        assert body == {
            "status": "ERROR",
            "error": "no_card_on_file",
            "message": body["message"],
        }
    assert sandbox.ledger == []


async def test_a_confirm_refused_after_the_token_checks_spends_the_token(api, sandbox):
    """A confirm that reaches a live token spends it even when it is refused (402)."""
    token = await api.token()
    sandbox.account.card_on_file = False
    assert (await api.confirm(token))[0] == 402
    sandbox.account.card_on_file = True
    status, body = await api.confirm(token)
    assert (status, body["error"]) == (410, "token_expired")
    assert sandbox.ledger == []


async def test_plan_is_checked_before_card(api, sandbox):
    """An account on the wrong plan and without a card gets the plan's 403 first."""
    sandbox.account.plan = "standard"
    sandbox.account.card_on_file = False
    assert (await api.preview())[0] == 403


async def test_finite_inventory_runs_out_at_preview(api, sandbox):
    """With one line in stock, the second preview after a purchase answers 503."""
    sandbox.set_inventory(1)
    assert (await api.buy())[0] == 200
    assert sandbox.inventory == 0
    status, body = await api.preview()
    assert (status, body["error"]) == (503, "no_lines_available")


async def test_inventory_can_run_out_between_preview_and_confirm(api, sandbox):
    """Two previews for the last line: the first confirm wins, the second gets 503."""
    sandbox.set_inventory(1)
    first, second = await api.token(), await api.token()
    assert (await api.confirm(first))[0] == 200
    status, body = await api.confirm(second)
    assert (status, body["error"]) == (503, "no_lines_available")
    assert len(sandbox.ledger) == 1
    sandbox.set_inventory(None)
    assert (await api.buy())[0] == 200


async def test_negative_inventory_is_refused(sandbox):
    """set_inventory refuses a negative count."""
    with pytest.raises(ValueError, match="negative"):
        sandbox.set_inventory(-1)


async def test_accounts_are_independent(api, sandbox):
    """Each account has its own limits and its own purchases."""
    other = sandbox.add_account(SandboxAccount("other", "other-secret", daily_limit=1))
    assert (await api.buy(other))[0] == 200
    assert (await api.preview(other))[0] == 429
    assert (await api.buy())[0] == 200
    assert [c.api_key_id for c in sandbox.purchases(other)] == ["other"]
    assert [c.api_key_id for c in sandbox.purchases("sandbox-key-id")] == [
        "sandbox-key-id"
    ]


async def test_duplicate_account_key_id_is_refused(sandbox):
    """Adding a second account with an existing key id raises ValueError."""
    with pytest.raises(ValueError, match="already exists"):
        sandbox.add_account(SandboxAccount(sandbox.api_key_id, "x"))


async def test_account_credentials_cannot_change(sandbox):
    """An account's key id and secret are fixed; its plan and card are not."""
    import attrs

    with pytest.raises(attrs.exceptions.FrozenAttributeError):
        sandbox.account.api_secret_key = "other"  # type: ignore[misc]
    sandbox.account.daily_limit = 7
    assert sandbox.limits().daily.limit == 7


async def test_sandbox_with_explicit_accounts_uses_the_first_as_default():
    """With accounts given, the first is the default and no other is made."""
    first = SandboxAccount("first", "first-secret")
    second = SandboxAccount("second", "second-secret", plan="standard")
    async with (
        Sandbox(accounts=[first, second], clock=ManualClock()) as sandbox,
        aiohttp.ClientSession() as session,
    ):
        assert sandbox.accounts == (first, second)
        assert (sandbox.api_key_id, sandbox.api_secret_key) == (
            "first",
            "first-secret",
        )
        async with session.post(
            sandbox.url + PREVIEW_PATH, headers=sandbox.auth_headers(second)
        ) as response:
            assert response.status == 403


def test_a_sandbox_needs_an_account():
    """An empty account list is refused."""
    with pytest.raises(ValueError, match="at least one account"):
        Sandbox(accounts=[])


async def test_token_lifetime_is_measured_from_preview_time(api, sandbox, clock):
    """A token issued later expires later: the window is per token."""
    early = await api.token()
    clock.advance(minutes=5)
    late = await api.token()
    clock.advance(minutes=5)
    assert sandbox.token_status(early) == "expired"
    assert sandbox.token_status(late) == "unused"
    assert (await api.confirm(late))[0] == 200
    assert clock.now() - sandbox.ledger[0].charged_at == timedelta(0)
