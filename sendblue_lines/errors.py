"""Every error that sendblue-lines raises.

The tree, and what each branch means for your money::

    SendblueError
    ├── ConfigurationError          bad credentials or base URL, before any request
    ├── TransportError              network failure; .sent: may the request have left?
    ├── MalformedResponseError      not JSON, wrong shape, wrong types, too large
    ├── APIError                    .status .code .message .body
    │   ├── BadRequestError         400
    │   ├── AuthenticationError     401
    │   ├── NoCardOnFileError       402 no_card_on_file
    │   ├── PermissionDeniedError   403 (plan, or token of another account)
    │   ├── TokenExpiredError       410 token_expired
    │   ├── RateLimitError          429, also raised by the limits pre-check
    │   │   ├── DailyLimitReachedError
    │   │   └── MonthlyLimitReachedError
    │   ├── NoLinesAvailableError   503 no_lines_available
    │   ├── ProvisioningFailedError 500 provisioning_failed: a subscription exists
    │   └── ServerError             any other 5xx
    ├── OutcomeUnknownError         a confirm was sent, its result is unknown
    ├── DeclinedError               `approve` said no, or a key's total was met
    ├── MaxLinesReachedError        the Provisioner's `max_lines` cap is used up
    └── JournalError                the purchase journal cannot be opened, read, written

Only two of them mean that money may have moved without a line to show for it:
`ProvisioningFailedError` (a subscription certainly exists) and
`OutcomeUnknownError` (a purchase most likely happened). Both need a human.

`DeclinedError` and `MaxLinesReachedError` never come from the server: they
are the Provisioner's own guardrails, and neither ever follows a confirm
(nothing was bought). `JournalError` never comes from the server either: the
journal that records purchases durably failed (corrupt file, disk full,
connection lost, a journal written by a newer version). A purchase whose
intent cannot be written is stopped before its confirm is sent.

Every error keeps its data in keyword-only attributes, pickles, and never
carries a credential in its message or attributes.

What each class means is said once, on the class (`charged`,
`account_level`, `refused`, `transient`; see `SendblueError`): the rest of
the package asks the class, never an HTTP status. What a purchase did to
money is said once too, by `outcome_of`, from those flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any, ClassVar, Literal

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DailyLimitReachedError",
    "DeclinedError",
    "JournalError",
    "MalformedResponseError",
    "MaxLinesReachedError",
    "MonthlyLimitReachedError",
    "NoCardOnFileError",
    "NoLinesAvailableError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "ProvisioningFailedError",
    "RateLimitError",
    "SendblueError",
    "ServerError",
    "TokenExpiredError",
    "TransportError",
]

#: How much of an unreadable body an error keeps, in characters.
RAW_EXCERPT_LIMIT = 2048
#: How many characters of a preview token logs and messages show.
TOKEN_PREFIX_SHOWN = 8
#: What ends a token `short_token` cut (`settle` takes it back off).
CUT_MARK = "…"


def short_token(token: str) -> str:
    """Return the first characters of `token`, marked as cut: safe to log."""
    if len(token) <= TOKEN_PREFIX_SHOWN:
        return token
    return token[:TOKEN_PREFIX_SHOWN] + CUT_MARK


def excerpt(text: str | None, limit: int = RAW_EXCERPT_LIMIT) -> str | None:
    """Return `text` cut to `limit` characters, marked when it was cut."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


#: What a purchase did to money (see `outcome_of`).
Outcome = Literal["bought", "not_bought", "provisioning_failed", "unknown"]
#: Whose count refused a purchase for want of room (see `RateLimitError`).
RefusedBy = Literal["server", "in_flight", "journal"]


class SendblueError(Exception):
    """The base of every error sendblue-lines raises (cancellation aside).

    Catch it to handle any failure of the SDK; the subclasses say what
    happened and whether money may have moved.
    """

    #: Money may have moved: a human must check the account.
    charged: ClassVar[bool] = False
    #: About the account, not one purchase: a batch starts no further slot.
    account_level: ClassVar[bool] = False
    #: Refused, or stopped before sending: certainly nothing happened (set
    #: per error where only the instance knows, as `TransportError.sent`).
    refused: bool = False

    @property
    def transient(self) -> bool:
        """True when another try of a side-effect-free call may succeed."""
        return False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Our errors take keyword-only data; pickle rebuilds them from their
        # attributes rather than from `args`.
        return (_rebuild, (type(self), self._state()))

    def _state(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[SendblueError], state: dict[str, Any]) -> SendblueError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class ConfigurationError(SendblueError):
    """The client's configuration is unusable; raised before any request.

    Missing or malformed credentials, a base URL that is not https (plain
    http is allowed for loopback hosts only), or an invalid option.
    """

    account_level = True
    refused = True


class TransportError(SendblueError):
    """The request failed on the network, without an HTTP answer.

    `sent` is False only when the request certainly never reached the server
    (connection refused, DNS failure, connect timeout); True means it may
    have been received and acted on. `refused` is ``not sent``.
    """

    @property
    def transient(self) -> bool:
        """Always True: the network may work on the next try."""
        return True

    def __init__(self, message: str, *, sent: bool, method: str, path: str) -> None:
        super().__init__(message)
        self.sent = sent
        self.refused = not sent
        self.method = method
        self.path = path


class MalformedResponseError(SendblueError):
    """The server answered, but the answer could not be read.

    Not JSON, JSON of the wrong shape or types, or larger than the size cap.
    `raw` holds the start of the body as text (cut to a couple of KiB),
    `status` the HTTP status.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        raw: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.raw = excerpt(raw)
        self.path = path


class APIError(SendblueError):
    """The server answered with an error status.

    `status` is the HTTP status, `code` the body's `error` field (None when
    absent), `message` its `message` (or a description of the status), and
    `body` the parsed JSON body (None when it was not a JSON object).

    A plain `APIError` is a 4xx the contract does not name: a refusal.
    """

    refused = True

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        body: Mapping[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = dict(body) if body is not None else None
        self.path = path

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"HTTP {self.status}{code}: {self.message}"


class BadRequestError(APIError):
    """400: the request was malformed (for confirm: no `preview_token`)."""


class AuthenticationError(APIError):
    """401: the API key id or secret was rejected. Nothing was charged."""

    account_level = True


class NoCardOnFileError(APIError):
    """402 `no_card_on_file`: add a card to the Sendblue account first."""

    account_level = True


class PermissionDeniedError(APIError):
    """403: the account is not on the `inbound_only` / Agent plan.

    Also raised when a preview token belongs to another account.
    """

    account_level = True


class TokenExpiredError(APIError):
    """410 `token_expired`: the preview token expired or was already used.

    When raised by `LinesClient.confirm`, it always means nothing was bought:
    a 410 that follows an unclear send becomes `OutcomeUnknownError` instead.
    Also raised by the Provisioner, with `status` 410, when every token it
    got expired (by the validity the server granted) before it could be sent.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = int(HTTPStatus.GONE),
        code: str | None = "token_expired",
        body: Mapping[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, body=body, path=path)


class RateLimitError(APIError):
    """429: a provisioning limit is reached. Nothing was charged.

    Also raised by the Provisioner before any confirm, with `status` 429,
    when the room a window leaves is taken. `refused_by` names the count
    that took it: ``"server"`` (the server's own count: its 429, or
    ``GET /accounts/limits``), ``"in_flight"`` (this Provisioner's purchases
    still in flight, which that read does not count yet: retry when they
    settle) or ``"journal"`` (purchases that other processes, or other
    Provisioners, sharing the journal hold open or bought after that read).
    `limits` holds the `ProvisioningLimits` that were read (None when the
    server said so itself), `next_available_at` when the next slot opens,
    if known (None while purchases in flight hold the room).
    """

    account_level = True

    def __init__(
        self,
        message: str,
        *,
        status: int = int(HTTPStatus.TOO_MANY_REQUESTS),
        code: str | None = None,
        body: Mapping[str, Any] | None = None,
        path: str | None = None,
        limits: Any = None,
        next_available_at: datetime | None = None,
        refused_by: RefusedBy = "server",
    ) -> None:
        super().__init__(message, status=status, code=code, body=body, path=path)
        self.limits = limits
        self.next_available_at = next_available_at
        self.refused_by = refused_by


class DailyLimitReachedError(RateLimitError):
    """429 `daily_limit_reached`: the rolling 24-hour window is full."""


class MonthlyLimitReachedError(RateLimitError):
    """429 `monthly_limit_reached`: the rolling 30-day window is full."""


class NoLinesAvailableError(APIError):
    """503 `no_lines_available`: no line can be had right now; try later.

    Account-level for a batch: every next slot would meet it too.
    """

    account_level = True


class ProvisioningFailedError(APIError):
    """500 `provisioning_failed`: **money moved**, a subscription exists.

    The server created the Stripe subscription but could not provision the
    line. Never retried. Contact Sendblue support with `body`, which holds
    everything the server said.
    """

    charged = True
    refused = False

    def __init__(
        self,
        message: str,
        *,
        status: int = int(HTTPStatus.INTERNAL_SERVER_ERROR),
        code: str | None = "provisioning_failed",
        body: Mapping[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, body=body, path=path)


class ServerError(APIError):
    """Any other 5xx, or a 3xx (`redirect` True), which is never followed.

    Never a refusal: a confirm that meets one may have bought.
    """

    refused = False
    #: A 3xx, not a 5xx: set by the client, which reads statuses.
    redirect = False

    @property
    def transient(self) -> bool:
        """True for a 5xx; a redirect never changes on another try."""
        return not self.redirect


class OutcomeUnknownError(SendblueError):
    """A confirm was sent and its result could not be learned.

    Most likely the line was bought and the card charged. The SDK did not
    re-preview (that could buy a second line); it resent the same token
    where that was safe, and stopped. Check the account before buying again.

    `preview_token` is the token that was confirmed, `first_sent_at` when it
    was first sent (UTC), `attempts` how many times it was sent, `reason`
    what made the outcome unclear, and `status`/`raw` the last answer if
    there was one. `evidence` is what ``GET /api/v2/lines/state`` showed
    when a journaled purchase looked (the account's lines that no recorded
    purchase accounts for), None when nobody looked; the message says what
    it suggests.
    """

    charged = True

    @classmethod
    def for_token(
        cls,
        token: str,
        reason: str,
        *,
        first_sent_at: datetime,
        attempts: int,
        status: int | None = None,
        raw: str | None = None,
        evidence: tuple[Mapping[str, Any], ...] | None = None,
    ) -> OutcomeUnknownError:
        """The error for a confirm of `token` whose outcome is unknown, by `reason`."""
        return cls(
            f"the outcome of confirming token {short_token(token)} is unknown: "
            f"{reason}. {_what_evidence_shows(evidence)}",
            preview_token=token,
            first_sent_at=first_sent_at,
            attempts=attempts,
            reason=reason,
            status=status,
            raw=raw,
            evidence=evidence,
        )

    def __init__(
        self,
        message: str,
        *,
        preview_token: str,
        first_sent_at: datetime,
        attempts: int,
        reason: str,
        status: int | None = None,
        raw: str | None = None,
        evidence: tuple[Mapping[str, Any], ...] | None = None,
    ) -> None:
        super().__init__(message)
        self.preview_token = preview_token
        self.first_sent_at = first_sent_at
        self.attempts = attempts
        self.reason = reason
        self.status = status
        self.raw = excerpt(raw)
        self.evidence = evidence

    def looked_at(
        self, evidence: tuple[Mapping[str, Any], ...] | None
    ) -> OutcomeUnknownError:
        """The same error, with what the account's lines showed (None: not seen)."""
        error = self.for_token(
            self.preview_token, self.reason, first_sent_at=self.first_sent_at,
            attempts=self.attempts, status=self.status, raw=self.raw,
            evidence=evidence,
        )  # fmt: skip
        error.__cause__ = self.__cause__
        return error


def _what_evidence_shows(evidence: tuple[Mapping[str, Any], ...] | None) -> str:
    """The sentence that tells a person what to believe, and what to check."""
    if evidence is None:
        return (
            "A line was most likely bought and charged; check the account before "
            "buying again."
        )
    if not evidence:
        return (
            "GET /api/v2/lines/state lists no line that this purchase could have "
            "bought: most likely nothing was bought, but a provisioning failure "
            "charges without a line, so check the account's billing for a new "
            "subscription before buying again."
        )
    shown = [
        str(line.get("sendblue_number") or line.get("worker_id")) for line in evidence
    ]
    numbers = ", ".join(shown[:3]) + (
        f" and {len(shown) - 3} more" if shown[3:] else ""
    )
    return (
        f"GET /api/v2/lines/state lists {len(evidence)} line(s) that no recorded "
        f"purchase accounts for ({numbers}): one of them may be this purchase's; "
        "check the account before buying again."
    )


class DeclinedError(SendblueError):
    """The Provisioner declined to confirm a preview: nothing was bought.

    Its `approve` callback said no, or the purchases under the preview's
    key already met the key's total. The token was never sent; it expires
    by itself. `preview_token` is that token. When the callback raised
    instead of answering, its exception is the `__cause__` (a callback that
    fails declines, it never approves).
    """

    refused = True

    def __init__(self, message: str, *, preview_token: str) -> None:
        super().__init__(message)
        self.preview_token = preview_token


class MaxLinesReachedError(SendblueError):
    """The Provisioner's `max_lines` cap is used up: nothing was sent.

    `max_lines` is the cap. Purchases that may have charged (lines,
    `ProvisioningFailedError`, `OutcomeUnknownError`) and confirms in flight
    count against it; a confirm that certainly bought nothing does not.
    """

    account_level = True
    refused = True

    def __init__(self, message: str, *, max_lines: int) -> None:
        super().__init__(message)
        self.max_lines = max_lines


class JournalError(SendblueError):
    """The purchase journal cannot be opened, read or written.

    A corrupt or truncated file, a read-only one, a full disk, a lost
    database connection, a schema written by a newer version of
    sendblue-lines, or a journal bound to another account. `backend` is
    ``"sqlite"`` or ``"postgresql"``, `location` where the journal lives (a
    path, or a DSN with its password removed), `operation` what was being
    done. The driver's exception, if any, is the `__cause__`. `refused` is
    True when a rule of the journal refused the operation (a token already
    recorded, a final state changed): then it certainly wrote nothing; a
    failed store may have committed before it failed.

    Nothing here ever carries a credential: the API secret is never stored in
    a journal, and a DSN's password is redacted from every message.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        location: str,
        operation: str,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.location = location
        self.operation = operation
        self.refused = refused


def outcome_of(error: SendblueError | None) -> Outcome:
    """Say what a purchase that ended in `error` did to money (None: a line).

    ``"bought"``, ``"provisioning_failed"`` (a subscription without a line),
    ``"unknown"`` (an `OutcomeUnknownError`: most likely bought) or
    ``"not_bought"``. The `Provisioner` ends every purchase whose confirm may
    have charged in one of the two `charged` errors, so every other error of
    a purchase means that nothing was bought. The journal's entry states,
    the telemetry's outcome and `ProvisionOutcome.charged` all read it here.
    """
    if error is None:
        return "bought"
    if isinstance(error, ProvisioningFailedError):
        return "provisioning_failed"
    return "unknown" if error.charged else "not_bought"


def confirm_error(
    failure: BaseException, token: str, first_sent_at: datetime
) -> SendblueError:
    """The error a purchase ends in when confirming `token` failed with `failure`.

    One of ours that proves nothing was bought (`refused`) or that money
    moved (`charged`) stands; anything else, our own or from outside the
    hierarchy, is an `OutcomeUnknownError`: the confirm may have left. A
    foreign exception is named by its type only and never chained, since it
    may hold the request's headers.
    """
    if isinstance(failure, SendblueError) and (failure.refused or failure.charged):
        return failure
    unknown = OutcomeUnknownError.for_token(
        token, f"the confirm failed with {type(failure).__name__}",
        first_sent_at=first_sent_at, attempts=1,
    )  # fmt: skip
    if isinstance(failure, SendblueError):
        unknown.__cause__ = failure
    return unknown
