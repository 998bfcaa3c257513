"""The sandbox clocks and the API's timestamp format."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from sendblue_lines.sandbox import Clock, ManualClock, RealClock
from sendblue_lines.sandbox._clock import format_timestamp

START = datetime(2026, 5, 18, 14, 20, tzinfo=timezone.utc)


def test_manual_clock_with_a_start_stands_still():
    """ManualClock(start) is frozen at start until moved."""
    clock = ManualClock(START)
    time.sleep(0.01)
    assert clock.now() == START
    assert clock.frozen


def test_advance_moves_forward_by_the_sum_of_its_parts():
    """Advancing adds days, hours, minutes, seconds and ms, and returns the time."""
    clock = ManualClock(START)
    moved = clock.advance(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)
    assert (
        moved
        == clock.now()
        == START + timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)
    )


def test_advance_refuses_to_go_back():
    """Advancing by a negative step raises ValueError; set() can go back."""
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(seconds=-1)
    clock.set(START - timedelta(days=1))
    assert clock.now() == START - timedelta(days=1)


def test_default_manual_clock_follows_real_time_plus_moves():
    """ManualClock() starts now, ticks with real time, and adds what advance moves."""
    clock = ManualClock()
    assert not clock.frozen
    assert abs(clock.now() - datetime.now(timezone.utc)) < timedelta(seconds=1)
    first = clock.now()
    time.sleep(0.02)
    assert clock.now() - first >= timedelta(seconds=0.02)
    clock.advance(hours=25)
    assert clock.now() - datetime.now(timezone.utc) > timedelta(hours=24, minutes=59)


def test_freeze_and_unfreeze():
    """Freezing stops a ticking clock where it is; unfreezing lets it tick again."""
    clock = ManualClock()
    clock.freeze()
    stopped = clock.now()
    time.sleep(0.01)
    assert clock.now() == stopped
    clock.unfreeze()
    time.sleep(0.01)
    assert clock.now() > stopped
    ticking = ManualClock(START, frozen=False)
    time.sleep(0.01)
    assert ticking.now() > START


def test_naive_datetimes_are_refused():
    """A naive datetime is refused by the constructor, set() and the formatter."""
    naive = datetime(2026, 5, 18, 14, 20)
    with pytest.raises(ValueError, match="naive"):
        ManualClock(naive)
    with pytest.raises(ValueError, match="naive"):
        ManualClock().set(naive)
    with pytest.raises(ValueError, match="naive"):
        format_timestamp(naive)


def test_other_timezones_are_converted_to_utc():
    """A start in another timezone is the same instant, reported in UTC."""
    plus_two = timezone(timedelta(hours=2))
    clock = ManualClock(datetime(2026, 5, 18, 16, 20, tzinfo=plus_two))
    assert clock.now() == START
    assert clock.now().tzinfo == timezone.utc


def test_real_clock_is_utc_now():
    """RealClock reports the current UTC time and satisfies the Clock protocol."""
    now = RealClock().now()
    assert now.tzinfo == timezone.utc
    assert abs(now - datetime.now(timezone.utc)) < timedelta(seconds=1)
    assert isinstance(RealClock(), Clock)
    assert isinstance(ManualClock(), Clock)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(START, "2026-05-18T14:20:00.000Z", id="whole-second"),
        pytest.param(
            START + timedelta(microseconds=999_999),
            "2026-05-18T14:20:00.999Z",
            id="truncated-not-rounded",
        ),
        pytest.param(
            datetime(
                2026, 5, 18, 10, 20, 1, 5000, tzinfo=timezone(-timedelta(hours=4))
            ),
            "2026-05-18T14:20:01.005Z",
            id="converted-to-utc",
        ),
    ],
)
def test_format_timestamp(moment, text):
    """Timestamps are UTC, millisecond precision, with a Z."""
    assert format_timestamp(moment) == text


def test_repr_shows_time_and_mode():
    """The clock's repr says where it stands and whether it ticks."""
    assert repr(ManualClock(START)) == "ManualClock(2026-05-18T14:20:00.000Z, frozen)"
