"""The value classes' reprs: attrs' own, showing the fields and hiding the rest.

Each class is an attrs class with its generated repr; what must not be
shown (a body kept as it came, a batch's outcomes, a token, the secret) is
kept out, or cut short, by the field's own `repr=`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from sendblue_lines import (
    Attempt,
    BatchResult,
    LimitWindow,
    OutcomeUnknownError,
    Plan,
    Preview,
    ProvisionedLine,
    ProvisioningLimits,
    ProvisionOutcome,
    RetryPolicy,
)
from sendblue_lines._config import Credentials
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
BATCH = BatchResult(
    requested=2,
    lines=[LINE],
    errors=[UNKNOWN],
    not_attempted=0,
    stopped_by=None,
    outcomes=[ProvisionOutcome(index=0, line=LINE)],
)


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        pytest.param(
            LINE,
            "ProvisionedLine(phone_number='+15551230000', worker_id='w-1', "
            "subscription_id='s-1')",
            id="line",
        ),
        pytest.param(
            LimitWindow(limit=3),
            "LimitWindow(limit=3, used=None, remaining=None, next_available_at=None)",
            id="window",
        ),
        pytest.param(
            RetryPolicy(),
            "RetryPolicy(attempts=3, base_delay=0.25, max_delay=5.0)",
            id="retry-policy",
        ),
        pytest.param(
            Attempt(method="POST", path="/p", attempt=2, status=None, elapsed=0.5),
            "Attempt(method='POST', path='/p', attempt=2, status=None, "
            "elapsed=0.5, error=None, sent=True)",
            id="attempt",
        ),
    ],
)
def test_a_value_class_shows_its_fields_by_name(instance: Any, expected: str) -> None:
    """`Name(field=value, ...)`, every shown field in order, as attrs writes it."""
    assert repr(instance) == expected


@pytest.mark.parametrize(
    ("instance", "hidden"),
    [
        pytest.param(LIMITS, "raw", id="limits-raw"),
        pytest.param(
            LinesState(
                snapshot_at=MOMENT, lines=(AccountLine(worker_id="w-2"),), raw=[]
            ),
            "raw",
            id="lines-state-raw",
        ),
        pytest.param(BATCH, "outcomes", id="batch-outcomes"),
    ],
)
def test_a_field_hidden_from_the_repr_stays_hidden(instance: Any, hidden: str) -> None:
    """A body kept as it came and a batch's outcomes are never shown."""
    assert f"{hidden}=" not in repr(instance)
    assert repr(instance).startswith(type(instance).__name__ + "(")


def test_the_secret_and_the_token_are_never_shown_whole() -> None:
    """Credentials show `***` for the secret; a Preview only its token's prefix."""
    credentials = Credentials(key_id="key-id", secret="s3cret-never-shown")
    assert repr(credentials) == "Credentials(key_id='key-id', secret='***')"
    preview = Preview(token="lpv_abc123def456", expires_at=MOMENT, message="hi")
    assert repr(preview) == (
        "Preview(token='lpv_abc1…', expires_at='2026-05-18T14:30:00+00:00')"
    )


def test_results_and_plans_show_their_parts() -> None:
    """An outcome, a reply and a plan show what they hold, nested reprs included."""
    assert repr(ProvisionOutcome(index=3, line=LINE)) == (
        f"ProvisionOutcome(index=3, line={LINE!r}, error=None)"
    )
    reply = Reply(status=200, text='{"a": 1}', data={"a": 1}, date="Wed")
    assert repr(reply) == (
        "Reply(status=200, text='{\"a\": 1}', data={'a': 1}, problem=None, "
        "location=None, date='Wed')"
    )
    plan = Plan(
        requested=2, allowed=1, binding="daily", next_available_at=None, limits=LIMITS
    )
    assert f"limits={LIMITS!r}" in repr(plan)
    assert "raw=" not in repr(plan)
