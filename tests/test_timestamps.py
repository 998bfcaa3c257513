"""Timestamps parse the same on every supported Python (3.10 to 3.13).

`datetime.fromisoformat` on 3.10 refuses forms that 3.11 accepts (`Z`, one-
or two-digit fractions, nanoseconds, the basic format, `+0000`...). The SDK
has one parser of its own, used for every timestamp it structures; these
tests run on every interpreter that `.ci/run` tries.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from foundation_support import ACCEPTED_TIMESTAMPS
from hypothesis import assume, given
from hypothesis import strategies as st
from scripted_api import ScriptedApi

from sendblue_lines import LinesClient
from sendblue_lines.models import parse_datetime

UTC = timezone.utc


@pytest.mark.parametrize(("text", "expected"), ACCEPTED_TIMESTAMPS)
def test_accepted_forms(text: str, expected: datetime) -> None:
    """Each accepted form gives the same aware UTC datetime."""
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("next tuesday", id="words"),
        pytest.param("2026-05-18T14:30:00ZZ", id="double-z"),
        pytest.param("2026-02-30T00:00:00Z", id="no-such-day"),
        pytest.param("2026-05-18T25:00:00Z", id="hour-25"),
        pytest.param("2026-05-18T24:00:00Z", id="hour-24"),
        pytest.param("2026-05-18T14:60:00Z", id="minute-60"),
        pytest.param("2026-05-18T14:30:60Z", id="leap-second"),
        pytest.param("2026-05-18T14:30:00+24:00", id="offset-a-day"),
        pytest.param("2026-05-18T14:30.5Z", id="fraction-of-minutes"),
        pytest.param("2026-05-18T14:30:00.Z", id="dot-without-digits"),
        pytest.param("2026-5-18T14:30:00Z", id="one-digit-month"),
        pytest.param("\u0662\u0660\u0662\u0666-05-18T14:30:00Z", id="arabic-digits"),
        pytest.param("2026-W54-1", id="no-such-week"),
        pytest.param("0001-01-01T00:00:00+01:00", id="before-year-1-in-utc"),
        pytest.param(1779114600, id="epoch-number"),
        pytest.param(None, id="null"),
        pytest.param(["2026-05-18"], id="list"),
        pytest.param(b"2026-05-18T14:30:00Z", id="bytes"),
    ],
)
def test_refused_forms_raise_value_error(value: Any) -> None:
    """Anything else is a ValueError (which the models turn into malformed answers)."""
    with pytest.raises(ValueError):
        parse_datetime(value)


AWARE = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)


def _offset(moment: datetime, style: str) -> str:
    offset = moment.utcoffset()
    assert offset is not None
    if style == "Z" and offset == timedelta(0):
        return "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return (
        f"{sign}{hours:02d}{rest:02d}"
        if style == "basic"
        else (f"{sign}{hours:02d}:{rest:02d}")
    )


@given(
    moment=AWARE,
    digits=st.integers(min_value=0, max_value=9),
    basic=st.booleans(),
    separator=st.sampled_from(["T", "t", " "]),
    offset_style=st.sampled_from(["Z", "basic", "extended"]),
)
def test_any_written_form_parses_back(
    moment: datetime, digits: int, basic: bool, separator: str, offset_style: str
) -> None:
    """Written with 0 to 9 fraction digits, basic or extended, it parses back."""
    assume(not (basic and separator == " "))
    micro = f"{moment.microsecond:06d}"
    fraction = ("." + (micro + "000")[:digits]) if digits else ""
    if basic:
        text = moment.strftime("%Y%m%dT%H%M%S")
    else:
        text = moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    text += fraction + _offset(moment, offset_style)
    kept = int((micro + "000")[: min(digits, 6)].ljust(6, "0")) if digits else 0
    assert parse_datetime(text) == moment.replace(microsecond=kept)


@given(moment=AWARE)
def test_agrees_with_fromisoformat_where_this_python_accepts_the_text(
    moment: datetime,
) -> None:
    """For isoformat() output, which every Python reads back, the results agree."""
    text = moment.isoformat()
    assert parse_datetime(text) == datetime.fromisoformat(text)


@pytest.mark.parametrize(("stamp", "expected"), ACCEPTED_TIMESTAMPS)
async def test_every_structured_timestamp_uses_the_one_parser(
    stamp: str, expected: datetime
) -> None:
    """A preview's expires_at and a window's next_available_at read every form.

    Each becomes the same aware UTC instant that `parse_datetime` gives.
    """
    base = "https://api.timestamps.test"
    preview = {"status": "OK", "preview_token": "lpv_ts", "expires_at": stamp}
    window = {"limit": 3, "used": 3, "remaining": 0, "next_available_at": stamp}
    limits = {"status": "OK", "limits": {"api_provision_daily": window}}
    with ScriptedApi.started(base) as api:
        api.reply("preview", body=json.dumps(preview))
        api.reply("limits", body=json.dumps(limits))
        async with LinesClient("key-id", "ts-secret", base_url=base) as client:
            expires_at = (await client.preview()).expires_at
            read = await client.get_limits()
    assert expires_at == expected
    assert expires_at.utcoffset() == timedelta(0)
    assert read.daily is not None
    assert read.daily.next_available_at == expected


# The contract's own form takes a quick path; it must mean exactly what the
# general parser says, for every string of that layout, valid or not.
_DIGIT_FIELDS = st.tuples(
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.integers(0, 999),
)


def _general(text: str) -> datetime | str:
    """What the general parser alone says: a datetime, or the error's type."""
    from sendblue_lines import _timestamps

    original = _timestamps._canonical
    _timestamps._canonical = lambda _text: None  # type: ignore[assignment]
    try:
        return _timestamps.parse_timestamp(text)
    except ValueError as exc:
        return type(exc).__name__
    finally:
        _timestamps._canonical = original


def _quick_or_general(text: str) -> datetime | str:
    from sendblue_lines._timestamps import parse_timestamp

    try:
        return parse_timestamp(text)
    except ValueError as exc:
        return type(exc).__name__


@given(fields=_DIGIT_FIELDS, t=st.sampled_from("Tt"), z=st.sampled_from("Zz"))
def test_the_quick_path_for_the_contracts_form_agrees_with_the_general_parser(
    fields: tuple[int, ...], t: str, z: str
) -> None:
    """`YYYY-MM-DDTHH:MM:SS.fffZ`, real day or not: the general parser's answer."""
    year, month, day, hour, minute, second, milli = fields
    text = (
        f"{year:04d}-{month:02d}-{day:02d}{t}{hour:02d}:{minute:02d}:"
        f"{second:02d}.{milli:03d}{z}"
    )
    assert _quick_or_general(text) == _general(text)


@given(
    fields=_DIGIT_FIELDS,
    at=st.integers(0, 23),
    char=st.characters(codec="utf-8"),
)
def test_the_quick_path_agrees_with_one_character_changed_anywhere(
    fields: tuple[int, ...], at: int, char: str
) -> None:
    """The contract's form with any one character replaced: the general answer."""
    year, month, day, hour, minute, second, milli = fields
    text = (
        f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:"
        f"{second:02d}.{milli:03d}Z"
    )
    text = text[:at] + char + text[at + 1 :]
    assert _quick_or_general(text) == _general(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-18T24:00:00.000Z",
        "2026-02-30T14:30:00.000Z",
        "2026-05-18T14:30:60.000Z",
        "\uff12026-05-18T14:30:00.000Z",  # a full-width digit two
        "2026-05-18T14:30:00,000Z",
        "2026-W20-1T14:30:0.000Z",
    ],
)
def test_the_quick_path_leaves_every_near_miss_to_the_general_parser(
    text: str,
) -> None:
    """Hour 24, a day that does not exist, non-ASCII digits: the general answer."""
    assert _quick_or_general(text) == _general(text)


@given(
    moment=st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31)
    ).map(lambda d: d.replace(microsecond=0, tzinfo=UTC))
)
def test_the_quick_date_header_reader_agrees_with_email_utils(
    moment: datetime,
) -> None:
    """Every IMF-fixdate `Date` reads as `email.utils` reads it."""
    from email.utils import format_datetime, parsedate_to_datetime

    from sendblue_lines.models import _imf_fixdate

    text = format_datetime(moment, usegmt=True)
    assert _imf_fixdate(text) == parsedate_to_datetime(text) == moment


@pytest.mark.parametrize(
    "text",
    [
        "Wed, 02 Dec 2026 14:13:57 UTC",
        "Wed, 31 Feb 2026 14:13:57 GMT",
        "Wed, 02 Dek 2026 14:13:57 GMT",
        "Wed,  2 Dec 2026 14:13:57 GMT",
        "Wed, 02 Dec 2026 14-13-57 GMT",
        "Wednesday, 02-Dec-26 14:13:57 GMT",
    ],
)
def test_the_quick_date_header_reader_leaves_other_forms_to_email_utils(
    text: str,
) -> None:
    """Anything but the exact fixdate layout is read by the general reader."""
    from sendblue_lines.models import _http_date, _imf_fixdate

    assert _imf_fixdate(text) is None
    _http_date(text)  # never raises: an unusable Date is None
