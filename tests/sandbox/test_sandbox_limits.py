"""Rolling daily and monthly limits, and the limits endpoint in every shape."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendblue_lines.sandbox import Fault, ManualClock, SandboxAccount
from sendblue_lines.sandbox._state import Refusal, SandboxState


def window(body, name):
    return body["limits"][f"api_provision_{name}"]


async def test_limits_start_empty_in_the_canonical_shape(api):
    """A fresh account's limits are the spec's canonical body with nothing used."""
    status, body = await api.limits()
    assert status == 200
    assert body == {
        "status": "OK",
        "limits": {
            "api_provision_daily": {
                "limit": 3,
                "used": 0,
                "remaining": 3,
                "window": "rolling_24h",
                "next_available_at": None,
            },
            "api_provision_monthly": {
                "limit": 10,
                "used": 0,
                "remaining": 10,
                "window": "rolling_30d",
                "next_available_at": None,
            },
        },
    }


async def test_limits_count_purchases_and_name_when_the_oldest_leaves(api, clock):
    """used, remaining and next_available_at follow the purchases made."""
    first_at = clock.now()
    await api.buy()
    clock.advance(hours=2)
    await api.buy()
    _, body = await api.limits()
    assert window(body, "daily") == {
        "limit": 3,
        "used": 2,
        "remaining": 1,
        "window": "rolling_24h",
        "next_available_at": "2026-05-19T14:20:00.000Z",
    }
    assert window(body, "monthly")["used"] == 2
    assert window(body, "monthly")["remaining"] == 8
    assert window(body, "monthly")["next_available_at"] == "2026-06-17T14:20:00.000Z"
    assert first_at + timedelta(days=30) == datetime(
        2026, 6, 17, 14, 20, tzinfo=timezone.utc
    )


async def test_daily_limit_is_429_with_the_spec_message(api, sandbox):
    """The fourth purchase in a day answers 429 daily_limit_reached at preview."""
    for _ in range(3):
        assert (await api.buy())[0] == 200
    status, body = await api.preview()
    assert status == 429
    assert body == {
        "status": "ERROR",
        "error": "daily_limit_reached",
        "message": "Maximum 3 lines can be added per day via API",
    }


async def test_daily_message_names_the_account_override(api, sandbox):
    """The 429 message carries the account's own daily limit."""
    sandbox.account.daily_limit = 5
    for _ in range(5):
        await api.buy()
    _, body = await api.preview()
    assert body["message"] == "Maximum 5 lines can be added per day via API"


async def test_limits_are_checked_again_at_confirm(api, sandbox):
    """Tokens previewed before the limit was reached are refused at confirm."""
    tokens = [await api.token() for _ in range(4)]
    for token in tokens[:3]:
        assert (await api.confirm(token))[0] == 200
    status, body = await api.confirm(tokens[3])
    assert (status, body["error"]) == (429, "daily_limit_reached")
    assert sandbox.token_status(tokens[3]) == "used"
    assert len(sandbox.purchases()) == 3


async def test_daily_window_rolls_at_exactly_24_hours(api, clock):
    """A purchase leaves the daily window exactly 24 hours after it was made."""
    for _ in range(3):
        await api.buy()
    clock.advance(hours=23, minutes=59, seconds=59, milliseconds=999)
    assert (await api.preview())[0] == 429
    clock.advance(milliseconds=1)
    _, body = await api.limits()
    assert window(body, "daily")["used"] == 0
    assert window(body, "daily")["next_available_at"] is None
    assert (await api.preview())[0] == 200


async def test_daily_window_frees_slots_one_by_one(api, clock):
    """Purchases spread over a day free their slots at their own times."""
    for _ in range(3):
        await api.buy()
        clock.advance(hours=8)
    # now = start + 24h: the first purchase has just left
    _, body = await api.limits()
    daily = window(body, "daily")
    assert (daily["used"], daily["remaining"]) == (2, 1)
    assert daily["next_available_at"] == "2026-05-19T22:20:00.000Z"
    assert (await api.buy())[0] == 200
    assert (await api.preview())[0] == 429


async def test_monthly_limit_is_429_and_rolls_at_30_days(api, sandbox, clock):
    """Ten purchases hit the monthly limit; the oldest frees its slot at 30 days."""
    for _ in range(10):
        for _ in range(3):
            if len(sandbox.purchases()) < 10:
                assert (await api.buy())[0] == 200
        clock.advance(days=1)
    # ten bought over days 0..3; now is day 10
    status, body = await api.preview()
    assert status == 429
    assert body == {
        "status": "ERROR",
        "error": "monthly_limit_reached",
        "message": "Maximum 10 lines can be added per month via API",
    }
    _, limits = await api.limits()
    assert window(limits, "monthly")["next_available_at"] == "2026-06-17T14:20:00.000Z"
    clock.set(datetime(2026, 6, 17, 14, 19, 59, 999000, tzinfo=timezone.utc))
    assert (await api.preview())[0] == 429
    clock.advance(milliseconds=1)
    _, limits = await api.limits()
    assert window(limits, "monthly")["used"] == 7
    assert window(limits, "monthly")["remaining"] == 3
    assert (await api.preview())[0] == 200


async def test_daily_is_reported_before_monthly(api, sandbox):
    """When both windows are full, the daily error comes first."""
    sandbox.account.monthly_limit = 2
    sandbox.account.daily_limit = 2
    await api.buy()
    await api.buy()
    _, body = await api.preview()
    assert body["error"] == "daily_limit_reached"


async def test_limits_come_before_inventory(api, sandbox):
    """A full window answers 429 even when the inventory is empty too."""
    sandbox.account.daily_limit = 0
    sandbox.set_inventory(0)
    assert (await api.preview())[0] == 429


async def test_remaining_never_goes_negative(api, sandbox):
    """Lowering a limit below what was used reports 0 remaining, not less."""
    await api.buy()
    await api.buy()
    sandbox.account.daily_limit = 1
    _, body = await api.limits()
    assert window(body, "daily")["remaining"] == 0
    assert window(body, "daily")["used"] == 2


async def test_failed_provisioning_does_not_count_against_limits(api, sandbox):
    """Only a successful confirm counts: provisioning_failed charges do not."""
    sandbox.inject("confirm", Fault.provisioning_failed(), times=3)
    for _ in range(3):
        assert (await api.buy())[0] == 500
    _, body = await api.limits()
    assert window(body, "daily")["used"] == 0
    assert (await api.buy())[0] == 200


async def test_flat_shape(api, sandbox):
    """limits_shape='flat' answers the spec's flat body with usage."""
    sandbox.limits_shape = "flat"
    await api.buy()
    status, body = await api.limits()
    assert status == 200
    assert body == {
        "status": "OK",
        "limits": {"api_provision_daily": 3, "api_provision_monthly": 10},
        "usage": {"api_provision_daily": 1, "api_provision_monthly": 1},
    }


async def test_custom_shape_is_served_as_given(api, sandbox):
    """A callable limits_shape turns the snapshot into any body a client may meet."""
    sandbox.limits_shape = lambda snapshot: {
        "status": "OK",
        "quota": {"left": snapshot.daily.remaining},
    }
    await api.buy()
    assert await api.limits() == (200, {"status": "OK", "quota": {"left": 2}})


def test_unknown_shape_name_is_refused(sandbox):
    """Setting an unknown limits shape name raises ValueError."""
    with pytest.raises(ValueError, match="unknown limits shape"):
        sandbox.limits_shape = "square"


async def test_limits_need_credentials_but_not_the_plan(api, sandbox):
    """The limits endpoint answers any authenticated account, whatever its plan."""
    sandbox.account.plan = "standard"
    sandbox.account.card_on_file = False
    assert (await api.limits())[0] == 200


async def test_limits_snapshot_matches_the_endpoint(api, sandbox):
    """sandbox.limits() reports what the endpoint answers."""
    await api.buy()
    snapshot = sandbox.limits()
    _, body = await api.limits()
    assert snapshot.daily.used == window(body, "daily")["used"] == 1
    assert snapshot.monthly.remaining == window(body, "monthly")["remaining"] == 9


START = datetime(2026, 5, 18, 14, 20, tzinfo=timezone.utc)
DAY = 86_400
STEPS = st.one_of(
    st.integers(min_value=0, max_value=40 * DAY),
    st.sampled_from([0, 1, DAY - 1, DAY, DAY + 1, 30 * DAY - 1, 30 * DAY]),
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(STEPS, max_size=40),
    daily=st.integers(min_value=0, max_value=4),
    monthly=st.integers(min_value=0, max_value=12),
)
def test_rolling_windows_match_a_naive_model(steps, daily, monthly):
    """Across any clock moves, a purchase is allowed exactly when a naive count says."""
    clock = ManualClock(START)
    state = SandboxState(clock)
    account = state.add_account(
        SandboxAccount("k", "s", daily_limit=daily, monthly_limit=monthly)
    )
    bought: list[datetime] = []

    def counted(span: timedelta) -> list[datetime]:
        return [t for t in bought if clock.now() - t < span]

    for seconds in steps:
        clock.advance(seconds=seconds)
        expected = None
        if len(counted(timedelta(days=1))) >= daily:
            expected = "daily_limit_reached"
        elif len(counted(timedelta(days=30))) >= monthly:
            expected = "monthly_limit_reached"
        outcome = None
        try:
            token = state.preview(account)["preview_token"]
            state.confirm(account, token)
        except Refusal as refusal:
            outcome = refusal.error
        else:
            bought.append(clock.now())
        assert outcome == expected
        snapshot = state.limits(account)
        for usage, span in (
            (snapshot.daily, timedelta(days=1)),
            (snapshot.monthly, timedelta(days=30)),
        ):
            in_window = counted(span)
            assert usage.used == len(in_window)
            assert usage.next_available_at == (
                min(in_window) + span if in_window else None
            )
