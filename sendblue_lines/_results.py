"""What the Provisioner hands back: one slot's outcome, a batch's result, a plan."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import attrs

from .errors import SendblueError, outcome_of
from .models import ProvisionedLine, ProvisioningLimits

__all__ = ["BatchResult", "Binding", "Plan", "ProvisionOutcome", "describe"]

#: What keeps a plan below the count asked for.
Binding = Literal["daily", "monthly", "max_lines"]


def _exactly_one(
    instance: ProvisionOutcome, attribute: object, value: SendblueError | None
) -> None:
    del attribute, value
    if (instance.line is None) == (instance.error is None):
        raise ValueError("a ProvisionOutcome has exactly one of `line` and `error`")


@attrs.frozen(kw_only=True)
class ProvisionOutcome:
    """How one purchase slot settled: a line, or the error that ended it.

    `index` is the slot's number (0 for `provision()`, 0 to count-1 in a
    batch); exactly one of `line` and `error` is set.

    Raises:
        ValueError: from the constructor, when not exactly one is set.
    """

    index: int
    line: ProvisionedLine | None = None
    error: SendblueError | None = attrs.field(default=None, validator=_exactly_one)

    @property
    def ok(self) -> bool:
        """True when the slot bought its line."""
        return self.line is not None

    @property
    def charged(self) -> bool:
        """True when money moved or most likely moved for this slot.

        A line, a `ProvisioningFailedError` (a subscription exists) or an
        `OutcomeUnknownError` (most likely bought).
        """
        return outcome_of(self.error) != "not_bought"


def describe(outcome: ProvisionOutcome) -> str:
    """`outcome` in a few words for a log: the number bought, or the error."""
    if outcome.line is not None:
        return f"bought {outcome.line.phone_number}"
    return f"{type(outcome.error).__name__}: {outcome.error}"


@attrs.frozen(kw_only=True)
class BatchResult:
    """Everything a batch did, as `Provisioner.provision_many` collects it.

    `requested` is the count asked for. `lines` are the lines bought and
    `errors` the failures of slots that were attempted, both in slot order
    (`errors` includes `OutcomeUnknownError` and `ProvisioningFailedError`,
    which mean money moved). `not_attempted` counts the slots never started,
    because the limits left no room or an account-level error stopped the
    batch; `stopped_by` is that error, or None. `outcomes` holds every
    attempted slot's `ProvisionOutcome` in slot order, to tell which slot
    failed how.
    """

    requested: int
    lines: list[ProvisionedLine]
    errors: list[SendblueError]
    not_attempted: int
    stopped_by: SendblueError | None
    outcomes: list[ProvisionOutcome] = attrs.field(factory=list, repr=False)

    @property
    def charged(self) -> int:
        """How many slots moved money: lines plus the two "money moved" errors."""
        return sum(1 for outcome in self.outcomes if outcome.charged)


@attrs.frozen(kw_only=True)
class Plan:
    """How many of `requested` lines can be bought now, and why not more.

    `allowed` is what the limits read (and the Provisioner's `max_lines`)
    leave, at most `requested`. `binding` names what keeps `allowed` below
    `requested` (`"daily"`, `"monthly"` or `"max_lines"`), None when all of
    it fits or the limits are unknown. `next_available_at` is when the
    binding window frees its next slot, if the server said. `limits` is what
    was read (both windows None when the limits are unknown, which never
    blocks: the server still enforces them). `in_flight` counts this
    Provisioner's purchases still in flight when the plan was made: the
    limits read does not count them yet, so their room came off `allowed`.
    """

    requested: int
    allowed: int
    binding: Binding | None
    next_available_at: datetime | None
    limits: ProvisioningLimits
    in_flight: int = 0

    @property
    def blocked(self) -> bool:
        """True when nothing can be bought now (and something was asked for)."""
        return self.allowed == 0 and self.requested > 0
