"""The typed answers of the provisioning API, and the one converter that builds them.

Every model is a frozen, keyword-only attrs class. One private cattrs
`Converter` structures them from the server's JSON: wire names are mapped
with `override(rename=...)`, datetimes are parsed by one hook, strings and
integers are checked strictly (no silent `str(3)` or `int("3")`), unknown
fields are ignored and missing required ones are an error.

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

import functools
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import attrs

from . import _clock
from ._repr import fields_repr
from ._timestamps import parse_timestamp
from .errors import MalformedResponseError, short_token

if TYPE_CHECKING:
    from cattrs import Converter

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


def parse_datetime(value: object) -> datetime:
    """Parse an ISO 8601 timestamp into a timezone-aware UTC datetime.

    Accepts the spec's `2026-05-18T14:30:00.000Z` form and the other common
    ISO 8601 forms (any fraction length, `Z` or a numeric offset, the basic
    format), the same on every supported Python; a timestamp without an
    offset is taken as UTC, since the API speaks UTC.

    Raises:
        ValueError: `value` is not a string in ISO 8601 form.
    """
    return parse_timestamp(value)


@attrs.frozen(kw_only=True, repr=False)
class Preview:
    """A single-use preview token, valid until `expires_at` (UTC).

    Pass it to `LinesClient.confirm` before it expires to buy the line. The
    repr shows only the token's prefix, so logging a `Preview` does not leak
    a usable token.
    """

    token: str
    expires_at: datetime
    message: str = ""
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

    def __repr__(self) -> str:
        return (
            f"Preview(token={short_token(self.token)!r}, "
            f"expires_at={self.expires_at.isoformat()!r})"
        )


@attrs.frozen(kw_only=True, repr=False)
class ProvisionedLine:
    """A line that was bought: its E.164 number and Sendblue's ids for it."""

    __repr__ = fields_repr

    phone_number: str
    worker_id: str
    subscription_id: str


@attrs.frozen(kw_only=True, repr=False)
class LimitWindow:
    """One rolling provisioning window (24 hours or 30 days).

    `limit` is how many lines the window allows, `used` how many were bought
    in it, `remaining` how many are left, `next_available_at` when the oldest
    purchase leaves the window. Each is None when the server did not say.
    """

    __repr__ = fields_repr

    limit: int | None = None
    used: int | None = None
    remaining: int | None = None
    next_available_at: datetime | None = None

    @property
    def exhausted(self) -> bool:
        """True when the window is known to have nothing left."""
        return self.remaining is not None and self.remaining <= 0


@attrs.frozen(kw_only=True, repr=False)
class ProvisioningLimits:
    """The account's daily and monthly provisioning windows.

    A window is None when the server's answer did not describe it; both are
    None when the answer had a shape we do not know ("limits unknown"), in
    which case the server still enforces its limits at preview and confirm.
    `raw` keeps the parsed body as it came.
    """

    __repr__ = fields_repr

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


@attrs.frozen(kw_only=True, repr=False)
class AccountLine:
    """One line the account holds now, as `GET /api/v2/lines/state` lists it.

    `worker_id` is the id a confirm returns for the line it bought; the rest
    is kept as the server said it, unknown values of `assignment` and
    `status` included, and None where absent or unreadable.
    """

    __repr__ = fields_repr

    worker_id: str
    sendblue_number: str | None = None
    assignment: str | None = None
    status: str | None = None
    status_changed_at: datetime | None = None
    degraded_since: datetime | None = None
    effective_until: datetime | None = None


@attrs.frozen(kw_only=True, repr=False)
class LinesState:
    """The account's lines at one moment: evidence for a purchase whose answer was lost.

    A line here that no known purchase accounts for is evidence of a
    purchase, not proof that it was a given one (the dashboard may have
    bought it); no new line proves nothing (a `provisioning_failed` charges
    without a line). `unreadable` counts the entries that had no usable
    `worker_id` and were left out. `raw` keeps the parsed body as it came.
    """

    __repr__ = fields_repr

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
    unparseable, granting more than an hour, or, while our clock disagrees
    with it, granting nothing at all) we cannot tell a skewed
    clock from a short-lived token, and take the contract's 10 minutes:
    the server still judges expiry, and a token it finds expired on its
    first send is only previewed again.
    """
    date = _http_date(server_date)
    if date is None:
        return TOKEN_VALIDITY_SECONDS
    granted = (expires_at - date).total_seconds()
    if granted > _LONGEST_VALIDITY_SECONDS:
        return TOKEN_VALIDITY_SECONDS
    if abs((local_now - date).total_seconds()) <= _CLOCKS_AGREE_SECONDS:
        return (expires_at - local_now).total_seconds()
    if granted <= 0:
        # "Expired when issued", read while our clock and `Date` disagree:
        # the `Date` may not be the clock the token was dated by (a proxy's,
        # a server that stamps Date from another clock). Sending costs at
        # most a 410 and a new preview; refusing would never buy.
        return TOKEN_VALIDITY_SECONDS
    return granted


#: The month names of an HTTP date (RFC 9110), never the locale's.
_MONTHS = {
    name: number
    for number, name in enumerate(
        "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" "),  # noqa: SIM905
        start=1,
    )
}


def _imf_fixdate(value: str) -> datetime | None:
    """RFC 9110's preferred `Date` form, `Wed, 02 Dec 2026 14:13:57 GMT`; or None.

    Every HTTP server sends this form; `email.utils` reads it too, at many
    times the cost, and stays the reader of every other form.
    """
    if len(value) != 29 or value[3:5] != ", " or not value.endswith(" GMT"):
        return None
    month = _MONTHS.get(value[8:11])
    digits = value[5:7] + value[12:16] + value[17:19] + value[20:22] + value[23:25]
    if (
        month is None
        or not (digits.isascii() and digits.isdigit())
        or value[7] + value[11] + value[16] != "   "
        or value[19] + value[22] != "::"
    ):
        return None
    try:
        return datetime(
            int(value[12:16]),
            month,
            int(value[5:7]),
            int(value[17:19]),
            int(value[20:22]),
            int(value[23:25]),
            tzinfo=timezone.utc,
        )
    except ValueError:
        return None


#: The last `Date` header read and what it read as: answers that come in
#: the same second (every answer of a batch, most of a sequence) share it.
_last_date: tuple[str, datetime] | None = None


def _http_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header as an aware UTC datetime, or None if unusable."""
    global _last_date
    last = _last_date
    if last is not None and last[0] == value:
        return last[1]
    if not isinstance(value, str) or not value.strip():
        return None
    quick = _imf_fixdate(value)
    if quick is not None:
        _last_date = (value, quick)
        return quick
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


def _strict_int(value: object, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _structure_datetime(value: object, _: object) -> datetime:
    return parse_datetime(value)


@functools.cache
def _converter() -> Converter:
    """The one converter, built on first use.

    cattrs is imported here rather than at the top so that `import
    sendblue_lines` stays cheap (cattrs and building the hooks are a large
    part of its import time); the first answer pays it once.
    """
    from cattrs import Converter
    from cattrs.gen import make_dict_structure_fn, override

    converter = Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
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


def _validation_errors() -> tuple[type[Exception], ...]:
    """What a failed structuring raises: cattrs' own errors and our hooks'."""
    from cattrs.errors import BaseValidationError

    return (BaseValidationError, ValueError, TypeError)


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
    if type(value) is int:  # the usual case, read at once
        return value if value >= 0 else (0 if floor_at_zero else None)
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
        return parse_timestamp(value) if isinstance(value, str) else None
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
    if _is_mapping(value):
        get = value.get
        limit = get("limit")
        used = get("used")
        remaining = get("remaining")
        # A non-negative JSON integer (the usual case) is read at once.
        if type(limit) is not int or limit < 0:
            limit = _count(limit)
        if type(used) is not int or used < 0:
            used = _count(used)
        if type(remaining) is not int or remaining < 0:
            remaining = _count(remaining, floor_at_zero=True)
        moment = get("next_available_at")
        next_available_at = None if moment is None else _moment(moment)
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


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    # A JSON object is a dict, and an absent field None: both checked first,
    # without the ABC's machinery.
    if type(value) is dict:
        return True
    return value is not None and isinstance(value, Mapping)


def _structure_limits(body: object, _: object = None) -> ProvisioningLimits:
    if not _is_mapping(body):
        return ProvisioningLimits(raw=body)
    limits = body.get("limits")
    if not _is_mapping(limits):
        return ProvisioningLimits(raw=body)
    usage = body.get("usage")
    if usage is not None and not _is_mapping(usage):
        usage = None
    return ProvisioningLimits(
        daily=_window(limits.get(_DAILY), None if usage is None else usage.get(_DAILY)),
        monthly=_window(
            limits.get(_MONTHLY), None if usage is None else usage.get(_MONTHLY)
        ),
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
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        raise ValueError("expected a `data` list of lines")
    lines: list[AccountLine] = []
    unreadable = 0
    for item in data:
        worker_id = _text(item.get("worker_id")) if isinstance(item, Mapping) else None
        if worker_id is None or not isinstance(item, Mapping):
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
    snapshot = body.get("snapshot_at") if isinstance(body, Mapping) else None
    return LinesState(
        snapshot_at=_moment(snapshot),
        lines=tuple(lines),
        unreadable=unreadable,
        raw=body,
    )


def _quick_preview(body: dict[str, Any]) -> Preview | None:
    """A `Preview` from a body that the converter would accept as it is, else None."""
    token = body.get("preview_token")
    expires = body.get("expires_at")
    message = body.get("message", "")
    if (
        type(token) is not str
        or not token.strip()
        or type(expires) is not str
        or type(message) is not str
    ):
        return None
    try:
        expires_at = parse_timestamp(expires)
    except ValueError:
        return None
    return Preview(token=token, expires_at=expires_at, message=message)


def _quick_line(body: dict[str, Any]) -> ProvisionedLine | None:
    """A `ProvisionedLine` from a body the converter would accept as is, or None."""
    number = body.get("phone_number")
    worker = body.get("worker_id")
    subscription = body.get("subscription_id")
    if (
        type(number) is not str
        or type(worker) is not str
        or type(subscription) is not str
        or not number.strip()
        or not worker.strip()
        or not subscription.strip()
    ):
        return None
    return ProvisionedLine(
        phone_number=number, worker_id=worker, subscription_id=subscription
    )


_QUICK: dict[type, Callable[[dict[str, Any]], object]] = {
    Preview: _quick_preview,
    ProvisionedLine: _quick_line,
    ProvisioningLimits: _structure_limits,
}

_M = TypeVar("_M")


def structure(body: object, model: type[_M], *, status: int, path: str, raw: str) -> _M:
    """Build `model` from a parsed JSON `body`.

    Raises:
        MalformedResponseError: the body is not an object of that shape, with
            the cattrs error as its `__cause__` and the raw text attached.
    """
    if type(body) is dict:
        # The answers of the contract, read without cattrs' machinery; an
        # answer the quick reading does not accept as it is goes to cattrs,
        # which builds the same model or says what is wrong.
        quick = _QUICK.get(model)
        if quick is not None:
            built = quick(body)
            if built is not None:
                return built  # type: ignore[return-value]
    # The limits body is not documented: any well-formed JSON is "limits
    # unknown" (its hook copes with every shape), never an error.
    if model is not ProvisioningLimits and not isinstance(body, Mapping):
        raise MalformedResponseError(
            f"expected a JSON object from {path}, got {type(body).__name__}",
            status=status,
            raw=raw,
            path=path,
        )
    converter = _converter()
    try:
        return converter.structure(body, model)
    except _validation_errors() as exc:
        raise MalformedResponseError(
            f"the answer of {path} is not a valid {model.__name__}: {_describe(exc)}",
            status=status,
            raw=raw,
            path=path,
        ) from exc


def _describe(exc: BaseException) -> str:
    from cattrs import transform_error
    from cattrs.errors import BaseValidationError

    if isinstance(exc, BaseValidationError):
        return "; ".join(transform_error(exc))
    return str(exc)
