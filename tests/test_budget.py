"""The Budget keeps invariant 3's counts without any I/O: a hypothesis state machine.

A model counts what the budget must hold (units of `max_lines` taken, slots
in flight) while reservations are made, slots start and settle charged or
not, and reservations close; the budget must agree after every step, never
hand out more than `max_lines`, and come back to only the charged units once
everything is settled.
"""

from __future__ import annotations

from contextlib import closing

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sendblue_lines._budget import Budget, Reservation, Slot
from sendblue_lines.models import LimitWindow, ProvisioningLimits

UNKNOWN = ProvisioningLimits()


def limits_with(remaining: int) -> ProvisioningLimits:
    """Limits whose daily window has `remaining` lines of room (monthly unknown)."""
    return ProvisioningLimits(
        daily=LimitWindow(limit=remaining + 5, used=5, remaining=remaining)
    )


class BudgetMachine(RuleBasedStateMachine):
    """Reservations, slots and closes in any order, against a simple model."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = Budget(None)
        self.cap: int | None = None
        self.open: list[Reservation] = []
        self.running: list[tuple[Reservation, Slot, object]] = []
        self.charged = 0
        self.reserved_unstarted = 0

    @initialize(cap=st.none() | st.integers(min_value=0, max_value=6))
    def start(self, cap: int | None) -> None:
        self.budget = Budget(cap)
        self.cap = cap

    @rule(
        count=st.integers(min_value=0, max_value=5),
        remaining=st.none() | st.integers(min_value=0, max_value=6),
    )
    def reserve(self, count: int, remaining: int | None) -> None:
        limits = UNKNOWN if remaining is None else limits_with(remaining)
        in_flight = len(self.running) + self.reserved_unstarted
        plan = self.budget.plan(count, limits)
        # The limits read does not count purchases in flight: they come off it.
        room = count if remaining is None else max(remaining - in_flight, 0)
        if self.cap is not None:
            room = min(room, self.cap - self.held())
        assert plan.allowed == min(count, max(room, 0))
        reservation = self.budget.reserve(plan)
        assert reservation.size == plan.allowed
        self.open.append(reservation)
        self.reserved_unstarted += reservation.size

    @precondition(lambda self: any(r.unstarted for r in self.open))
    @rule(data=st.data())
    def start_slot(self, data: st.DataObject) -> None:
        candidates = [r for r in self.open if r.unstarted]
        reservation = data.draw(st.sampled_from(candidates))
        index = reservation.started
        context = reservation.slot()
        slot = context.__enter__()
        assert slot.index == index
        assert not slot.charged
        self.reserved_unstarted -= 1
        self.running.append((reservation, slot, context))

    @precondition(lambda self: self.running)
    @rule(data=st.data(), charged=st.booleans(), raises=st.booleans())
    def settle_slot(self, data: st.DataObject, charged: bool, raises: bool) -> None:
        _, slot, context = self.running.pop(
            data.draw(st.integers(min_value=0, max_value=len(self.running) - 1))
        )
        slot.charged = charged
        if raises:
            # A slot that fails (or is cancelled) settles its units all the same.
            with pytest.raises(KeyError), _reentered(context):
                raise KeyError("the purchase failed")
        else:
            context.__exit__(None, None, None)  # type: ignore[attr-defined]
        self.charged += charged

    @precondition(lambda self: self.open)
    @rule(data=st.data(), twice=st.booleans())
    def close(self, data: st.DataObject, twice: bool) -> None:
        reservation = self.open.pop(
            data.draw(st.integers(min_value=0, max_value=len(self.open) - 1))
        )
        self.reserved_unstarted -= reservation.unstarted
        reservation.close()
        if twice:
            reservation.close()
        assert reservation.unstarted == 0
        with pytest.raises(RuntimeError), reservation.slot():
            pass  # pragma: no cover - never entered

    def held(self) -> int:
        return self.charged + len(self.running) + self.reserved_unstarted

    @invariant()
    def counts_agree(self) -> None:
        assert self.budget.in_flight == len(self.running) + self.reserved_unstarted
        assert self.budget.held == self.held()
        if self.cap is not None:
            assert 0 <= self.budget.held <= self.cap
            assert self.budget.lines_left == self.cap - self.held()
        else:
            assert self.budget.lines_left is None

    def teardown(self) -> None:
        for _, _, context in self.running:
            context.__exit__(None, None, None)  # type: ignore[attr-defined]
        for reservation in self.open:
            reservation.close()
        # Everything settled: only what may have charged is still held.
        assert self.budget.in_flight == 0
        assert self.budget.held == self.charged + sum(
            slot.charged for _, slot, _ in self.running
        )


class _reentered:
    """Exit a slot's context with the exception raised inside this block."""

    def __init__(self, context: object) -> None:
        self.context = context

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return bool(self.context.__exit__(*exc))  # type: ignore[attr-defined]


TestBudget = BudgetMachine.TestCase


def test_a_reservation_of_one_gives_back_what_did_not_charge() -> None:
    """provision() is a reservation of one: a charge keeps its unit, nothing else."""
    budget = Budget(1)
    with (
        closing(budget.reserve(budget.plan(1, UNKNOWN))) as reservation,
        reservation.slot(),
    ):
        assert (budget.lines_left, budget.in_flight) == (0, 1)
    assert (budget.lines_left, budget.in_flight) == (1, 0)
    with (
        closing(budget.reserve(budget.plan(1, UNKNOWN))) as reservation,
        reservation.slot() as slot,
    ):
        slot.charged = True
    assert (budget.lines_left, budget.in_flight) == (0, 0)
    assert budget.plan(1, UNKNOWN).allowed == 0
