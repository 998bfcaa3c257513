"""One ISO 8601 timestamp parser, the same on every Python we support.

`datetime.fromisoformat` grew between 3.10 and 3.11: 3.10 refuses the `Z`
suffix, fractions of other than 3 or 6 digits, the basic format
(`20260518T143000Z`), offsets such as `+0000` or `+00`, and more; 3.11+
takes them. A server answer must not parse on one Python and fail on
another, so we never call it: this module reads the forms itself, with one
ASCII-only regular expression, and builds the datetime from the numbers.

Accepted (case-insensitive `T`/`Z`, a space also separates date and time):

- date: `YYYY-MM-DD`, `YYYYMMDD`, ISO week dates `YYYY-Www-D` / `YYYYWwwD`;
- time (optional): `HH`, `HH:MM`, `HH:MM:SS`, `HHMM`, `HHMMSS`, seconds
  with a fraction of any length after `.` or `,` (cut to microseconds,
  never rounded up);
- offset (optional): `Z`, `±HH`, `±HHMM`, `±HH:MM`, `±HH:MM:SS[.ffffff]`.
  Without an offset the time is taken as UTC, since the API speaks UTC.

The result is always a timezone-aware datetime in UTC.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

__all__ = ["parse_timestamp"]

_DATE = r"""
    (?P<year>[0-9]{4})
    (?:
        -(?P<month>[0-9]{2})-(?P<day>[0-9]{2})
      | (?P<bmonth>[0-9]{2})(?P<bday>[0-9]{2})
      | -?W(?P<week>[0-9]{2})-?(?P<weekday>[1-7])
    )
"""
_TIME = r"""
    (?P<hour>[0-9]{2})
    (?:
        :(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2}))?
      | (?P<bminute>[0-9]{2})(?P<bsecond>[0-9]{2})?
    )?
    (?:[.,](?P<fraction>[0-9]+))?
"""
_OFFSET = r"""
    (?P<zulu>Z)
  | (?P<sign>[+-])(?P<ohour>[0-9]{2})
    (?::?(?P<ominute>[0-9]{2})
      (?::?(?P<osecond>[0-9]{2})(?:[.,](?P<ofraction>[0-9]{1,6}))?)?
    )?
"""
#: The general form, compiled on first use (`re` caches it): only timestamps
#: outside the contract's form need it, and compiling it was most of the
#: cost of importing this module.
_TIMESTAMP = rf"(?:{_DATE})(?:[T ](?:{_TIME})(?:{_OFFSET})?)?"
_TIMESTAMP_FLAGS = re.ASCII | re.IGNORECASE | re.VERBOSE


def _micros(digits: str | None) -> int:
    """Microseconds from a fraction's digits, cut (not rounded) to six."""
    if not digits:
        return 0
    return int(digits[:6].ljust(6, "0"))


#: Timestamps of the contract's form read lately, and what they read as: a
#: limits window's `next_available_at` stays the same from one read to the
#: next until its oldest purchase leaves the window. Bounded: emptied when full.
_recent: dict[str, datetime] = {}
_RECENT_MAX = 64


def _canonical(text: str) -> datetime | None:
    """The contract's own form, `2026-05-18T14:30:00.000Z`, read quickly; or None.

    Every answer of the contract uses this form, and the general parser
    costs a large regular expression and a dozen groups per timestamp; this
    path (which keeps what it read lately, `_recent`) checks the
    separators and leaves the digits to `fromisoformat`,
    which takes nothing but ASCII digits where this layout has them. For
    exactly this layout, `fromisoformat` with a `+00:00` offset means the
    same on every Python (3.10 reads 3-digit fractions too) and gives
    `timezone.utc` itself (`replace(tzinfo=)` would cost more than the
    parse); anything else (or a layout it refuses) goes to the general
    parser.
    """
    known = _recent.get(text)
    if known is not None:
        return known
    if (
        len(text) != 24
        or not text.isascii()
        or text[4] != "-"
        or text[7] != "-"
        or text[10] not in "Tt"
        or text[13] != ":"
        or text[16] != ":"
        or text[19] != "."
        or text[23] not in "Zz"
        or text[11:13] >= "24"
    ):
        # Newer Pythons read hour 24 as the next midnight; the general
        # parser refuses it everywhere, and so must this path.
        return None
    try:
        moment = datetime.fromisoformat(f"{text[:10]}T{text[11:23]}+00:00")
    except ValueError:  # a day or time that does not exist, or not digits
        return None
    if len(_recent) >= _RECENT_MAX:
        _recent.clear()
    _recent[text] = moment
    return moment


def parse_timestamp(value: object) -> datetime:
    """Parse an ISO 8601 timestamp into a timezone-aware UTC datetime.

    Gives the same answer on every supported Python (see the module's
    docstring for the accepted forms). A timestamp without an offset is
    taken as UTC.

    Raises:
        ValueError: `value` is not a string, or not a timestamp in one of
            the accepted forms, or names a day or time that does not exist.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(value).__name__}")
    quick = _canonical(value)
    if quick is not None:
        return quick
    text = value.strip()
    found = re.fullmatch(_TIMESTAMP, text, _TIMESTAMP_FLAGS)
    if found is None:
        shown = text if len(text) <= 64 else text[:64] + "…"
        raise ValueError(f"not an ISO 8601 timestamp: {shown!r}")
    part = found.group
    # The fraction belongs to the smallest unit given (ISO 8601's rule), but
    # only fractions of seconds occur in practice; we accept no other.
    if part("fraction") and part("second") is None and part("bsecond") is None:
        raise ValueError(f"a fraction needs seconds before it: {text!r}")
    year = int(part("year"))
    if part("week") is not None:
        day = date.fromisocalendar(year, int(part("week")), int(part("weekday")))
    else:
        month = part("month") or part("bmonth")
        day = date(year, int(month), int(part("day") or part("bday")))
    moment = datetime(
        day.year,
        day.month,
        day.day,
        int(part("hour") or 0),
        int(part("minute") or part("bminute") or 0),
        int(part("second") or part("bsecond") or 0),
        _micros(part("fraction")),
        tzinfo=timezone.utc,
    )
    if part("sign") is None:
        return moment  # `Z`, or no offset at all: UTC either way
    offset = timedelta(
        hours=int(part("ohour")),
        minutes=int(part("ominute") or 0),
        seconds=int(part("osecond") or 0),
        microseconds=_micros(part("ofraction")),
    )
    if offset >= timedelta(hours=24):
        raise ValueError(f"the UTC offset of {text!r} is not less than 24 hours")
    # The wall time was read as if in UTC; the offset says how far ahead of
    # UTC it really is.
    try:
        return moment - offset if part("sign") == "+" else moment + offset
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC") from None
