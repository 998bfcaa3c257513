"""Small measuring helpers: summaries of repeated runs, and memory readings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Summary:
    """The median, minimum and maximum of repeated measurements."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """Summarise `values` (at least one)."""
        if not values:
            raise ValueError("no measurements to summarise")
        return cls(
            median=statistics.median(values),
            low=min(values),
            high=max(values),
            runs=len(values),
        )


def order_for_round(names: Sequence[str], round_index: int) -> list[str]:
    """The peers' order in one round: A B C, then C B A, and so on.

    Alternating the direction interleaves the peers (A B C C B A A B C ...)
    so that slow drift of the machine (thermal, the server's growing state)
    weighs on every peer alike, and no peer always runs right after the same
    other one.
    """
    ordered = list(names)
    return ordered if round_index % 2 == 0 else ordered[::-1]


def status_kib(field: str, pid: int | str = "self") -> int | None:
    """A `VmRSS`/`VmHWM`-style field of process `pid`'s status, in KiB (Linux only)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); say whether it worked."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
