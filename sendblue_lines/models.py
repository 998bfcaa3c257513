"""The typed answers of the provisioning API, and the one converter that builds them.

Every model is a frozen, keyword-only attrs class. One private cattrs
`Converter` structures them from the server's JSON: wire names are mapped
with `override(rename=...)`, datetimes are parsed by one hook, strings and
integers are checked strictly (no silent `str(3)` or `int("3")`), unknown
fields are ignored and missing required ones are an error.

The limits endpoint's body is not documented by Sendblue, so
`ProvisioningLimits` is parsed tolerantly: both shapes of the spec are
understood, anything else well-formed is "unknown", never an error.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from .errors import MalformedResponseError

if TYPE_CHECKING:
    from cattrs import Converter

__all__ = [
    "LimitWindow",
    "Preview",
    "ProvisionedLine",
    "ProvisioningLimits",
    "parse_datetime",
]

#: How many characters of a preview token a repr shows.
TOKEN_PREFIX_SHOWN = 8


def parse_datetime(value: object) -> datetime:
    """Parse an ISO 8601 timestamp into a timezone-aware UTC datetime.

    Accepts the spec's `2026-05-18T14:30:00.000Z` form and any ISO 8601 with
    an offset; a timestamp without an offset is taken as UTC, since the API
    speaks UTC.

    Raises:
        ValueError: `value` is not a string in ISO 8601 form.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        # Python 3.10's fromisoformat does not know the `Z` suffix.
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _shorten(token: str) -> str:
    if len(token) <= TOKEN_PREFIX_SHOWN:
        return token
    return token[:TOKEN_PREFIX_SHOWN] + "…"


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

    def expired(self, now: datetime | None = None, *, margin: float = 0.0) -> bool:
        """Tell whether the token has expired at `now` (default: the current time).

        `margin` seconds are taken off the validity, to leave room for clock
        skew and the time the confirm needs to reach the server.
        """
        current = now if now is not None else datetime.now(timezone.utc)
        return current.timestamp() >= self.expires_at.timestamp() - margin

    def __repr__(self) -> str:
        return (
            f"Preview(token={_shorten(self.token)!r}, "
            f"expires_at={self.expires_at.isoformat()!r})"
        )


@attrs.frozen(kw_only=True)
class ProvisionedLine:
    """A line that was bought: its E.164 number and Sendblue's ids for it."""

    phone_number: str
    worker_id: str
    subscription_id: str


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


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


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
            Preview, converter, token=override(rename="preview_token")
        ),
    )
    converter.register_structure_hook(ProvisioningLimits, _structure_limits)
    return converter


def _validation_errors() -> tuple[type[Exception], ...]:
    """What a failed structuring raises: cattrs' own errors and our hooks'."""
    from cattrs.errors import BaseValidationError

    return (BaseValidationError, ValueError, TypeError)


_DAILY = "api_provision_daily"
_MONTHLY = "api_provision_monthly"


def _window(value: object, usage: object) -> LimitWindow | None:
    """Read one window from the canonical (object) or flat (integer) shape."""
    if isinstance(value, Mapping):
        try:
            window = _converter().structure(dict(value), LimitWindow)
        except _validation_errors():
            return None
        if window.limit is None:
            return None
        if window.remaining is None and window.used is not None:
            window = attrs.evolve(window, remaining=max(window.limit - window.used, 0))
        return window
    if isinstance(value, int) and not isinstance(value, bool):
        used = usage if isinstance(usage, int) and not isinstance(usage, bool) else None
        remaining = max(value - used, 0) if used is not None else None
        return LimitWindow(limit=value, used=used, remaining=remaining)
    return None


def _structure_limits(body: object, _: object) -> ProvisioningLimits:
    limits = body.get("limits") if isinstance(body, Mapping) else None
    if not isinstance(limits, Mapping):
        return ProvisioningLimits(raw=body)
    usage = body.get("usage") if isinstance(body, Mapping) else None
    usage = usage if isinstance(usage, Mapping) else {}
    return ProvisioningLimits(
        daily=_window(limits.get(_DAILY), usage.get(_DAILY)),
        monthly=_window(limits.get(_MONTHLY), usage.get(_MONTHLY)),
        raw=body,
    )


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
