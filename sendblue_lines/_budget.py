"""The Provisioner's budget: plans from limits, `max_lines` and purchases in flight.

`plan_for` reads `ProvisioningLimits` the way the spec asks (the tighter
window's `remaining`, or its `limit` when only that is known; unknown limits
never block), and `refusal` says why a plan falls short, naming the count
that took the room: the server's, this Provisioner's purchases in flight,
or (`journal_refusal`) the journal's, counted over every process sharing it.

Pure bookkeeping, no I/O, no awaits inside, so every method is atomic: the
one place where `max_lines` units and purchases in flight change, and the
code that keeps design invariant 3 (docs/architecture.md walks one purchase
through `plan`, `reserve`, `slot` and `close`). The journal's fleet-wide
reservation comes after `reserve` (no await between the two), and
`Reservation.shrink` gives back at once what it did not grant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ._results import Binding, Plan
from .errors import (
    DailyLimitReachedError,
    MaxLinesReachedError,
    MonthlyLimitReachedError,
    RateLimitError,
    RefusedBy,
)
from .models import LimitWindow, ProvisioningLimits

__all__ = [
    "Budget",
    "Reservation",
    "Slot",
    "journal_refusal",
    "plan_for",
    "refusal",
    "room",
]


#: The spec's error codes, which the Provisioner's refusals carry as the server would.
_CODES = {"daily": "daily_limit_reached", "monthly": "monthly_limit_reached"}
_SPANS = {"daily": "rolling 24-hour", "monthly": "rolling 30-day"}
_CLASSES = {"daily": DailyLimitReachedError, "monthly": MonthlyLimitReachedError}
#: When the room is held by purchases whose outcome is not known yet.
_WHEN_SETTLED = "retry when the purchases in flight settle"


def _room(window: LimitWindow | None, held: int) -> int | None:
    """Lines `window` leaves with `held` purchases in flight; None: not known."""
    if window is None:
        return None
    if window.remaining is not None:
        return max(window.remaining - held, 0)
    if window.limit is not None:
        return max(window.limit - held, 0)
    return None


def _tighter(
    daily: int | None, monthly: int | None
) -> tuple[Literal["daily", "monthly"] | None, int | None]:
    """The window that binds first and its room (None: neither is known).

    The smaller room; on a tie the monthly window, the one that frees up later.
    """
    if monthly is not None and (daily is None or monthly <= daily):
        return "monthly", monthly
    if daily is not None:
        return "daily", daily
    return None, None


def room(limits: ProvisioningLimits) -> int | None:
    """Lines the tighter window of `limits` leaves; None when neither is known."""
    return _tighter(_room(limits.daily, 0), _room(limits.monthly, 0))[1]


def plan_for(
    requested: int,
    limits: ProvisioningLimits,
    cap_left: int | None,
    held: int = 0,
) -> Plan:
    """Say how many of `requested` lines the limits and the cap leave room for.

    `held` purchases of other flows are in flight: the limits read does not
    count them yet, so they come off the room it shows.
    """
    daily = _room(limits.daily, held)
    monthly = _room(limits.monthly, held)
    allowed = requested
    binding: Binding | None = None
    name, left = _tighter(daily, monthly)
    if left is not None and left < allowed:
        allowed, binding = left, name
    if cap_left is not None and cap_left < allowed:
        allowed = max(cap_left, 0)
        binding = "max_lines"
    next_available_at = None
    if binding == "daily" or binding == "monthly":
        if allowed == 0:
            # Nothing fits until every full window has freed a slot.
            times = [
                window.next_available_at
                for window, left in ((limits.daily, daily), (limits.monthly, monthly))
                if window is not None and left == 0
            ]
            if all(t is not None for t in times):
                next_available_at = max(t for t in times if t is not None)
        else:
            window = limits.daily if binding == "daily" else limits.monthly
            assert window is not None  # noqa: S101 - the binding window is known
            next_available_at = window.next_available_at
    return Plan(
        requested=requested,
        allowed=allowed,
        binding=binding,
        next_available_at=next_available_at,
        limits=limits,
        in_flight=held,
    )


def refusal(
    plan: Plan, max_lines: int | None
) -> RateLimitError | MaxLinesReachedError | None:
    """The error that says why `plan` allows fewer lines than requested, if it does.

    A window's refusal names whose count took the room: the server's, or
    this Provisioner's purchases in flight when the limits alone would have
    allowed the request.
    """
    if plan.binding is None:
        return None
    room_left = f"room for {plan.allowed} of {plan.requested} line(s)"
    if plan.binding == "max_lines":
        cap = max_lines if max_lines is not None else 0
        return MaxLinesReachedError(
            f"this Provisioner's max_lines={cap} leaves {room_left}", max_lines=cap
        )
    alone = plan_for(plan.requested, plan.limits, None).allowed
    if alone >= plan.requested:
        held = (
            f"{plan.in_flight} purchase(s) in flight here hold the rest (GET "
            f"/accounts/limits does not count them yet); {_WHEN_SETTLED}"
        )
        return _limit_error(plan.binding, plan, f"leaves {room_left}: {held}",
                            None, "in_flight")  # fmt: skip
    what = "is reached" if plan.allowed == 0 else f"leaves {room_left}"
    what += " according to GET /accounts/limits"
    if plan.in_flight:
        what += f", with {plan.in_flight} purchase(s) in flight here"
    return _limit_error(plan.binding, plan, what, plan.next_available_at, "server")


def journal_refusal(plan: Plan, granted: int, wanted: int) -> RateLimitError:
    """The error for slots the journal did not grant: other processes hold the room.

    Counted over every process sharing the journal: their open purchases,
    and those settled after this process's limits read, which it misses.
    """
    limits = plan.limits
    name = _tighter(_room(limits.daily, 0), _room(limits.monthly, 0))[0] or "daily"
    window = limits.daily if name == "daily" else limits.monthly
    what = (
        f"leaves room for {granted} of {wanted} line(s) once the purchases "
        "that other processes sharing the journal hold open, or bought after "
        f"this process's GET /accounts/limits, are counted; {_WHEN_SETTLED}"
    )
    next_at = None if window is None else window.next_available_at
    return _limit_error(name, plan, what, next_at, "journal")


def _limit_error(
    name: str,
    plan: Plan,
    what: str,
    next_available_at: datetime | None,
    refused_by: RefusedBy,
) -> RateLimitError:
    """One refusal of the window `name`: its class, code, words and retry time."""
    window = plan.limits.daily if name == "daily" else plan.limits.monthly
    about = f"the {name} provisioning limit ({_SPANS[name]} window"
    if window is not None and window.limit is not None:
        about += f", {window.limit} line(s)"
    message = f"{about}) {what}"
    if next_available_at is not None:
        message += f"; the next slot opens at {next_available_at.isoformat()}"
    return _CLASSES[name](
        message, code=_CODES[name], limits=plan.limits,
        next_available_at=next_available_at, refused_by=refused_by,
    )  # fmt: skip


class Slot:
    """One started purchase: its number, and whether its confirm may have charged.

    Entering gives the slot; leaving settles its units in the `Budget` (a
    unit of `max_lines` comes back unless the slot may have charged).
    """

    __slots__ = ("_budget", "charged", "index")

    def __init__(self, index: int, budget: Budget) -> None:
        self.index = index
        self.charged = False
        self._budget = budget

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._budget.in_flight -= 1
        if not self.charged:
            self._budget.held -= 1


class Budget:
    """`max_lines` (None: no cap) and the purchases planned or running.

    Raises nothing: the Provisioner checks `max_lines` at its boundary.
    """

    def __init__(self, max_lines: int | None) -> None:
        self.max_lines = max_lines
        self.held = 0  # units of max_lines taken: in flight or charged
        self.in_flight = 0  # slots reserved and not settled yet

    @property
    def lines_left(self) -> int | None:
        """Units of `max_lines` that can still be taken, None without a cap."""
        return None if self.max_lines is None else self.max_lines - self.held

    def plan(self, count: int, limits: ProvisioningLimits) -> Plan:
        """How many of `count` lines `limits`, the cap and the flights leave."""
        left = None if self.max_lines is None else self.max_lines - self.held
        return plan_for(count, limits, left, self.in_flight)

    def reserve(self, plan: Plan) -> Reservation:
        """Take the units of `plan.allowed` slots (fewer if the cap shrank)."""
        left = None if self.max_lines is None else self.max_lines - self.held
        size = plan.allowed if left is None else max(min(plan.allowed, left), 0)
        self.held += size
        self.in_flight += size
        return Reservation(self, size)


class Reservation:
    """The units of `size` slots, taken from a `Budget` by `reserve()`.

    `close()` it (`contextlib.closing`) to give back the units of the slots
    that never started.
    """

    def __init__(self, budget: Budget, size: int) -> None:
        self._budget = budget
        self.size = size
        self.started = 0
        self.closed = False

    @property
    def unstarted(self) -> int:
        """Slots that may still start (0 once closed)."""
        return 0 if self.closed else self.size - self.started

    def slot(self) -> Slot:
        """Start the next slot; leaving it (`with`) settles its units.

        Raises:
            RuntimeError: no slot of this reservation is left to start.
        """
        if self.closed or self.started >= self.size:
            raise RuntimeError("every slot of this reservation has started")
        slot = Slot(self.started, self._budget)
        self.started += 1
        return slot

    def shrink(self, size: int) -> None:
        """Give back the units of unstarted slots beyond `size` (a smaller grant).

        The journal's fleet reservation may grant fewer slots than the Budget
        reserved; the rest come back at once.
        """
        give = min(max(self.size - max(size, self.started), 0), self.unstarted)
        self.size -= give
        self._budget.in_flight -= give
        self._budget.held -= give

    def close(self) -> None:
        """Give back the units of the slots that never started; idempotent."""
        if not self.closed:
            unstarted = self.size - self.started
            self.closed = True
            self._budget.in_flight -= unstarted
            self._budget.held -= unstarted
