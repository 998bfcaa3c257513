"""`LinesClient`: one typed async method per provisioning endpoint.

The client knows HTTP and the endpoint rules of the contract: the limits and
preview calls have no side effect and are retried on transient failures;
confirm moves money, so it follows the spec's client rules itself, since
only it knows whether a send was unclear.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Final

import aiohttp
import anyio

from . import _clock, _logging, _status, _telemetry
from ._config import (
    check_callable,
    check_count,
    check_instance,
    check_seconds,
    resolve_base_url,
    resolve_credentials,
)
from ._logging import extra
from ._retry import MAX_ATTEMPTS, RetryPolicy
from ._session_options import session_options
from ._transport import AttemptHook, Reply, Transport
from .errors import (
    APIError,
    ConfigurationError,
    MalformedResponseError,
    OutcomeUnknownError,
    ProvisioningFailedError,
    SendblueError,
    ServerError,
    TransportError,
    short_token,
)
from .models import (
    LinesState,
    Preview,
    ProvisionedLine,
    ProvisioningLimits,
    mark_received,
)

logger = _logging.get_logger(_logging.HTTP)

LIMITS_PATH: Final = "/accounts/limits"
PREVIEW_PATH: Final = "/accounts/lines/provision-preview"
CONFIRM_PATH: Final = "/accounts/lines/provision-confirm"
LINES_STATE_PATH: Final = "/api/v2/lines/state"
#: Slack on top of a confirm's own worst case before its answer counts as lost.
_CONFIRM_SLACK_SECONDS = 1.0


class LinesClient:
    """An async client for Sendblue's line-provisioning endpoints.

    Use it as an async context manager, or call `aclose()` when done. The
    configuration is checked by the constructor: credentials default to
    `SENDBLUE_API_KEY_ID` / `SENDBLUE_API_SECRET_KEY` (or the official SDK's
    `SENDBLUE_API_API_KEY` / `SENDBLUE_API_API_SECRET`), the base URL to
    `SENDBLUE_BASE_URL`, the official SDK's `SENDBLUE_API_BASE_URL` or
    `https://api.sendblue.com`.

    `timeout` bounds each HTTP attempt (seconds), `connect_timeout` its
    connecting phase (waiting for a pooled connection included; at most half
    of `timeout`, so that a failure to connect is always known to have sent
    nothing). `retry` governs `get_limits()` and `preview()`;
    `confirm_attempts` bounds how many times `confirm()` sends one token.
    `session` is a caller's `aiohttp.ClientSession`, used and never closed.
    `on_attempt` is called (synchronously) with an `Attempt` record after
    every HTTP attempt.

    `proxy` (an http(s) URL, which may carry the proxy's own user and
    password), `trust_env` (read `HTTPS_PROXY` / `NO_PROXY` and `~/.netrc`,
    as aiohttp does) and `trace_configs` (aiohttp `TraceConfig`s, such as
    OpenTelemetry's) configure the session the client creates; with
    `session=` they are refused, since that session is the caller's to
    configure. Through a proxy the https base URL is a CONNECT tunnel: the
    proxy never sees the credentials. `SENDBLUE_LINES_LOG` (or
    `SENDBLUE_API_LOG`) set to debug, info or warning makes the first client
    install a stderr log handler when the application has none.

    Raises:
        ConfigurationError: missing or malformed credentials, a base URL
            that is not https (http only for loopback), bad option values
            (timeouts that are not finite seconds above 0 and at most a day,
            `confirm_attempts` not an int from 1 to 5, `on_attempt` not
            callable), a `session` with a setting that no request can
            override and that would change what an answer means, a proxy
            for a plain-http base URL, session options with `session=`, an
            unknown level in `SENDBLUE_LINES_LOG`.
    """

    def __init__(
        self,
        api_key_id: str | None = None,
        api_secret_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        confirm_attempts: int = 3,
        on_attempt: AttemptHook | None = None,
        proxy: str | None = None,
        trust_env: bool = False,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    ) -> None:
        _logging.configure_from_env()
        credentials = resolve_credentials(api_key_id, api_secret_key)
        url = resolve_base_url(base_url)
        # Checked here, not at the first request: a "30", None or inf would
        # otherwise fail later, outside the error hierarchy, or never time out.
        seconds = check_seconds(timeout, "timeout")
        connect_seconds = check_seconds(connect_timeout, "connect_timeout")
        attempts = check_count(
            confirm_attempts, "confirm_attempts", low=1, high=MAX_ATTEMPTS
        )
        check_instance(retry, RetryPolicy, "retry")
        check_callable(on_attempt, "on_attempt")
        options = session_options(
            proxy=proxy, trust_env=trust_env, trace_configs=trace_configs,
            session=session, base_url=url,
        )  # fmt: skip
        self._key_id = credentials.key_id
        self.timeout = seconds
        self.retry = retry if retry is not None else RetryPolicy()
        self.confirm_attempts = attempts
        # The Transport checks a caller's session (type, and settings that no
        # per-request argument can override).
        self._transport = Transport(
            base_url=url,
            credentials=credentials,
            timeout=seconds,
            connect_timeout=connect_seconds,
            session=session,
            on_attempt=on_attempt,
            session_options=options,
        )

    @property
    def confirm_deadline(self) -> float:
        """The worst case of one `confirm()` call, in seconds.

        Every send timing out, with the longest backoff between them, plus a
        second of slack: past it, a confirm's answer will not come.
        """
        attempts = self.confirm_attempts
        return (
            self.timeout * attempts
            + self.retry.max_delay * (attempts - 1)
            + _CONFIRM_SLACK_SECONDS
        )

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._transport.base_url

    @property
    def api_key_id(self) -> str:
        """The API key id in use (not a secret; the secret is never exposed)."""
        return self._key_id

    @property
    def closed(self) -> bool:
        """True once `aclose()` has run."""
        return self._transport.closed

    def __repr__(self) -> str:
        return f"LinesClient(base_url={self.base_url!r}, api_key_id={self._key_id!r})"

    async def __aenter__(self) -> LinesClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session if the client opened it. Safe to call twice."""
        # Shielded so that a caller cancelled by anyio still releases its
        # connections (a native asyncio cancel breaks through any shield).
        with anyio.CancelScope(shield=True):
            await self._transport.aclose()

    async def get_limits(self) -> ProvisioningLimits:
        """Read the account's rolling daily and monthly provisioning limits.

        An answer of a shape we do not know gives "unknown" limits (both
        windows None), never an error. Transient failures are retried.

        Raises:
            AuthenticationError: bad credentials (401).
            APIError: any other error answer (a subclass where one fits).
            MalformedResponseError: the body is not JSON.
            TransportError: the network failed on every attempt.
        """
        reply = await self._safe_call("GET", LIMITS_PATH)
        return _status.read(reply, LIMITS_PATH, ProvisioningLimits)

    async def get_lines_state(self) -> LinesState | None:
        """List the lines the account holds now (`GET /api/v2/lines/state`).

        The one documented way to look for a line whose purchase answer was
        lost; what a listing can and cannot prove is on `LinesState`. Answers
        None when the endpoint is not offered (404): carry on without
        evidence. Charges nothing; transient failures are retried.

        Raises:
            AuthenticationError: bad credentials (401).
            APIError: any other error answer (a subclass where one fits).
            MalformedResponseError: the body is not JSON, or has no `data` list.
            TransportError: the network failed on every attempt.
        """
        try:
            reply = await self._safe_call("GET", LINES_STATE_PATH)
        except APIError as exc:
            if exc.status == 404:
                logger.info("GET %s: not offered here (404)", LINES_STATE_PATH)
                return None
            raise
        return _status.read(reply, LINES_STATE_PATH, LinesState)

    async def preview(self) -> Preview:
        """Check eligibility and availability, and get a single-use token.

        Charges nothing. Transient failures are retried. The Preview knows
        how long the server granted (its `expires_at` against its own `Date`
        header), so `Preview.expired()` holds whatever our wall clock says.

        Raises:
            AuthenticationError, PermissionDeniedError, NoCardOnFileError: the
                account cannot buy lines this way (401, 403, 402).
            DailyLimitReachedError, MonthlyLimitReachedError: a limit is reached.
            NoLinesAvailableError: no line can be had right now (503).
            MalformedResponseError: the answer is not a valid preview.
            TransportError, ServerError: the failure outlasted the retries.
        """
        reply = await self._safe_call("POST", PREVIEW_PATH)
        arrived, local_now = _clock.monotonic(), _clock.now()
        preview = _status.read(reply, PREVIEW_PATH, Preview)
        return mark_received(
            preview, server_date=reply.date, arrived=arrived, local_now=local_now
        )

    async def _safe_call(self, method: str, path: str) -> Reply:
        """Call a side-effect-free endpoint, retrying transient failures."""
        attempt = 1
        while True:
            error: SendblueError
            try:
                reply = await self._transport.send(method, path, attempt=attempt)
            except TransportError as exc:
                error = exc
            else:
                if _status.is_success(reply):
                    return reply
                error = _status.error_for(reply, path)
            if attempt >= self.retry.attempts or not error.transient:
                raise error
            delay = self.retry.delay(attempt)
            logger.info(
                "%s %s: %s; trying again in %.2fs (attempt %d of %d)",
                method, path, error, delay, attempt + 1, self.retry.attempts,
                extra=extra("retry", status=getattr(error, "status", None)),
            )  # fmt: skip
            await asyncio.sleep(delay)
            attempt += 1

    async def confirm(self, preview: Preview | str) -> ProvisionedLine:
        """Spend a preview token: charge the card on file and get the new line.

        Follows the spec's client rules. A send that certainly never left is
        sent again as it is. A send with no clear answer (timeout, connection
        lost after writing, a 5xx other than the spec's own, a redirect, which
        is never followed) is sent again with the **same** token while it is
        valid, which can never buy a second line. A `TokenExpiredError` from
        here therefore always means that nothing was bought.

        Cancelling this call while a send is in flight loses its answer; the
        `Provisioner` shields its confirms against that.

        Raises:
            OutcomeUnknownError: the token was sent and what happened could
                not be learned (most likely a line was bought): a 410 or any
                other non-2xx after an unclear send, unclear sends until the
                attempts or the token ran out, or a 2xx with an unreadable body.
            ProvisioningFailedError: a subscription exists but no line (500
                `provisioning_failed`); never resent.
            TokenExpiredError: the token had expired or was used; nothing bought.
            APIError: the server refused and nothing was bought: a
                `BadRequestError`, `AuthenticationError`, `NoCardOnFileError`,
                `PermissionDeniedError`, `RateLimitError` or
                `NoLinesAvailableError`.
            TransportError: every send certainly failed to leave (`sent` is
                False); nothing bought.
            ConfigurationError: the client (or the caller's session) was
                closed, or belongs to another event loop, before the first
                send; nothing was sent. Closed after a send that may have
                arrived, it is an `OutcomeUnknownError`.
        """
        token: object = preview.token if isinstance(preview, Preview) else preview
        if not isinstance(token, str) or not token.strip():
            raise ConfigurationError("confirm() needs a Preview or a non-empty token")
        run = _ConfirmRun(
            self, token, preview if isinstance(preview, Preview) else None
        )
        with _telemetry.confirming(token):
            return await run.run()


class _ConfirmRun:
    """One confirm of one token, with its resends: the spec's client rules."""

    def __init__(
        self, client: LinesClient, token: str, preview: Preview | None
    ) -> None:
        self.client = client
        self.token = token
        # Serialized here, once for every send of the token: a caller's
        # session's `json_serialize` cannot change it.
        self.body = json.dumps({"preview_token": token}).encode()
        self.preview = preview  # None for a bare token: no expiry known
        self.sends = 0  # sends that may have reached the server
        self.first_sent_at: datetime | None = None
        self.unclear: str | None = None  # why an earlier send left us unsure

    async def run(self) -> ProvisionedLine:
        limit = self.client.confirm_attempts
        for attempt in range(1, limit + 1):
            if attempt > 1:
                await asyncio.sleep(self.client.retry.delay(attempt - 1))
            now = _clock.now()
            try:
                reply = await self.client._transport.send(
                    "POST", CONFIRM_PATH, json_text=self.body,
                    attempt=attempt,
                )  # fmt: skip
            except ConfigurationError as exc:
                # The client or the caller's session was closed (an app
                # shutting down), or is bound to another loop: this send never
                # left. It proves nothing about an earlier send that may have.
                if self.unclear is None:
                    raise
                raise self._unknown(
                    f"{self.unclear}; then the same token could not be sent again "
                    f"({exc.message})"
                ) from None
            except TransportError as exc:
                if not exc.sent:
                    if attempt == limit and self.unclear:
                        raise self._unknown(self.unclear) from exc
                    if attempt == limit:
                        raise
                    logger.info(
                        "confirm was not sent (%s); sending it again", exc,
                        extra=extra("confirm_not_sent"),
                    )  # fmt: skip
                    continue
                self._sent(now)
                self._became_unclear(exc.message)
                if not self._may_resend(attempt, limit):
                    raise self._unknown(self.unclear or exc.message) from exc
                continue
            self._sent(now)
            outcome = self._judge(reply)
            if isinstance(outcome, ProvisionedLine):
                return outcome
            if outcome is not None:
                raise outcome
            if not self._may_resend(attempt, limit):
                raise self._unknown(self.unclear or "no clear answer", reply)
        raise AssertionError(
            "unreachable: the loop returns or raises"
        )  # pragma: no cover

    def _sent(self, when: datetime) -> None:
        self.sends += 1
        if self.first_sent_at is None:
            self.first_sent_at = when

    def _became_unclear(self, why: str) -> None:
        self.unclear = why if self.unclear is None else f"{self.unclear}; then {why}"

    def _may_resend(self, attempt: int, limit: int) -> bool:
        if attempt >= limit:
            return False
        # Judged on the validity the server granted, not on our wall clock:
        # a skewed clock must not turn a resendable token into an unknown.
        if self.preview is not None and self.preview.expired():
            return False
        logger.warning(
            "confirm of token %s had no clear answer (%s); sending the same token "
            "again, which cannot buy a second line",
            short_token(self.token), self.unclear,
            extra=extra("confirm_resend"),
        )  # fmt: skip
        return True

    def _judge(self, reply: Reply) -> ProvisionedLine | SendblueError | None:
        """A line, an error to raise, or None when the answer was unclear."""
        if _status.is_success(reply):
            try:
                return _status.read(reply, CONFIRM_PATH, ProvisionedLine)
            except MalformedResponseError as exc:
                # A 2xx means the server took the money; only the number is lost.
                unknown = self._unknown(
                    f"HTTP {reply.status} answer unreadable ({exc.message})", reply
                )
                unknown.__cause__ = exc
                return unknown
            except Exception as exc:  # noqa: BLE001 - any failure here is after a 2xx
                # Whatever fails while reading a 2xx, the money moved.
                return self._unknown(
                    f"HTTP {reply.status} answer could not be read "
                    f"({type(exc).__name__})",
                    reply,
                )
        error = _status.error_for(reply, CONFIRM_PATH)
        if isinstance(error, ProvisioningFailedError):
            return error
        if isinstance(error, ServerError):
            # A proxy's 502/504, or a server that broke mid-purchase. A 3xx
            # (never followed, filed as a ServerError) may just as well come
            # after the purchase, as in post/redirect/get: it cannot tell us
            # nothing was bought. The contract's own 503 is a refusal.
            self._became_unclear(f"HTTP {reply.status} ({error.message})")
            return None
        code = error.code
        if self.unclear is not None:
            # After an unclear send, a refusal of the resend may only mean
            # that the first send went through (token spent, limit used).
            return self._unknown(
                f"{self.unclear}; then the same token was refused with "
                f"HTTP {reply.status}{' ' + code if code else ''}",
                reply,
            )
        return error

    def _unknown(self, reason: str, reply: Reply | None = None) -> OutcomeUnknownError:
        first = self.first_sent_at or _clock.now()
        logger.warning(
            "OUTCOME UNKNOWN for token %s (first sent %s, %d send(s)): %s. A line was "
            "most likely bought; check the account before buying again.",
            short_token(self.token), first.isoformat(), self.sends, reason,
            extra=extra(
                "outcome_unknown", outcome="unknown",
                status=reply.status if reply is not None else None,
            ),
        )  # fmt: skip
        return OutcomeUnknownError.for_token(
            self.token,
            reason,
            first_sent_at=first,
            attempts=self.sends,
            status=reply.status if reply is not None else None,
            raw=reply.text if reply is not None else None,
        )
