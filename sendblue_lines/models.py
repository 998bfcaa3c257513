"""The typed answers of the provisioning API, and the one converter that builds them.

Every model is a frozen, keyword-only attrs class. One private cattrs
`Converter` structures them from the server's JSON: wire names are mapped
with `override(rename=...)`, datetimes are parsed by one hook, strings are
checked strictly (no silent `str(3)`), unknown fields are ignored and
missing required ones are an error. The limits' counts are read by the
limits' own hook (below).

Required strings (the preview token, the confirmed line's number and ids)
must be non-empty: an empty or blank one, or one of another JSON type, is a
`MalformedResponseError` like any other wrong shape. The body's `status`
field is not checked: the HTTP status says whether the call succeeded, and
a usable token or line is not refused over a missing or odd `"OK"`.

The limits endpoint's body is not documented by Sendblue, so
`ProvisioningLimits` is parsed tolerantly, field by field: both shapes of the
spec are understood, a window keeps every count it could read whatever its
other fields hold, and anything else well-formed is "unknown", never an
error (see `_window` for the rules).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import attrs
from cattrs import Converter, transform_error
from cattrs.errors import BaseValidationError
from cattrs.gen import make_dict_structure_fn, override

from . import _clock
from .errors import MalformedResponseError, short_token

__all__ = [
    "LimitWindow",
    "Preview",
    "ProvisionedLine",
    "ProvisioningLimits",
    "parse_datetime",
]

#: How long the contract says a preview token is valid, in seconds.
TOKEN_VALIDITY_SECONDS = 600.0
#: A validity longer than this, read from a `Date` header, is not believed.
_LONGEST_VALIDITY_SECONDS = 3600.0
#: Our wall clock and the server's `Date` (whole seconds) agree within this.
_CLOCKS_AGREE_SECONDS = 2.0


#: The ISO 8601 forms `parse_datetime` reads: a date, then optionally a time
#: (to the minute, the second or a fraction of it) and `Z` or an offset.
_ISO_8601 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[Tt ]([0-9]{2}:[0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?"
    r"([Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)


def parse_datetime(value: object) -> datetime:
    """Parse an ISO 8601 timestamp into a timezone-aware UTC datetime.

    Reads the contract's `2026-05-18T14:30:00.000Z` and the extended forms
    around it, the same on every supported Python: `YYYY-MM-DD`, optionally
    followed (after `T`, `t` or a space) by `HH:MM`, `HH:MM:SS` or seconds
    with a fraction of any length (cut to microseconds, never rounded), then
    `Z`, `z` or an offset `+HH:MM`, `+HHMM`, `+HH` (or `-`). A timestamp
    without an offset is taken as UTC, since the API speaks UTC.

    Raises:
        ValueError: `value` is not a string in one of those forms, or names
            a day, time or offset that does not exist.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(value).__name__}")
    found = _ISO_8601.fullmatch(value.strip())
    if found is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value[:64]!r}")
    day, minutes, seconds, fraction, offset = found.groups()
    # Written out as Python 3.10's `fromisoformat` reads it too (six fraction
    # digits, a `+HH:MM` offset), so that every Python gives the same answer.
    micros = (fraction or "")[:6].ljust(6, "0")
    if offset is None or offset in ("Z", "z"):
        offset = "+00:00"
    else:
        offset = f"{offset[:3]}:{offset[3:].lstrip(':') or '00'}"
    text = f"{day}T{minutes or '00:00'}:{seconds or '00'}.{micros}{offset}"
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value!r} is outside the years 1 to 9999 in UTC") from None


@attrs.frozen(kw_only=True)
class Preview:
    """A single-use preview token, valid until `expires_at` (UTC).

    Pass it to `LinesClient.confirm` before it expires to buy the line. The
    repr shows only the token's prefix, so logging a `Preview` does not leak
    a usable token.
    """

    token: str = attrs.field(repr=lambda token: repr(short_token(token)))
    expires_at: datetime = attrs.field(repr=lambda moment: repr(moment.isoformat()))
    message: str = attrs.field(default="", repr=False)
    # When the token stops being valid on this process's monotonic clock, set
    # by `LinesClient.preview()` from the validity the server granted; None
    # for a Preview built by hand. Not compared, not shown.
    _deadline: float | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )

    def expired(self, now: datetime | None = None, *, margin: float = 0.0) -> bool:
        """Tell whether the token has expired, `margin` seconds early.

        A Preview from `LinesClient.preview()` is judged against the validity
        the server granted (its `expires_at` against its own `Date` header),
        counted on the monotonic clock from the moment the answer arrived:
        a wrong wall clock, ours or the server's, cannot make a fresh token
        look expired or an expired one look fresh. A Preview built by hand,
        or a call with an explicit `now`, compares `expires_at` with `now`
        (default: the current wall-clock time) instead.

        `margin` seconds are taken off the validity, to leave room for the
        time the confirm needs to reach the server.
        """
        if now is None and self._deadline is not None:
            return _clock.monotonic() >= self._deadline - margin
        current = now if now is not None else _clock.now()
        return current.timestamp() >= self.expires_at.timestamp() - margin


@attrs.frozen(kw_only=True)
class ProvisionedLine:
    """A line that was bought: its E.164 number and Sendblue's ids for it.

    A confirm's answer always has both ids. They are None only for a line a
    person settled by hand in the journal (`Journal.settle`), who knew the
    number alone.
    """

    phone_number: str
    worker_id: str | None
    subscription_id: str | None


@attrs.frozen(kw_only=True)
class LimitWindow:
    """One rolling provisioning window (24 hours or 30 days).

    `limit` is how many lines the window allows, `used` how many were bought
    in it, `remaining` how many are left, `next_available_at` when the oldest
    purchase leaves the window. Each is None when the server did not say.
    """

    limit: int | None = None
    used: int | None = None
    remaining: int | None = None
    next_available_at: datetime | None = None

    @property
    def exhausted(self) -> bool:
        """True when the window is known to have nothing left."""
        return self.remaining is not None and self.remaining <= 0


@attrs.frozen(kw_only=True)
class ProvisioningLimits:
    """The account's daily and monthly provisioning windows.

    A window is None when the server's answer did not describe it; both are
    None when the answer had a shape we do not know ("limits unknown"), in
    which case the server still enforces its limits at preview and confirm.
    `raw` keeps the parsed body as it came.
    """

    daily: LimitWindow | None = None
    monthly: LimitWindow | None = None
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def known(self) -> bool:
        """True when at least one window was understood."""
        return self.daily is not None or self.monthly is not None

    @property
    def remaining(self) -> int | None:
        """Lines that can be bought now: the smaller `remaining`, if known."""
        values = [
            w.remaining for w in self.windows().values() if w.remaining is not None
        ]
        return min(values) if values else None

    def windows(self) -> dict[str, LimitWindow]:
        """The known windows by name (`"daily"`, `"monthly"`)."""
        found = {"daily": self.daily, "monthly": self.monthly}
        return {name: window for name, window in found.items() if window is not None}


@attrs.frozen(kw_only=True)
class AccountLine:
    """One line the account holds now, as `GET /api/v2/lines/state` lists it.

    `worker_id` is the id a confirm returns for the line it bought; the rest
    is kept as the server said it, unknown values of `assignment` and
    `status` included, and None where absent or unreadable.
    """

    worker_id: str
    sendblue_number: str | None = None
    assignment: str | None = None
    status: str | None = None
    status_changed_at: datetime | None = None
    degraded_since: datetime | None = None
    effective_until: datetime | None = None


@attrs.frozen(kw_only=True)
class LinesState:
    """The account's lines at one moment: evidence for a purchase whose answer was lost.

    A line here that no known purchase accounts for is evidence of a
    purchase, not proof that it was a given one (the dashboard may have
    bought it); no new line proves nothing (a `provisioning_failed` charges
    without a line). `unreadable` counts the entries that had no usable
    `worker_id` and were left out. `raw` keeps the parsed body as it came.
    """

    snapshot_at: datetime | None
    lines: tuple[AccountLine, ...]
    unreadable: int = 0
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    def worker_ids(self) -> frozenset[str]:
        """The `worker_id` of every line listed."""
        return frozenset(line.worker_id for line in self.lines)


def granted_validity(
    expires_at: datetime, server_date: str | None, local_now: datetime
) -> float:
    """Seconds a token stays valid from the moment its answer arrived.

    `server_date` is the answer's `Date` header and `local_now` our wall
    clock when the answer arrived. The server's `expires_at` minus its own
    `Date` is what it granted, whatever either clock says in absolute
    terms. When our clock agrees with the `Date` header (within its
    whole-second resolution), `expires_at` minus our clock says the same
    to the millisecond, and is used. Without a usable `Date` header (none,
    unparseable, granting more than an hour) we cannot tell a skewed clock
    from a short-lived token, and take the contract's 10 minutes: the
    server still judges expiry, and a token it finds expired on its first
    send is only previewed again.

    A grant of nothing at all (`expires_at` at or before `Date`) also gets
    the contract's 10 minutes, whatever our clock says: the `Date` may not
    be the clock the token was dated by (a proxy's, a front end's, a server
    minutes behind), a 410 costs nothing, and refusing to send would give
    up a purchase that the server allows.
    """
    date = _http_date(server_date)
    if date is None:
        return TOKEN_VALIDITY_SECONDS
    granted = (expires_at - date).total_seconds()
    if granted <= 0 or granted > _LONGEST_VALIDITY_SECONDS:
        return TOKEN_VALIDITY_SECONDS
    if abs((local_now - date).total_seconds()) <= _CLOCKS_AGREE_SECONDS:
        return (expires_at - local_now).total_seconds()
    return granted


def _http_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header as an aware UTC datetime, or None if unusable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # `-0000`: UTC by RFC 5322's reading
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def mark_received(
    preview: Preview, *, server_date: str | None, arrived: float, local_now: datetime
) -> Preview:
    """Give `preview` its monotonic deadline: `arrived` plus the validity granted.

    `arrived` is `_clock.monotonic()` when the answer arrived, `local_now`
    the wall clock then; see `granted_validity`.
    """
    validity = granted_validity(preview.expires_at, server_date, local_now)
    # The one write to a frozen instance, before anyone else has seen it.
    object.__setattr__(preview, "_deadline", arrived + validity)
    return preview


_DAILY = "api_provision_daily"
_MONTHLY = "api_provision_monthly"


def _count(value: object, *, floor_at_zero: bool = False) -> int | None:
    """Read one count of a window; None when absent, null or unreadable.

    A count is a JSON integer, or a float with an integral value (`3.0`, as
    some serializers write integers); any size is kept as it is. Booleans,
    fractions (`3.5`), NaN, infinities, strings (even `"3"`) and containers
    cannot be read. Nor can a negative count (some APIs write `-1` for
    "unlimited"; "unknown" is the reading that never blocks), except that a
    negative `remaining` (`floor_at_zero`) means that nothing is left: 0.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        return None
    if value < 0:
        return 0 if floor_at_zero else None
    return value


def _moment(value: object) -> datetime | None:
    """An optional timestamp: anything that is not one is simply not known."""
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _window(value: object, usage: object) -> LimitWindow | None:
    """Read one window from the canonical (object) or flat (integer) shape.

    Field by field, so that only what cannot be read becomes unknown. The
    `limit` is what makes a window: without a readable one the window is
    unknown (None). A `used` or `remaining` that cannot be read (see
    `_count`) is treated as absent, and a missing `remaining` is
    `limit - used` floored at 0 (with neither, only the limit is known).
    `next_available_at` is None unless it is a timestamp; `window` and any
    unknown field are ignored, whatever they hold.
    """
    if isinstance(value, Mapping):
        limit = _count(value.get("limit"))
        used = _count(value.get("used"))
        remaining = _count(value.get("remaining"), floor_at_zero=True)
        next_available_at = _moment(value.get("next_available_at"))
    else:
        # The flat shape: the window is its limit, `usage` its used count.
        limit = _count(value)
        used = _count(usage)
        remaining = None
        next_available_at = None
    if limit is None:
        return None
    if remaining is None and used is not None:
        remaining = max(limit - used, 0)
    return LimitWindow(
        limit=limit,
        used=used,
        remaining=remaining,
        next_available_at=next_available_at,
    )


def _structure_limits(body: object, _: object) -> ProvisioningLimits:
    """Read the limits tolerantly: any shape we do not know is "limits unknown"."""
    if not isinstance(body, Mapping):
        return ProvisioningLimits(raw=body)
    limits = body.get("limits")
    if not isinstance(limits, Mapping):
        return ProvisioningLimits(raw=body)
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        usage = {}
    return ProvisioningLimits(
        daily=_window(limits.get(_DAILY), usage.get(_DAILY)),
        monthly=_window(limits.get(_MONTHLY), usage.get(_MONTHLY)),
        raw=body,
    )


def _text(value: object) -> str | None:
    """An optional string field: a non-blank string, else not known."""
    return value if isinstance(value, str) and value.strip() else None


def _structure_lines_state(body: object, _: object) -> LinesState:
    """Read the lines list tolerantly; only a body without a `data` list fails.

    The endpoint is documented by Sendblue's published API types, not by the
    provisioning page: more fields and other values are accepted, an entry
    without a usable `worker_id` is counted in `unreadable` and left out.
    """
    if not isinstance(body, Mapping):
        raise TypeError(f"expected a JSON object, got {type(body).__name__}")
    data = body.get("data")
    if not isinstance(data, list):
        raise ValueError("expected a `data` list of lines")
    lines: list[AccountLine] = []
    unreadable = 0
    for item in data:
        worker_id = _text(item.get("worker_id")) if isinstance(item, Mapping) else None
        if worker_id is None:
            unreadable += 1
            continue
        lines.append(
            AccountLine(
                worker_id=worker_id,
                sendblue_number=_text(item.get("sendblue_number")),
                assignment=_text(item.get("assignment")),
                status=_text(item.get("status")),
                status_changed_at=_moment(item.get("status_changed_at")),
                degraded_since=_moment(item.get("degraded_since")),
                effective_until=_moment(item.get("effective_until")),
            )
        )
    return LinesState(
        snapshot_at=_moment(body.get("snapshot_at")),
        lines=tuple(lines),
        unreadable=unreadable,
        raw=body,
    )


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _required_str(value: object, _: object) -> str:
    """A string the answer cannot do without: present, a string, not blank."""
    text = _strict_str(value, _)
    if not text.strip():
        raise ValueError("expected a non-empty string, got an empty or blank one")
    return text


def _structure_datetime(value: object, _: object) -> datetime:
    return parse_datetime(value)


def _make_converter() -> Converter:
    """The one converter: strict strings, wire names, the tolerant bodies' hooks."""
    converter = Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_structure_hook(
        Preview,
        make_dict_structure_fn(
            Preview,
            converter,
            token=override(rename="preview_token", struct_hook=_required_str),
        ),
    )
    converter.register_structure_hook(
        ProvisionedLine,
        make_dict_structure_fn(
            ProvisionedLine,
            converter,
            phone_number=override(struct_hook=_required_str),
            worker_id=override(struct_hook=_required_str),
            subscription_id=override(struct_hook=_required_str),
        ),
    )
    converter.register_structure_hook(ProvisioningLimits, _structure_limits)
    converter.register_structure_hook(LinesState, _structure_lines_state)
    return converter


_CONVERTER = _make_converter()

_M = TypeVar("_M")


def structure(body: object, model: type[_M], *, status: int, path: str, raw: str) -> _M:
    """Build `model` from a parsed JSON `body`.

    Raises:
        MalformedResponseError: the body is not an object of that shape, with
            the cattrs error as its `__cause__` and the raw text attached.
    """
    # The limits body is not documented: any well-formed JSON is "limits
    # unknown" (its hook copes with every shape), never an error.
    if model is not ProvisioningLimits and not isinstance(body, Mapping):
        raise MalformedResponseError(
            f"expected a JSON object from {path}, got {type(body).__name__}",
            status=status,
            raw=raw,
            path=path,
        )
    try:
        return _CONVERTER.structure(body, model)
    except (BaseValidationError, ValueError, TypeError) as exc:
        raise MalformedResponseError(
            f"the answer of {path} is not a valid {model.__name__}: {_describe(exc)}",
            status=status,
            raw=raw,
            path=path,
        ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseValidationError):
        return "; ".join(transform_error(exc))
    return str(exc)
