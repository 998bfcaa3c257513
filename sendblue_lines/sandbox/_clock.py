"""The sandbox's sense of time: real time, or a clock that tests can move."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "RealClock", "format_timestamp", "http_date"]


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` that returns an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...  # pragma: no cover


class RealClock:
    """The wall clock, in UTC. It cannot be moved."""

    def now(self) -> datetime:
        """Return the current wall-clock time in UTC."""
        return datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return "RealClock()"


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = "the sandbox clock needs a timezone-aware datetime, got a naive one"
        raise ValueError(msg)
    return moment.astimezone(timezone.utc)


class ManualClock:
    """A clock that tests and demos can move forward.

    ``ManualClock()`` starts at the current UTC time and keeps ticking with
    real time; `advance` adds to it. ``ManualClock(start)`` stands still
    at ``start`` and moves only when told to. ``frozen=`` overrides either
    default: ``ManualClock(frozen=True)`` stops at the current time,
    ``ManualClock(start, frozen=False)`` starts at ``start`` and ticks.

    Raises:
        ValueError: ``start`` is a naive datetime.
    """

    def __init__(
        self, start: datetime | None = None, *, frozen: bool | None = None
    ) -> None:
        self._frozen = start is not None if frozen is None else frozen
        self._base = datetime.now(timezone.utc) if start is None else _as_utc(start)
        self._ticks_from = time.monotonic()

    @property
    def frozen(self) -> bool:
        """Whether the clock stands still between manual moves."""
        return self._frozen

    def now(self) -> datetime:
        """Return the clock's current time (UTC)."""
        if self._frozen:
            return self._base
        return self._base + timedelta(seconds=time.monotonic() - self._ticks_from)

    def advance(
        self,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        milliseconds: float = 0,
    ) -> datetime:
        """Move the clock forward and return the new time.

        Raises:
            ValueError: the total step is negative (use `set` to go back).
        """
        step = timedelta(
            days=days,
            hours=hours,
            minutes=minutes,
            seconds=seconds,
            milliseconds=milliseconds,
        )
        if step < timedelta(0):
            msg = f"advance() only moves forward, got {step}; use set() to go back"
            raise ValueError(msg)
        return self.set(self.now() + step)

    def set(self, moment: datetime) -> datetime:
        """Put the clock at ``moment`` (it keeps ticking from there unless frozen).

        Raises:
            ValueError: ``moment`` is a naive datetime.
        """
        self._base = _as_utc(moment)
        self._ticks_from = time.monotonic()
        return self._base

    def freeze(self) -> None:
        """Stop the clock at its current time."""
        self.set(self.now())
        self._frozen = True

    def unfreeze(self) -> None:
        """Let the clock tick with real time again from its current time."""
        self.set(self.now())
        self._frozen = False

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "ticking"
        return f"ManualClock({format_timestamp(self.now())}, {state})"


def format_timestamp(moment: datetime) -> str:
    """Format ``moment`` as the API does: UTC, millisecond precision, ``Z``.

    Raises:
        ValueError: ``moment`` is a naive datetime.
    """
    utc = _as_utc(moment)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def http_date(moment: datetime) -> str:
    """Format ``moment`` as an HTTP ``Date`` header (RFC 9110, whole seconds, GMT).

    Raises:
        ValueError: ``moment`` is a naive datetime.
    """
    return format_datetime(_as_utc(moment), usegmt=True)
