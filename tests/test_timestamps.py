"""Timestamps parse the same on every supported Python (3.10 to 3.13).

`datetime.fromisoformat` on 3.10 refuses forms that 3.11 accepts (`Z`, one-
or two-digit fractions, nanoseconds, `+0000`, the basic format...). The SDK
reads the extended forms around the contract's own, writes them out as 3.10
reads them and leaves the numbers to `fromisoformat`; the forms only newer
Pythons read are refused everywhere. These tests run on every interpreter
that `.ci/run` tries.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from foundation_support import ACCEPTED_TIMESTAMPS
from hypothesis import given
from hypothesis import strategies as st
from scripted_api import ScriptedApi

from sendblue_lines import LinesClient
from sendblue_lines.models import granted_validity, parse_datetime

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
        pytest.param("2026-05-18T14Z", id="hours-only"),
        pytest.param("20260518T143000Z", id="basic-format"),
        pytest.param("20260518", id="basic-date"),
        pytest.param("2026-W21-1T14:30:00Z", id="week-date"),
        pytest.param("2026-05-18T14:30:00,5Z", id="comma-fraction"),
        pytest.param("2026-05-18T14:30:30+00:00:30", id="offset-with-seconds"),
        pytest.param("2026-05-18Z", id="offset-without-time"),
        pytest.param("2026-05-18T14:30:00.Z", id="dot-without-digits"),
        pytest.param("2026-5-18T14:30:00Z", id="one-digit-month"),
        pytest.param("\u0662\u0660\u0662\u0666-05-18T14:30:00Z", id="arabic-digits"),
        pytest.param("0001-01-01T00:00:00+01:00", id="before-year-1-in-utc"),
        pytest.param(1779114600, id="epoch-number"),
        pytest.param(None, id="null"),
        pytest.param(["2026-05-18"], id="list"),
        pytest.param(b"2026-05-18T14:30:00Z", id="bytes"),
    ],
)
def test_refused_forms_raise_value_error(value: Any) -> None:
    """Anything else is a ValueError (which the models turn into malformed answers).

    Forms that only Python 3.11+ `fromisoformat` reads are refused on every
    Python, so that one answer never parses on one interpreter and fails on another.
    """
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
    separator=st.sampled_from(["T", "t", " "]),
    offset_style=st.sampled_from(["Z", "basic", "extended"]),
)
def test_any_written_form_parses_back(
    moment: datetime, digits: int, separator: str, offset_style: str
) -> None:
    """Written with 0 to 9 fraction digits and any offset style, it parses back."""
    micro = f"{moment.microsecond:06d}"
    fraction = ("." + (micro + "000")[:digits]) if digits else ""
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


@pytest.mark.parametrize(
    "date",
    [
        "Wed, 02 Dec 2026 14:13:57 UTC",
        "Wed, 31 Feb 2026 14:13:57 GMT",
        "Wed, 02 Dek 2026 14:13:57 GMT",
        "Wed,  2 Dec 2026 14:13:57 GMT",
        "Wed, 02 Dec 2026 14-13-57 GMT",
        "Wednesday, 02-Dec-26 14:13:57 GMT",
        "Wed, 02 Dec 99999 14:13:57 GMT",
    ],
)
def test_an_odd_date_header_is_never_an_error(date: str) -> None:
    """Whatever a `Date` header holds, a validity comes out, never an exception."""
    expires_at = datetime(2026, 12, 2, 14, 23, 57, tzinfo=UTC)
    validity = granted_validity(expires_at, date, expires_at - timedelta(minutes=10))
    assert 0 < validity <= 3600
