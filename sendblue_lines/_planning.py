"""How many lines may be bought now: plans from limits, and the lifetime cap.

Pure bookkeeping, no I/O. `plan_for` reads `ProvisioningLimits` the way the
spec asks (the tighter window's `remaining`, or its `limit` when only that is
known; unknown limits never block), and `limit_error` says why a plan falls
short. The counts it is given live in `_budget`.
"""

from __future__ import annotations

from ._results import Binding, Plan
from .errors import (
    DailyLimitReachedError,
    MaxLinesReachedError,
    MonthlyLimitReachedError,
    RateLimitError,
)
from .models import ProvisioningLimits

#: The spec's error codes, which the pre-check's errors carry as the server would.
_CODES = {"daily": "daily_limit_reached", "monthly": "monthly_limit_reached"}
_SPANS = {"daily": "rolling 24-hour", "monthly": "rolling 30-day"}


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
    room: dict[str, int] = {}
    for name, window in limits.windows().items():
        if window.remaining is not None:
            room[name] = max(window.remaining - held, 0)
        elif window.limit is not None:
            room[name] = max(window.limit - held, 0)
    allowed = requested
    binding: Binding | None = None
    if room:
        # On a tie the monthly window binds: it is the one that frees up later.
        name = min(room, key=lambda n: (room[n], n != "monthly"))
        if room[name] < allowed:
            allowed = room[name]
            binding = "daily" if name == "daily" else "monthly"
    if cap_left is not None and cap_left < allowed:
        allowed = max(cap_left, 0)
        binding = "max_lines"
    next_available_at = None
    if binding in ("daily", "monthly"):
        windows = limits.windows()
        if allowed == 0:
            # Nothing fits until every full window has freed a slot.
            times = [
                windows[n].next_available_at for n, left in room.items() if left == 0
            ]
            if all(t is not None for t in times):
                next_available_at = max(t for t in times if t is not None)
        else:
            next_available_at = windows[binding].next_available_at
    return Plan(
        requested=requested,
        allowed=allowed,
        binding=binding,
        next_available_at=next_available_at,
        limits=limits,
    )


def limit_error(
    plan: Plan, max_lines: int | None
) -> RateLimitError | MaxLinesReachedError | None:
    """The error that says why `plan` allows fewer lines than requested, if it does."""
    if plan.binding is None:
        return None
    room = f"room for {plan.allowed} of {plan.requested} line(s)"
    if plan.binding == "max_lines":
        cap = max_lines if max_lines is not None else 0
        return MaxLinesReachedError(
            f"this Provisioner's max_lines={cap} leaves {room}", max_lines=cap
        )
    window = plan.limits.daily if plan.binding == "daily" else plan.limits.monthly
    what = f"the {plan.binding} provisioning limit ({_SPANS[plan.binding]} window"
    if window is not None and window.limit is not None:
        what += f", {window.limit} line(s)"
    what += ")"
    message = (
        f"{what} is reached" if plan.allowed == 0 else f"{what} leaves {room}"
    ) + " according to GET /accounts/limits"
    if plan.next_available_at is not None:
        message += f"; the next slot opens at {plan.next_available_at.isoformat()}"
    cls = (
        DailyLimitReachedError if plan.binding == "daily" else MonthlyLimitReachedError
    )
    return cls(
        message,
        status=429,
        code=_CODES[plan.binding],
        limits=plan.limits,
        next_available_at=plan.next_available_at,
    )
