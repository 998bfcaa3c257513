"""The one place that talks to aiohttp: a single HTTP exchange, measured and capped.

`Transport.send` makes one request and returns a `Reply` (status, text and
parsed JSON, or why the body could not be read). It never follows a
redirect, always sends the auth headers, a JSON `Accept` and our
`User-Agent`, and bounds every phase with a timeout. A network failure
becomes a `TransportError` whose `sent` tells whether the request may have
reached the server. Deciding what a status means is left to `_status`, and
whether to try again to the callers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp
import attrs

from ._config import Credentials
from ._logging import HTTP, extra, get_logger
from ._version import __version__
from .errors import ConfigurationError, TransportError

logger = get_logger(HTTP)

USER_AGENT: Final = f"sendblue-lines/{__version__}"
#: The largest body we read; a larger one is refused, not buffered.
MAX_RESPONSE_BYTES: Final = 1024 * 1024


class _Unread:
    """The marker for a body that could not be parsed as JSON."""

    def __repr__(self) -> str:
        return "<unread>"


UNREAD: Final = _Unread()


@attrs.frozen(kw_only=True)
class Attempt:
    """What one HTTP attempt did, as handed to an `on_attempt` callback.

    `attempt` counts from 1 within one call; `status` is None when no answer
    came, and then `error` says why and `sent` whether the request may have
    reached the server. `elapsed` is in seconds. Never holds a header value.
    """

    method: str
    path: str
    attempt: int
    status: int | None
    elapsed: float
    error: str | None = None
    sent: bool = True


@attrs.frozen(kw_only=True)
class Reply:
    """An HTTP answer: status, body text, and its JSON or why it is unreadable."""

    status: int
    text: str
    data: Any
    problem: str | None = None
    location: str | None = None

    @property
    def readable(self) -> bool:
        """True when the body parsed as JSON."""
        return self.problem is None


AttemptHook = Callable[[Attempt], object]


class Transport:
    """An aiohttp session with our headers, timeouts, size cap and no redirects.

    The session is created lazily inside the running event loop and closed
    by `aclose` only if we created it; a caller's session is used as it is.
    """

    def __init__(
        self,
        *,
        base_url: str,
        credentials: Credentials,
        timeout: float,
        connect_timeout: float,
        session: aiohttp.ClientSession | None,
        on_attempt: AttemptHook | None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url
        self._credentials = credentials
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._on_attempt = on_attempt
        self._max_bytes = max_response_bytes
        # proxy=, trust_env=, trace_configs=: for the session we create only.
        self._session_options = dict(session_options or {})
        # `connect` covers waiting for a pooled connection and connecting: a
        # failure there certainly sent nothing. `sock_read` bounds each gap
        # in the answer, `total` the whole attempt (a slow drip included).
        # `connect` must fire before `total`: when both expire together the
        # total one wins, raising a plain TimeoutError that reads as "maybe
        # sent". Half the attempt, well clear of aiohttp's rounding of
        # timeouts above 5 s up to the next whole second, keeps them apart.
        #
        # `sock_read` is a cost we choose to pay: aiohttp re-arms it on every
        # chunk received, about 40 us of CPU per purchase in the zero-latency
        # overhead benchmark (1.03x plain aiohttp without it, 1.08x with it,
        # side by side). It names the phase that timed out, which a payments
        # log should say; against a real network the cost is invisible.
        self._timeout = aiohttp.ClientTimeout(
            total=timeout,
            connect=min(connect_timeout, timeout / 2),
            sock_read=timeout,
        )
        self._headers = {
            **credentials.headers(),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    @property
    def closed(self) -> bool:
        """True after `aclose`."""
        return self._closed

    def _session_now(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConfigurationError("this LinesClient is closed; create a new one")
        if self._session is not None and self._session.closed:
            # Only a caller's session can be closed under us; aiohttp would
            # raise a bare RuntimeError, outside our hierarchy.
            raise ConfigurationError(
                "the aiohttp session passed as session= is closed; nothing was sent"
            )
        if self._session is None:
            # Made here, not in __init__, so that a client built outside a
            # running loop (at import time, in a lifespan) binds to the loop
            # that first uses it.
            # enable_cleanup_closed only where aiohttp still needs it: on a
            # Python that fixed SSL transport cleanup (3.12.8+, 3.13.1+) it
            # warns, which fails apps and test suites that treat warnings
            # as errors.
            cleanup = bool(getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", False))
            self._session = aiohttp.ClientSession(
                **self._session_options,
                raise_for_status=False,
                connector=aiohttp.TCPConnector(
                    limit=100, enable_cleanup_closed=cleanup
                ),
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session if we opened it; idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    async def send(
        self, method: str, path: str, *, json_body: Any = None, attempt: int = 1
    ) -> Reply:
        """Make one request and read its answer, up to the size cap.

        Raises:
            TransportError: no answer; `sent` says whether it may have arrived.
            ConfigurationError: the client was closed.
        """
        session = self._session_now()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with session.request(
                method,
                self.base_url + path,
                json=json_body,
                headers=self._headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                reply = await self._read(response)
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ConnectionTimeoutError,
            aiohttp.ClientHttpProxyError,
        ) as exc:
            # Checked before the general case: these never wrote the request
            # (a proxy's refusal of CONNECT comes before the tunnel exists).
            raise self._failed(method, path, attempt, started, exc, sent=False) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self._failed(method, path, attempt, started, exc, sent=True) from exc
        elapsed = loop.time() - started
        logger.debug(
            "%s %s -> %s in %.3fs (attempt %d)",
            method, path, reply.status, elapsed, attempt,
            extra=extra("http_reply", status=reply.status, http_attempt=attempt),
        )  # fmt: skip
        if self._on_attempt is not None:  # no record to build for nobody
            self._report(
                Attempt(
                    method=method, path=path, attempt=attempt, status=reply.status,
                    elapsed=elapsed,
                )
            )  # fmt: skip
        return reply

    def _failed(
        self,
        method: str,
        path: str,
        attempt: int,
        started: float,
        exc: BaseException,
        *,
        sent: bool,
    ) -> TransportError:
        elapsed = asyncio.get_running_loop().time() - started
        reason = describe_failure(exc)
        logger.debug(
            "%s %s failed after %.3fs (attempt %d, %s): %s",
            method, path, elapsed, attempt,
            "may have been sent" if sent else "not sent", reason,
            extra=extra("http_failed", http_attempt=attempt, sent=sent),
        )  # fmt: skip
        self._report(
            Attempt(
                method=method, path=path, attempt=attempt, status=None,
                elapsed=elapsed, error=reason, sent=sent,
            )
        )  # fmt: skip
        where = (
            "the request may have reached the server" if sent else "nothing was sent"
        )
        return TransportError(
            f"{method} {path} failed: {reason} ({where})",
            sent=sent,
            method=method,
            path=path,
        )

    def _report(self, attempt: Attempt) -> None:
        if self._on_attempt is None:
            return
        try:
            self._on_attempt(attempt)
        except Exception:
            # An observer's bug must not change what a purchase does.
            logger.exception(
                "the on_attempt callback raised; ignored",
                extra=extra("callback_failed"),
            )

    async def _read(self, response: aiohttp.ClientResponse) -> Reply:
        status = response.status
        location = response.headers.get("Location")
        declared = response.content_length
        if declared is not None and declared > self._max_bytes:
            return _unread(
                status, "", f"body of {declared} bytes exceeds the cap", location
            )
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > self._max_bytes:
                    return _unread(
                        status,
                        b"".join(chunks).decode("utf-8", "replace"),
                        f"body exceeds the {self._max_bytes}-byte cap",
                        location,
                    )
                chunks.append(chunk)
        except aiohttp.ClientPayloadError:
            # The server answered (we have its status) but cut the body short:
            # an unreadable answer, not a network failure without one.
            return _unread(
                status,
                b"".join(chunks).decode("utf-8", "replace"),
                f"body was cut off after {size} bytes",
                location,
            )
        raw = b"".join(chunks)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _unread(
                status, raw.decode("utf-8", "replace"), "body is not UTF-8", location
            )
        if not text.strip():
            return _unread(status, text, "body is empty", location)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # RecursionError: JSON nested thousands deep is hostile, not data.
            return _unread(
                status, text, f"body is not JSON ({type(exc).__name__})", location
            )
        return Reply(status=status, text=text, data=data, location=location)


def _unread(status: int, text: str, problem: str, location: str | None) -> Reply:
    return Reply(
        status=status, text=text, data=UNREAD, problem=problem, location=location
    )


def describe_failure(exc: BaseException) -> str:
    """Say what a network failure was, without any header value."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect ({type(exc).__name__})"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "timed out waiting for the answer"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    return f"{type(exc).__name__}: {exc}"
