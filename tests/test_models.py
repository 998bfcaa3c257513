"""The typed answers: Preview, ProvisionedLine and ProvisioningLimits, as parsed."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from cattrs.errors import BaseValidationError
from foundation_support import PREVIEW, load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_api import ScriptedApi

from sendblue_lines import (
    LimitWindow,
    LinesClient,
    MalformedResponseError,
    Preview,
    ProvisionedLine,
    ProvisioningLimits,
    RetryPolicy,
    models,
)

UTC = timezone.utc


async def limits_from(client: LinesClient, api: ScriptedApi, body: Any) -> Any:
    api.reply("limits", body=json.dumps(body))
    return await client.get_limits()


async def preview_from(client: LinesClient, api: ScriptedApi, body: Any) -> Preview:
    api.reply("preview", body=json.dumps(body))
    return await client.preview()


async def test_preview_parses_the_spec_example(
    client: LinesClient, api: ScriptedApi
) -> None:
    """The spec's preview answer becomes a Preview with a UTC-aware expiry."""
    preview = await preview_from(client, api, load("preview_ok"))
    assert preview.token == "lpv_abc123def456ghi789jkl0"
    assert preview.expires_at == datetime(2026, 5, 18, 14, 30, tzinfo=UTC)
    assert preview.expires_at.tzinfo is not None
    assert preview.expires_at.utcoffset() == timedelta(0)
    assert preview.message.startswith("Call the confirm endpoint")


async def test_unknown_fields_are_ignored(
    client: LinesClient, api: ScriptedApi
) -> None:
    """Extra fields in preview and confirm answers change nothing."""
    extra = {"request_id": "req_1", "nested": {"a": [1, 2]}, "status": "OK"}
    preview = await preview_from(client, api, {**load("preview_ok"), **extra})
    assert preview.token == "lpv_abc123def456ghi789jkl0"
    api.reply("confirm", payload={**load("confirm_ok"), **extra})
    line = await client.confirm(preview)
    assert line == ProvisionedLine(
        phone_number="+14155551234",
        worker_id="worker_abc123",
        subscription_id="sub_abc123",
    )


async def test_a_preview_without_message_still_parses(
    client: LinesClient, api: ScriptedApi
) -> None:
    """`message` is only a human hint: its absence is not an error."""
    body = {k: v for k, v in load("preview_ok").items() if k != "message"}
    preview = await preview_from(client, api, body)
    assert preview.message == ""


def test_preview_repr_shows_only_the_token_prefix() -> None:
    """A Preview's repr shows a prefix of the token, never the usable whole."""
    token = "lpv_abc123def456ghi789jkl0"
    preview = Preview(token=token, expires_at=datetime(2026, 5, 18, tzinfo=UTC))
    assert token not in repr(preview)
    assert "lpv_abc1" in repr(preview)
    assert token not in str(preview)
    assert "2026-05-18" in repr(preview)


def test_preview_expired_compares_with_now_and_margin() -> None:
    """expired() is true from expires_at on, and `margin` seconds earlier."""
    expires = datetime(2026, 5, 18, 14, 30, tzinfo=UTC)
    preview = Preview(token="lpv_x", expires_at=expires)
    assert not preview.expired(expires - timedelta(seconds=1))
    assert preview.expired(expires)
    assert preview.expired(expires - timedelta(seconds=5), margin=10)
    assert not preview.expired(expires - timedelta(seconds=10), margin=5)
    assert Preview(token="lpv_x", expires_at=datetime(2000, 1, 1, tzinfo=UTC)).expired()


def test_models_are_frozen_and_keyword_only() -> None:
    """Models cannot be changed after creation nor built positionally."""
    line = ProvisionedLine(phone_number="+1", worker_id="w", subscription_id="s")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        line.phone_number = "+2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ProvisionedLine("+1", "w", "s")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({"preview_token": 123}, "token", id="token-int"),
        pytest.param({"preview_token": None}, "token", id="token-null"),
        pytest.param({"preview_token": ["lpv"]}, "token", id="token-list"),
        pytest.param({"preview_token": ...}, "token", id="token-missing"),
        pytest.param({"expires_at": ...}, "expires_at", id="expiry-missing"),
        pytest.param({"expires_at": "next tuesday"}, "expires_at", id="expiry-text"),
        pytest.param({"expires_at": 1779114600}, "expires_at", id="expiry-epoch"),
        pytest.param({"expires_at": ""}, "expires_at", id="expiry-empty"),
        pytest.param({"message": 7}, "message", id="message-int"),
    ],
)
async def test_a_preview_of_the_wrong_types_is_malformed(
    client: LinesClient, api: ScriptedApi, body: dict[str, Any], problem: str
) -> None:
    """Wrong or missing preview fields are malformed, naming the field, raw attached."""
    merged = {**load("preview_ok"), **body}
    merged = {k: v for k, v in merged.items() if v is not ...}
    raw = json.dumps(merged)
    api.reply("preview", body=raw)
    with pytest.raises(MalformedResponseError) as caught:
        await client.preview()
    assert caught.value.raw == raw
    assert caught.value.status == 200
    assert caught.value.path == PREVIEW
    assert caught.value.__cause__ is not None
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([load("preview_ok")], id="array"),
        pytest.param("lpv_abc", id="string"),
        pytest.param(None, id="null"),
        pytest.param(42, id="number"),
    ],
)
async def test_a_preview_that_is_not_an_object_is_malformed(
    client: LinesClient, api: ScriptedApi, body: Any
) -> None:
    """Well-formed JSON that is not an object is not a preview."""
    api.reply("preview", body=json.dumps(body))
    with pytest.raises(MalformedResponseError) as caught:
        await client.preview()
    assert caught.value.raw == json.dumps(body)


async def test_limits_parse_the_canonical_shape(
    client: LinesClient, api: ScriptedApi
) -> None:
    """The spec's canonical limits body gives both windows in full."""
    body = load("limits_canonical")
    limits = await limits_from(client, api, body)
    assert limits.daily == LimitWindow(limit=3, used=1, remaining=2)
    assert limits.monthly == LimitWindow(limit=10, used=4, remaining=6)
    assert limits.known
    assert limits.remaining == 2
    assert limits.raw == body


async def test_limits_parse_next_available_at(
    client: LinesClient, api: ScriptedApi
) -> None:
    """next_available_at becomes an aware UTC datetime, offsets converted."""
    limits = await limits_from(client, api, load("limits_canonical_full"))
    assert limits.daily.next_available_at == datetime(
        2026, 5, 19, 9, 12, 45, 120000, tzinfo=UTC
    )
    assert limits.monthly.next_available_at == datetime(2026, 6, 2, 9, tzinfo=UTC)
    assert limits.daily.exhausted
    assert not limits.monthly.exhausted
    assert limits.remaining == 0


async def test_absent_remaining_is_limit_minus_used_floored_at_zero(
    client: LinesClient, api: ScriptedApi
) -> None:
    """Without `remaining`, it is limit - used, and never below 0."""
    limits = await limits_from(client, api, load("limits_no_remaining"))
    assert limits.daily == LimitWindow(limit=3, used=1, remaining=2)
    assert limits.monthly == LimitWindow(limit=10, used=12, remaining=0)
    assert limits.monthly.exhausted


async def test_limits_parse_the_flat_shape_with_usage(
    client: LinesClient, api: ScriptedApi
) -> None:
    """The flat shape with `usage` gives limit, used and remaining."""
    limits = await limits_from(client, api, load("limits_flat"))
    assert limits.daily == LimitWindow(limit=3, used=1, remaining=2)
    assert limits.monthly == LimitWindow(limit=10, used=4, remaining=6)


async def test_limits_flat_without_usage_know_only_the_limits(
    client: LinesClient, api: ScriptedApi
) -> None:
    """The flat shape without `usage` leaves used and remaining unknown."""
    limits = await limits_from(client, api, load("limits_flat_no_usage"))
    assert limits.daily == LimitWindow(limit=3, used=None, remaining=None)
    assert limits.monthly == LimitWindow(limit=10, used=None, remaining=None)
    assert limits.known
    assert limits.remaining is None
    assert not limits.daily.exhausted


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "OK"}, id="no-limits"),
        pytest.param({"status": "OK", "limits": []}, id="limits-array"),
        pytest.param({"status": "OK", "limits": "3/10"}, id="limits-string"),
        pytest.param({"status": "OK", "limits": {}}, id="limits-empty"),
        pytest.param({"limits": {"daily": 3, "monthly": 10}}, id="other-window-names"),
        pytest.param(
            {"limits": {"api_provision_daily": "3", "api_provision_monthly": True}},
            id="flat-wrong-types",
        ),
        pytest.param(
            {"limits": {"api_provision_daily": {"used": 1}}}, id="window-no-limit"
        ),
        pytest.param(
            {"limits": {"api_provision_daily": {"limit": "3", "used": 1}}},
            id="window-limit-string",
        ),
        pytest.param([1, 2, 3], id="array"),
        pytest.param("limits", id="string"),
        pytest.param(None, id="null"),
        pytest.param(3, id="number"),
        pytest.param(True, id="boolean"),
    ],
)
async def test_other_well_formed_limits_are_unknown_not_an_error(
    client: LinesClient, api: ScriptedApi, body: Any
) -> None:
    """Any JSON of a shape we do not know gives unknown limits, never an error."""
    limits = await limits_from(client, api, body)
    assert limits.daily is None
    assert limits.monthly is None
    assert not limits.known
    assert limits.remaining is None
    assert limits.windows() == {}
    assert limits.raw == body


async def test_one_unreadable_window_leaves_the_other(
    client: LinesClient, api: ScriptedApi
) -> None:
    """A window we cannot read is None while the readable one is kept."""
    body = load("limits_canonical")
    body["limits"]["api_provision_monthly"] = {"limit": None}
    limits = await limits_from(client, api, body)
    assert limits.daily == LimitWindow(limit=3, used=1, remaining=2)
    assert limits.monthly is None
    assert limits.windows() == {"daily": limits.daily}


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=20,
)
WINDOW_KEYS = st.sampled_from(
    ["limit", "used", "remaining", "next_available_at", "window"]
)
LIMITS_LIKE = st.fixed_dictionaries(
    {
        "limits": st.dictionaries(
            st.sampled_from(["api_provision_daily", "api_provision_monthly", "x"]),
            JSON | st.dictionaries(WINDOW_KEYS, JSON | st.integers(), max_size=5),
            max_size=3,
        )
    },
    optional={
        "usage": st.dictionaries(
            st.sampled_from(["api_provision_daily", "api_provision_monthly"]),
            JSON,
            max_size=2,
        ),
        "status": JSON,
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=JSON | LIMITS_LIKE)
def test_no_well_formed_json_makes_get_limits_raise(body: Any) -> None:
    """Whatever JSON the limits endpoint answers with 200, get_limits returns."""

    async def run() -> ProvisioningLimits:
        with ScriptedApi.started() as api:
            async with LinesClient(
                "k",
                "s",
                base_url="https://api.sendblue.test",
                retry=RetryPolicy(attempts=1),
            ) as client:
                return await limits_from(client, api, body)

    limits = asyncio.run(run())
    assert isinstance(limits, ProvisioningLimits)
    assert limits.raw == body
    for window in limits.windows().values():
        assert isinstance(window.limit, int)


@pytest.mark.parametrize(
    "body",
    [
        {"preview_token": " ", "expires_at": "2026-05-18T14:30:00.000Z"},
        {"preview_token": "lpv_abc", "expires_at": "2026-05-18T24:00:00.000Z"},
        {"preview_token": "lpv_abc", "expires_at": 3},
        {"preview_token": "lpv_abc", "expires_at": "2026-05-18T14:30:00.000Z",
         "message": None},
    ],
)  # fmt: skip
def test_a_preview_with_one_unusable_field_is_malformed_with_the_cattrs_cause(
    body: dict[str, Any],
) -> None:
    """A blank token, an impossible hour, a number or null where text belongs."""
    raw = json.dumps(body)
    with pytest.raises(MalformedResponseError) as caught:
        models.structure(body, models.Preview, status=200, path="/x", raw=raw)
    assert caught.value.raw == raw
    assert isinstance(caught.value.__cause__, (BaseValidationError, ValueError))
