"""What a purchase is doing now, for spans and logs: slot, attempt, token, outcome.

A purchase (one `Provisioner` slot) and each confirm inside it run in a
`Scope` held in a context variable, so that everything said while it runs,
however deep (the client, the transport, a confirm in its own shielded task,
which copies the context), knows which purchase it is about. `_logging`
reads the scope to add the `sendblue_` keys to log records.

Spans: when OpenTelemetry's API has been imported by the application (which
setting up a tracer provider does), each purchase is a span
`sendblue_lines.provision` and each confirm a span `sendblue_lines.confirm`,
with the slot, the attempt, the outcome and the token's fingerprint as
attributes. We never import OpenTelemetry ourselves, installed or not: when
the application has not imported it, each scope (a purchase, and each
confirm in it) costs one dictionary look-up here and nothing else.

The token is never an attribute or a log value, only its fingerprint: the
first 16 hex digits of its SHA-256, which anyone holding the token (an
`OutcomeUnknownError` carries it) can compute to find its spans and records.
"""

from __future__ import annotations

import hashlib
import sys
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Final

from .errors import Outcome, SendblueError, outcome_of

__all__ = [
    "CONFIRM_SPAN",
    "PROVISION_SPAN",
    "Scope",
    "confirming",
    "current",
    "fingerprint",
    "note_attempt",
    "note_token",
    "purchase",
    "settle",
]

PROVISION_SPAN: Final = "sendblue_lines.provision"
CONFIRM_SPAN: Final = "sendblue_lines.confirm"
#: The instrumentation scope our spans are made under.
TRACER_NAME: Final = "sendblue_lines"

#: Span attribute names, one per fact.
ATTR_SLOT: Final = "sendblue_lines.slot"
ATTR_ATTEMPT: Final = "sendblue_lines.attempt"
ATTR_OUTCOME: Final = "sendblue_lines.outcome"
ATTR_TOKEN_FP: Final = "sendblue_lines.token_fp"  # noqa: S105 - a name, no secret
ATTR_ERROR: Final = "sendblue_lines.error"
ATTR_STATUS: Final = "sendblue_lines.http_status"


def fingerprint(token: str) -> str:
    """The token's fingerprint: 16 hex digits of its SHA-256, never the token.

    A preview token is random and single-use, so a truncated hash cannot be
    turned back into it, and it is enough to tell tokens apart in a trace.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


class Scope:
    """One purchase or one confirm in progress: what its records and span say.

    Used as a context manager, it is the current scope while its block runs
    (and, with OpenTelemetry, its span the current span).
    """

    __slots__ = (
        "_name",
        "_reset",
        "_span_cm",
        "attempt",
        "confirms",
        "outcome",
        "slot",
        "span",
        "token",
    )

    def __init__(
        self,
        *,
        slot: int | None,
        attempt: int | None,
        token: str | None,
        name: str = PROVISION_SPAN,
    ) -> None:
        self.slot = slot
        self.attempt = attempt
        self.token = token
        self.outcome: Outcome | None = None
        self.confirms = 0  # confirms started in this scope: may money have moved?
        self.span: Any = None
        self._name = name
        self._span_cm: Any = None
        self._reset: Any = None

    @property
    def token_fp(self) -> str | None:
        """The fingerprint of the token this scope holds, or None."""
        return None if self.token is None else fingerprint(self.token)

    def hold(self, token: str) -> None:
        """Hold `token` from now on (its fingerprint is set on the span, if any)."""
        self.token = token
        if self.span is not None:
            self.set(ATTR_TOKEN_FP, self.token_fp)

    def set(self, attribute: str, value: object) -> None:
        """Set a span attribute, if this scope has a span."""
        if self.span is not None and value is not None:
            self.span.set_attribute(attribute, value)

    def __enter__(self) -> Scope:
        self._reset = _current.set(self)
        # Only a module already imported counts: we never import OpenTelemetry,
        # so an application that does not use it pays nothing for it.
        trace = sys.modules.get(_TRACE)
        if trace is None:  # no OpenTelemetry: no span to open
            return self
        try:
            # We record exceptions ourselves: a cancellation is not an error,
            # and what a SendblueError means for money is our outcome attribute.
            span_cm = trace.get_tracer(TRACER_NAME).start_as_current_span(
                self._name, record_exception=False, set_status_on_exception=False
            )
            self.span = span_cm.__enter__()
        except BaseException:
            _current.reset(self._reset)
            raise
        self._span_cm = span_cm
        self.set(ATTR_SLOT, self.slot)
        self.set(ATTR_ATTEMPT, self.attempt)
        self.set(ATTR_TOKEN_FP, self.token_fp)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span_cm, self._span_cm = self._span_cm, None
        try:
            if span_cm is None:
                if exc is None and self.outcome is None:
                    _finish(self, None)
                return
            try:
                _finish(self, exc)
            finally:
                span_cm.__exit__(kind, exc, traceback)
        finally:
            self.span = None
            _current.reset(self._reset)


_current: ContextVar[Scope | None] = ContextVar("sendblue_lines_scope", default=None)


def current() -> Scope | None:
    """The purchase or confirm running in this context, or None."""
    return _current.get()


#: The module whose presence means the application uses OpenTelemetry.
_TRACE: Final = "opentelemetry.trace"


def _finish(scope: Scope, exc: BaseException | None) -> None:
    if scope.outcome is None:
        if exc is None:
            scope.outcome = "bought" if scope.confirms or scope.token else None
        elif isinstance(exc, SendblueError):
            scope.outcome = outcome_of(exc)
        else:
            # Cancelled (or a bug): only a confirm that may have left can
            # have moved money.
            scope.outcome = "unknown" if scope.confirms else "not_bought"
    span = scope.span
    if span is None:
        return
    scope.set(ATTR_OUTCOME, scope.outcome)
    if isinstance(exc, SendblueError):
        from opentelemetry.trace import Status, StatusCode

        scope.set(ATTR_ERROR, type(exc).__name__)
        scope.set(ATTR_STATUS, getattr(exc, "status", None))
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    elif exc is not None:
        span.add_event("cancelled", {"exception.type": type(exc).__name__})


def purchase(slot: int) -> Scope:
    """Run one purchase (slot `slot`) in a scope and, with OpenTelemetry, a span.

    Use the scope as a context manager (`with purchase(slot):`).
    """
    return Scope(slot=slot, attempt=None, token=None)


def confirming(token: str) -> Scope:
    """The scope (and span) to run one confirm of `token` in, inside its purchase's.

    The purchase's scope, if any, learns that a confirm started (money may
    move from here) and holds `token` from now on.
    """
    outer = _current.get()
    if outer is not None:
        outer.confirms += 1
        outer.hold(token)
    scope = Scope(
        slot=outer.slot if outer is not None else None,
        attempt=outer.attempt if outer is not None else None,
        token=token,
        name=CONFIRM_SPAN,
    )
    scope.confirms = 1
    return scope


def note_attempt() -> None:
    """Count one more attempt (a preview, then maybe a confirm) of this purchase."""
    scope = _current.get()
    if scope is not None:
        scope.attempt = (scope.attempt or 0) + 1
        scope.set(ATTR_ATTEMPT, scope.attempt)


def note_token(token: str) -> None:
    """Remember the fingerprint of the token this purchase attempt holds."""
    scope = _current.get()
    if scope is not None:
        scope.hold(token)


def settle(error: SendblueError | None) -> None:
    """Record the outcome of the purchase in this context (None: a line)."""
    scope = _current.get()
    if scope is not None:
        scope.outcome = outcome_of(error)
        scope.set(ATTR_OUTCOME, scope.outcome)
