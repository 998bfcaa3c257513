"""The limits answer is read field by field: only what cannot be read is unknown.

A window is its `limit`; `used` and `remaining` are kept when they can be
read and treated as absent when they cannot; `next_available_at`, `window`
and unknown fields never cost a window its counts, whatever they hold. And
whatever the body holds, a batch never sends more confirms than the limits
it read leave (design invariant 3), proved with hypothesis over generated
bodies.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_api import ScriptedApi

from sendblue_lines import LimitWindow, LinesClient, Provisioner, RetryPolicy

BASE = "https://api.limits.test"
NO_WAIT = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)
UTC = timezone.utc

#: Values an optional field might hold on a server we did not write.
ODD = [
    pytest.param("soon", id="text-not-a-time"),
    pytest.param("", id="empty-string"),
    pytest.param("   ", id="blank-string"),
    pytest.param(1779114600, id="epoch-number"),
    pytest.param(17.5, id="float"),
    pytest.param({"at": "2026-05-19T09:12:45Z"}, id="object"),
    pytest.param(["2026-05-19T09:12:45Z"], id="list"),
    pytest.param(None, id="null"),
    pytest.param(True, id="boolean"),
    pytest.param("2026-13-45T99:99:99Z", id="impossible-date"),
]


async def read(client: LinesClient, body: Any) -> Any:
    with ScriptedApi.started(BASE) as api:
        api.reply("limits", body=json.dumps(body), content_type="application/json")
        return await client.get_limits()


@pytest.fixture
async def client() -> Any:
    async with LinesClient("key-id", "limits-secret", base_url=BASE) as c:
        yield c


def canonical(**daily: Any) -> dict[str, Any]:
    window = {"limit": 3, "used": 1, "remaining": 2, **daily}
    return {
        "status": "OK",
        "limits": {
            "api_provision_daily": {k: v for k, v in window.items() if v is not ...},
            "api_provision_monthly": {"limit": 10, "used": 4, "remaining": 6},
        },
    }


@pytest.mark.parametrize("field", ["next_available_at", "window", "x_unknown"])
@pytest.mark.parametrize("odd", ODD)
async def test_an_odd_optional_field_keeps_the_counts(
    client: LinesClient, field: str, odd: Any
) -> None:
    """Whatever an optional field holds, the window keeps limit, used and remaining."""
    limits = await read(client, canonical(**{field: odd}))
    assert limits.daily == LimitWindow(limit=3, used=1, remaining=2)
    assert limits.monthly == LimitWindow(limit=10, used=4, remaining=6)
    assert limits.remaining == 2


@pytest.mark.parametrize(
    ("daily", "expected"),
    [
        pytest.param({"limit": "abc"}, None, id="limit-text"),
        pytest.param({"limit": "3"}, None, id="limit-numeric-string"),
        pytest.param({"limit": None}, None, id="limit-null"),
        pytest.param({"limit": ...}, None, id="limit-missing"),
        pytest.param({"limit": True}, None, id="limit-boolean"),
        pytest.param({"limit": 3.5}, None, id="limit-fraction"),
        pytest.param({"limit": -1}, None, id="limit-negative-maybe-unlimited"),
        pytest.param({"limit": {}}, None, id="limit-object"),
        pytest.param(
            {"limit": 3.0, "used": 1.0, "remaining": 2.0},
            LimitWindow(limit=3, used=1, remaining=2),
            id="integral-floats",
        ),
        pytest.param(
            {"used": "one", "remaining": 2},
            LimitWindow(limit=3, used=None, remaining=2),
            id="used-text-remaining-kept",
        ),
        pytest.param(
            {"used": -4, "remaining": ...},
            LimitWindow(limit=3, used=None, remaining=None),
            id="used-negative-only-limit-known",
        ),
        pytest.param(
            {"remaining": "two"},
            LimitWindow(limit=3, used=1, remaining=2),
            id="remaining-text-derived-from-used",
        ),
        pytest.param(
            {"remaining": 1.5},
            LimitWindow(limit=3, used=1, remaining=2),
            id="remaining-fraction-derived-from-used",
        ),
        pytest.param(
            {"remaining": -2},
            LimitWindow(limit=3, used=1, remaining=0),
            id="remaining-negative-is-nothing-left",
        ),
        pytest.param(
            {"used": 5, "remaining": ...},
            LimitWindow(limit=3, used=5, remaining=0),
            id="overused-floored-at-zero",
        ),
        pytest.param(
            {"limit": 10**30, "used": 1, "remaining": 10**30 - 1},
            LimitWindow(limit=10**30, used=1, remaining=10**30 - 1),
            id="huge-numbers-kept",
        ),
        pytest.param(
            {"remaining": float("inf")},
            LimitWindow(limit=3, used=1, remaining=2),
            id="remaining-infinite-derived",
        ),
    ],
)
async def test_counts_are_read_one_by_one(
    client: LinesClient, daily: dict[str, Any], expected: LimitWindow | None
) -> None:
    """An unreadable limit loses its window; other counts are kept or derived."""
    limits = await read(client, canonical(**daily))
    assert limits.daily == expected
    assert limits.monthly == LimitWindow(limit=10, used=4, remaining=6)


USED_ONE = LimitWindow(limit=3, used=1, remaining=2)
ONLY_LIMIT = LimitWindow(limit=3)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param({"api_provision_daily": 1}, USED_ONE, id="usage"),
        pytest.param(..., ONLY_LIMIT, id="no-usage"),
        pytest.param({"api_provision_daily": "1"}, ONLY_LIMIT, id="usage-text"),
        pytest.param({"api_provision_daily": None}, ONLY_LIMIT, id="usage-null"),
        pytest.param({"api_provision_daily": {}}, ONLY_LIMIT, id="usage-object"),
        pytest.param({"api_provision_daily": -1}, ONLY_LIMIT, id="usage-negative"),
        pytest.param({"api_provision_daily": 1.0}, USED_ONE, id="usage-float"),
        pytest.param("lots", ONLY_LIMIT, id="usage-not-an-object"),
    ],
)
async def test_the_flat_shape_is_read_field_by_field(
    client: LinesClient, usage: Any, expected: LimitWindow
) -> None:
    """The flat shape keeps its limits whatever `usage` holds."""
    body: dict[str, Any] = {
        "status": "OK",
        "limits": {"api_provision_daily": 3, "api_provision_monthly": "ten"},
    }
    if usage is not ...:
        body["usage"] = usage
    limits = await read(client, body)
    assert limits.daily == expected
    assert limits.monthly is None


# -- invariant 3 over generated bodies ------------------------------------------

COUNT = st.integers(min_value=0, max_value=6)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.just(""),
    st.just("2026-05-19T09:12:45Z"),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
UNREADABLE_COUNT = st.one_of(
    st.booleans(),
    st.text(max_size=5),
    st.floats(min_value=0.1, max_value=9.9).filter(lambda f: not f.is_integer()),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    st.lists(st.integers(), max_size=1),
    st.integers(max_value=-1),
)


def as_number(draw: st.DrawFn, value: int) -> int | float:
    """The count as JSON writes it: an integer, or sometimes `3.0`."""
    return float(value) if draw(st.booleans()) else value


@st.composite
def canonical_window(draw: st.DrawFn) -> tuple[dict[str, Any], int | None]:
    """A canonical window with odd extras, and the room it truly leaves (None: any)."""
    window: dict[str, Any] = {}
    if draw(st.booleans()):
        # Unreadable limit: the window is unknown and bounds nothing.
        window["limit"] = draw(UNREADABLE_COUNT | st.none())
        room: int | None = None
        window["remaining"] = draw(COUNT)
    else:
        limit = draw(COUNT)
        window["limit"] = as_number(draw, limit)
        used = draw(st.none() | st.integers(0, limit + 2))
        remaining = draw(st.none() | COUNT)
        if used is not None:
            window["used"] = as_number(draw, used)
        elif draw(st.booleans()):
            window["used"] = draw(UNREADABLE_COUNT)
        if remaining is not None:
            window["remaining"] = as_number(draw, remaining)
            room = remaining
        else:
            if draw(st.booleans()):
                window["remaining"] = draw(UNREADABLE_COUNT.filter(_not_negative))
            room = max(limit - used, 0) if used is not None else limit
    for field in ("next_available_at", "window", "extra"):
        if draw(st.booleans()):
            window[field] = draw(JUNK)
    return window, room


def _not_negative(value: object) -> bool:
    # A negative `remaining` reads as 0 (nothing left), which is a bound of its own.
    return not (isinstance(value, int) and not isinstance(value, bool) and value < 0)


@st.composite
def limits_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], int | None]:
    """A limits body in either spec shape, and the room it leaves (None: unbounded)."""
    rooms: list[int] = []
    body: dict[str, Any] = {"status": draw(st.just("OK") | JUNK)}
    if draw(st.booleans()):
        limits: dict[str, Any] = {}
        for name in ("api_provision_daily", "api_provision_monthly"):
            if draw(st.booleans()):
                window, room = draw(canonical_window())
                limits[name] = window
                if room is not None:
                    rooms.append(room)
        body["limits"] = limits
    else:
        flat: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        for name in ("api_provision_daily", "api_provision_monthly"):
            if not draw(st.booleans()):
                continue
            limit = draw(COUNT)
            flat[name] = as_number(draw, limit)
            used = draw(st.none() | st.integers(0, limit + 2))
            if used is not None:
                usage[name] = used
                rooms.append(max(limit - used, 0))
            else:
                if draw(st.booleans()):
                    usage[name] = draw(UNREADABLE_COUNT | st.none())
                rooms.append(limit)
        body["limits"] = flat
        if usage or draw(st.booleans()):
            body["usage"] = usage
    return body, (min(rooms) if rooms else None)


def run_batch(body: dict[str, Any], count: int, concurrency: int) -> tuple[int, Any]:
    """Run a batch against a server answering `body` for limits; count confirms."""

    async def batch() -> tuple[int, Any]:
        with ScriptedApi.started(BASE) as api:
            api.reply("limits", body=json.dumps(body), content_type="application/json")
            api.buys(count)
            async with LinesClient(
                "key-id", "limits-secret", base_url=BASE, retry=NO_WAIT
            ) as client:
                result = await Provisioner(client).provision_many(
                    count, concurrency=concurrency
                )
            return api.count("confirm"), result

    return asyncio.run(batch())


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    generated=limits_bodies(),
    count=st.integers(min_value=1, max_value=7),
    concurrency=st.integers(min_value=1, max_value=4),
)
def test_a_batch_never_confirms_more_than_the_limits_leave(
    generated: tuple[dict[str, Any], int | None], count: int, concurrency: int
) -> None:
    """Invariant 3 whatever the optional fields hold, and no room is lost to them."""
    body, room = generated
    confirms, result = run_batch(body, count, concurrency)
    expected = count if room is None else min(count, room)
    # Never more than the limits leave, and never less: an odd optional field
    # must not make a readable window unknown (more) or block a purchase (less).
    assert confirms == expected
    assert len(result.lines) == expected
    assert result.errors == []
    assert result.not_attempted == count - expected
