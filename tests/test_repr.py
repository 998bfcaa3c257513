"""The value classes' shared `__repr__` reads exactly as attrs' generated one.

`fields_repr` replaces the `__repr__` attrs would compile for each class at
import (see `sendblue_lines._repr`); attrs itself is the oracle here: each
instance is shown again by a twin class with the same fields and attrs' own
repr, and the two strings must be the same.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendblue_lines import (
    Attempt,
    BatchResult,
    LimitWindow,
    OutcomeUnknownError,
    Plan,
    ProvisionedLine,
    ProvisioningLimits,
    ProvisionOutcome,
    RetryPolicy,
)
from sendblue_lines._repr import fields_repr
from sendblue_lines._transport import Reply
from sendblue_lines.models import AccountLine, LinesState

MOMENT = datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc)
LINE = ProvisionedLine(
    phone_number="+15551230000", worker_id="w-1", subscription_id="s-1"
)
WINDOW = LimitWindow(limit=5, used=2, remaining=3, next_available_at=MOMENT)
LIMITS = ProvisioningLimits(daily=WINDOW, monthly=None, raw={"limits": {}})
UNKNOWN = OutcomeUnknownError.for_token(
    "tok_abcdef123456", reason="no answer", first_sent_at=MOMENT, attempts=1
)

INSTANCES: list[Any] = [
    LINE,
    WINDOW,
    LimitWindow(),
    LIMITS,
    ProvisioningLimits(),
    AccountLine(worker_id="w-1", sendblue_number="+15551230000", status="active"),
    LinesState(snapshot_at=MOMENT, lines=(AccountLine(worker_id="w-2"),), raw=[]),
    Attempt(method="POST", path="/p", attempt=2, status=None, elapsed=0.5, error="x"),
    Reply(status=200, text='{"a": 1}', data={"a": 1}, date="Wed, 02 Dec 2026"),
    RetryPolicy(),
    ProvisionOutcome(index=3, line=LINE),
    ProvisionOutcome(index=4, error=UNKNOWN),
    BatchResult(
        requested=2,
        lines=[LINE],
        errors=[UNKNOWN],
        not_attempted=0,
        stopped_by=None,
        outcomes=[ProvisionOutcome(index=0, line=LINE)],
    ),
    Plan(
        requested=2, allowed=1, binding="daily", next_available_at=None, limits=LIMITS
    ),
]


def attrs_own_repr(instance: Any) -> str:
    """How attrs' generated repr shows `instance`: through a twin class."""
    cls = type(instance)
    fields = attrs.fields(cls)
    twin = attrs.make_class(
        cls.__name__,
        {field.name: attrs.field(repr=field.repr, kw_only=True) for field in fields},
        repr=True,
    )
    return repr(twin(**{field.name: getattr(instance, field.name) for field in fields}))


@pytest.mark.parametrize("instance", INSTANCES, ids=lambda i: type(i).__name__)
def test_the_shared_repr_reads_as_attrs_own(instance: Any) -> None:
    """Every value class that takes `fields_repr` shows what attrs would show."""
    assert type(instance).__repr__ is fields_repr
    assert repr(instance) == attrs_own_repr(instance)


@given(
    limit=st.none() | st.integers(),
    used=st.none() | st.integers(),
    remaining=st.none() | st.integers(),
    moment=st.none() | st.datetimes(timezones=st.just(timezone.utc)),
)
def test_any_window_reads_as_attrs_would_show_it(
    limit: int | None, used: int | None, remaining: int | None, moment: datetime | None
) -> None:
    """Whatever the values, the two reprs agree."""
    window = LimitWindow(
        limit=limit, used=used, remaining=remaining, next_available_at=moment
    )
    assert repr(window) == attrs_own_repr(window)


def test_a_field_hidden_from_the_repr_stays_hidden() -> None:
    """`raw` (repr=False) and a batch's `outcomes` are never shown."""
    assert "raw" not in repr(LIMITS)
    assert "outcomes" not in repr(INSTANCES[-2])


def test_a_field_with_its_own_repr_callable_is_shown_through_it() -> None:
    """A field's repr callable is honoured, as attrs honours it."""

    @attrs.frozen(repr=False)
    class Shown:
        __repr__ = fields_repr

        secret: str = attrs.field(repr=lambda value: "***")
        plain: int = 1

    assert repr(Shown("hidden")) == "Shown(secret=***, plain=1)"
    assert repr(Shown("hidden")) == attrs_own_repr(Shown("hidden"))


def test_a_non_attrs_object_is_refused() -> None:
    """Only attrs instances have fields to show."""
    with pytest.raises(attrs.exceptions.NotAnAttrsClassError):
        fields_repr(object())
