"""The SDK's two clocks, in one place: the wall clock and the monotonic one.

Everything in the client that reads the time calls these (looked up at call
time), so a test can skew the wall clock for the whole client with one
`monkeypatch.setattr`. Expiry is judged on the monotonic clock, which a
wrong wall clock cannot move (see `models.Preview.expired`).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

__all__ = ["monotonic", "now"]


def now() -> datetime:
    """The wall-clock time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def monotonic() -> float:
    """Seconds on a clock that only moves forward, for measuring durations."""
    return time.monotonic()
