"""What a benchmark run found: measured rows, scenarios and targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._measure import Summary


@dataclass
class Row:
    """One client (or command) in one scenario: its repeated measurements.

    `values` are the headline numbers of each run, in `unit`; `extras` holds
    other per-run numbers by name (CPU time, server CPU, memory). `skipped`
    says why there are no values (not installed, failed against the sandbox).
    """

    name: str
    values: list[float] = field(default_factory=list)
    extras: dict[str, list[float]] = field(default_factory=dict)
    skipped: str | None = None

    def add(self, value: float, **extras: float) -> None:
        """Record one run."""
        self.values.append(value)
        for key, extra in extras.items():
            self.extras.setdefault(key, []).append(extra)

    @property
    def summary(self) -> Summary | None:
        """Median, min and max of the headline values, if any ran."""
        return Summary.of(self.values) if self.values and not self.skipped else None

    def extra_summary(self, key: str) -> Summary | None:
        """Median, min and max of one extra, if recorded."""
        values = self.extras.get(key)
        return Summary.of(values) if values and not self.skipped else None


@dataclass
class Table:
    """Rows measured side by side, interleaved, under the same conditions."""

    title: str
    unit: str
    rows: list[Row]
    #: Smaller is better (times); False for throughput.
    lower_is_better: bool = True
    params: dict[str, Any] = field(default_factory=dict)

    def row(self, name: str) -> Row | None:
        """The row called `name`, if there is one."""
        return next((row for row in self.rows if row.name == name), None)

    def best(self, *, exclude: str | None = None) -> Row | None:
        """The row with the best median, optionally leaving one row out."""
        measured = [
            row for row in self.rows if row.summary is not None and row.name != exclude
        ]
        if not measured:
            return None

        def key(row: Row) -> float:
            summary = row.summary
            assert summary is not None
            return summary.median if self.lower_is_better else -summary.median

        return min(measured, key=key)

    def pairs(
        self, name: str, base: str, combine: Callable[[float, float], float]
    ) -> list[float] | None:
        """`combine(mine, theirs)` for each run of `name` and `base` made side by side.

        The i-th values of two rows were measured together (same round, or
        the same run of commands) when both rows ran every time. None when
        either row is missing, skipped, empty, or they differ in length.
        """
        mine, theirs = self.row(name), self.row(base)
        if not mine or not theirs or mine.skipped or theirs.skipped or not mine.values:
            return None
        if len(mine.values) != len(theirs.values):
            return None
        return [combine(a, b) for a, b in zip(mine.values, theirs.values, strict=True)]

    def ratio(self, name: str, to: Row | None) -> float | None:
        """`name`'s median over `to`'s median, or None if either is missing."""
        row = self.row(name)
        if row is None or row.summary is None or to is None or to.summary is None:
            return None
        return row.summary.median / to.summary.median


@dataclass
class Target:
    """A target of issue 3 or 6, and whether this run met it.

    `met` is None for a figure that is only reported, or when it could not be
    measured (then `measured` says why).
    """

    name: str
    goal: str
    measured: str
    met: bool | None

    @property
    def verdict(self) -> str:
        """PASS, MISS or INFO, as the report prints it."""
        if self.met is None:
            return "INFO"
        return "PASS" if self.met else "MISS"


@dataclass
class Results:
    """Everything one run of `python -m benchmarks` measured."""

    quick: bool
    environment: dict[str, str]
    tables: dict[str, Table] = field(default_factory=dict)
    #: Concurrency -> the batch table at that concurrency.
    batches: dict[int, Table] = field(default_factory=dict)
    bounds: dict[int, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Samples (outcomes consumed, RSS MiB) of our `batch()` run at scale.
    memory_samples: list[list[tuple[int, float]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
