"""The one place that talks to aiohttp: a single HTTP exchange, measured and capped.

`Transport.send` makes one request and returns a `Reply` (status, text and
parsed JSON, or why the body could not be read). It never follows a
redirect, always sends the auth headers, a JSON `Accept` and our
`User-Agent`, and bounds every phase with a timeout. A network failure
becomes a `TransportError` whose `sent` tells whether the request may have
reached the server. Deciding what a status means is left to `_status`, and
whether to try again to the callers.

Two promises hold whoever built the session:

- What an answer means does not depend on the session. Every setting of a
  `ClientSession` that would change an answer is pinned per request where a
  request can override it (`_pinned_options`), and refused by
  `check_session` in the constructor where none can.
- No credential leaves in an error. aiohttp's exceptions carry the request's
  headers (`request_info`), so a `TransportError` is raised outside the
  `except` block, with a safe description, and the failure behind it is its
  `__cause__` only when nothing reachable from it holds the secret
  (`reaches`). The secret is redacted from every reply at the one place
  replies are made (`_reply`), so a server or proxy that echoes our headers
  cannot put it into an error.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
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
#: What replaces the secret wherever an answer repeats it.
REDACTED: Final = "[redacted]"
#: Secrets shorter than this are not redacted (no real API secret is).
_MIN_REDACTED_SECRET = 8
#: A trailing piece of the secret this long, where a body was cut, is redacted too.
_MIN_SECRET_PIECE = 4
#: The phases of an attempt after connecting, as a timeout names them.
_WAITING: Final = "waiting for the answer"
_READING: Final = "reading the answer"
#: Failures that certainly never wrote the request (a proxy's refusal of
#: CONNECT comes before the tunnel exists); any other may come after it left.
_NOT_SENT: Final = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ClientHttpProxyError,
)
#: Content encodings aiohttp decodes without optional packages.
_ACCEPT_ENCODING: Final = "gzip, deflate"

#: Default headers of a caller's session that would change what the server
#: answers or how the answer is framed; a request can override a header's
#: value but never remove it, so such a session is refused.
_FORBIDDEN_DEFAULT_HEADERS: Final = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "content-encoding",
        "content-type",
        "expect",
        "upgrade",
        "te",
        "host",
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    }
)


def _pinned_options() -> dict[str, Any]:
    """Per-request arguments for every setting that could change what an answer says.

    Redirects are never followed; the rest are aiohttp's own defaults (our
    own session has them already), so that a caller's session gives the
    answers the SDK's own session gives. A setting that changes how an
    answer is buffered but not what it says (`read_bufsize`) is left alone.
    Only the arguments the installed aiohttp accepts are passed
    (`middlewares` came in 3.12, for example).
    """
    wanted: dict[str, Any] = {
        "allow_redirects": False,
        "raise_for_status": False,
        "auto_decompress": True,
        "read_until_eof": True,
        "max_line_size": 8190,
        "max_field_size": 8190,
        "max_headers": 128,
        "middlewares": (),
    }
    accepted = inspect.signature(aiohttp.ClientSession._request).parameters
    return {name: value for name, value in wanted.items() if name in accepted}


#: Passed with every request of a caller's session, or of ours through a
#: proxy; otherwise our own session has them as its defaults already, and
#: only `allow_redirects` goes with each request.
_PINNED: Final = _pinned_options()


def check_session(session: object) -> aiohttp.ClientSession | None:
    """Accept a caller's session only if no setting of it can change an answer.

    Settings a request overrides (`raise_for_status`, timeouts, decompression,
    `json_serialize`, redirects, middlewares, header values and size limits)
    are fine, and so are those that change no answer (buffer sizes).
    Refused: a custom request or response class (they decide how a request
    is sent and an answer read) and default headers that change what the
    server answers (`Range`, conditional headers, framing headers).

    Raises:
        ConfigurationError: not an `aiohttp.ClientSession`, or one of the above.
    """
    if session is None:
        return None
    if not isinstance(session, aiohttp.ClientSession):
        raise ConfigurationError("session must be an aiohttp.ClientSession")
    for name, default in (
        ("_request_class", aiohttp.ClientRequest),
        ("_response_class", aiohttp.ClientResponse),
    ):
        if getattr(session, name, default) is not default:
            raise ConfigurationError(
                f"the session passed as session= has a custom {name[1:]}, which "
                "decides how requests are sent and answers read; a purchase's "
                "outcome must not depend on it: pass a session without one"
            )
    refused = sorted(
        {str(k).lower() for k in session.headers} & _FORBIDDEN_DEFAULT_HEADERS
    )
    if refused:
        raise ConfigurationError(
            "the session passed as session= has default headers that change "
            f"what the server answers ({', '.join(refused)}); a request cannot "
            "remove them: pass a session without them"
        )
    return session


def _loop_of(session: aiohttp.ClientSession) -> asyncio.AbstractEventLoop | None:
    # aiohttp keeps the session's loop privately; its public `loop` warns.
    loop = getattr(session, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


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
    """An HTTP answer: status, body text, and its JSON or why it is unreadable.

    `data` is the parsed JSON, None when `problem` says why the body could
    not be read. `date` is the server's `Date` header as sent (for expiry
    against the server's own clock), `location` its `Location` header (read
    for a 3xx only). Made only by `Transport`, with the secret redacted.
    """

    status: int
    text: str
    data: Any
    problem: str | None = None
    location: str | None = None
    date: str | None = None


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
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url
        # A secret too short to tell from chance ("s" in a test) is not
        # searched for: redacting it would mangle every answer.
        secret = credentials.secret
        self._secret = secret if len(secret) >= _MIN_REDACTED_SECRET else ""
        self._session = check_session(session)
        self._owns_session = session is None
        self._closed = False
        # Closes our own session when its event loop shuts down (see _watch).
        self._guard: AsyncGenerator[None, None] | None = None
        self._guarded: aiohttp.ClientSession | None = None
        self._on_attempt = on_attempt
        # proxy=, trust_env=, trace_configs=: for the session we create only.
        self._session_options = dict(session_options or {})
        # A failure within `connect` (a pooled connection, connecting)
        # certainly sent nothing; `total` bounds the whole attempt, and `send`
        # knows which phase a timeout cut. `connect` must fire first, or a
        # plain TimeoutError would read as "maybe sent": half the attempt keeps
        # them apart, clear of aiohttp's rounding of timeouts above 5 s.
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, connect=min(connect_timeout, timeout / 2)
        )
        self._headers = {
            **credentials.headers(),
            "Accept": "application/json",
            "Accept-Encoding": _ACCEPT_ENCODING,
            "User-Agent": USER_AGENT,
        }
        # Our own session carries our headers and timeout as its defaults,
        # aiohttp's own way, and its other settings are the pinned ones
        # already. A caller's session gets them with every request, where
        # they replace its own; so does our session through a proxy, since
        # aiohttp adds a session's default headers to a proxy's CONNECT.
        self._defaults = self._owns_session and not (
            self._session_options.get("proxy") or self._session_options.get("trust_env")
        )
        if self._defaults:
            self._options: dict[str, Any] = {"allow_redirects": False}
        else:
            self._options = {"headers": self._headers, "timeout": self._timeout}
            self._options.update(_PINNED)
        self._json_options = {
            **self._options,
            "headers": {
                **self._options.get("headers", {}),
                "Content-Type": "application/json",
            },
        }

    @property
    def closed(self) -> bool:
        """True after `aclose`."""
        return self._closed

    def _session_now(self) -> aiohttp.ClientSession:
        """The session to send with, bound to the running loop; or why not.

        Raises:
            ConfigurationError: the client is closed, or the caller's session
                is closed or belongs to another event loop; this request was
                not sent.
        """
        if self._closed:
            raise ConfigurationError(
                "this LinesClient is closed (this request was not sent); "
                "create a new one"
            )
        session = self._session
        if session is not None and not self._usable_here(session):
            # Our own session, left behind by a loop that has finished (a
            # second asyncio.run): let it go and open one in this loop.
            _abandon(session)
            session = None
        if session is None:
            # Made here, not in __init__, so that a client built outside a
            # running loop (at import time, in a lifespan) binds to the loop
            # that first uses it.
            session = self._session = self._new_session()
        return session

    def _usable_here(self, session: aiohttp.ClientSession) -> bool:
        """True when `session` can send from the running loop.

        False for our own session of an event loop that has finished.

        Raises:
            ConfigurationError: the caller's session is closed or belongs to
                another loop, or our own belongs to a loop still running.
        """
        bound = _loop_of(session)
        if bound is None or bound is asyncio.get_running_loop():
            if session.closed:
                # Only a caller's session can be closed under us; aiohttp would
                # raise a bare RuntimeError, outside our hierarchy.
                raise ConfigurationError(
                    "the aiohttp session passed as session= is closed "
                    "(this request was not sent)"
                )
            return True
        if not self._owns_session:
            state = "a closed event loop" if bound.is_closed() else "another event loop"
            raise ConfigurationError(
                f"the aiohttp session passed as session= belongs to {state}, "
                "not the one running this call (this request was not sent); "
                "create the session inside the loop that uses the client"
            )
        if bound.is_running():
            raise ConfigurationError(
                "this LinesClient is in use by another event loop that is "
                "still running (this request was not sent); give each "
                "event loop its own LinesClient"
            )
        return False

    def _new_session(self) -> aiohttp.ClientSession:
        """Our own session: aiohttp's defaults, and the session options given."""
        # enable_cleanup_closed only where aiohttp still needs it: on a Python
        # that fixed SSL transport cleanup (3.12.8+, 3.13.1+) it warns, which
        # fails apps and test suites that treat warnings as errors.
        cleanup = bool(getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", False))
        defaults: dict[str, Any] = (
            {"headers": self._headers, "timeout": self._timeout}
            if self._defaults
            else {}
        )
        return aiohttp.ClientSession(
            **defaults,
            **self._session_options,
            raise_for_status=False,
            connector=aiohttp.TCPConnector(limit=100, enable_cleanup_closed=cleanup),
        )

    async def _watch(self, session: aiohttp.ClientSession) -> None:
        """Close `session` when the loop it belongs to shuts down.

        asyncio.run (and anyio.run, and every asyncio.Runner) closes the async
        generators still open before it closes the loop: a client used in
        one `asyncio.run` and again in the next thus leaves no connection
        behind, and opens a new session in the new loop.
        """
        guard = _close_at_loop_end(session)
        await guard.asend(None)
        self._guard, self._guarded = guard, session

    async def aclose(self) -> None:
        """Close the session if we opened it; idempotent."""
        self._closed = True
        session, self._session = self._session, None
        guard, self._guard, self._guarded = self._guard, None, None
        if session is None or not self._owns_session:
            return
        bound = _loop_of(session)
        running = asyncio.get_running_loop()
        if bound is not None and bound is not running:
            # Opened by a loop that has finished: it cannot be awaited here.
            _abandon(session)
            return
        await session.close()
        if guard is not None:
            await guard.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        json_text: bytes | None = None,
        attempt: int = 1,
    ) -> Reply:
        """Make one request and read its answer, up to the size cap.

        `json_text` is the body, JSON already serialized by the client: a
        session's `json_serialize` cannot change it.

        Raises:
            TransportError: no answer; `sent` says whether it may have arrived.
            ConfigurationError: the client or the caller's session is closed,
                or bound to another event loop; this request was not sent.
        """
        session = self._session_now()
        if self._owns_session and self._guarded is not session:
            await self._watch(session)
        clock = asyncio.get_running_loop().time
        started = clock()
        failed: Exception | None = None
        phase = _WAITING
        try:
            async with session.request(
                method,
                self.base_url + path,
                data=json_text,
                **(self._options if json_text is None else self._json_options),
            ) as response:
                phase = _READING
                reply = await self._read(response)
        except Exception as exc:  # noqa: BLE001 - cancellation is not an Exception
            # Besides network errors and timeouts, aiohttp raises RuntimeError
            # or AttributeError when its session is closed under a request,
            # and a caller's trace hook may raise anything.
            failed = exc
        if failed is not None:
            # Raised here, outside the except blocks, so that an exception
            # that reaches the secret (an aiohttp error's request_info holds
            # our headers) is neither the __cause__ nor the __context__.
            error = self._failed(
                method, path, attempt, clock() - started, failed, phase
            )
            raise error from self._safe_cause(failed)
        if self._on_attempt is not None or logger.isEnabledFor(logging.DEBUG):
            self._record(
                Attempt(
                    method=method, path=path, attempt=attempt, status=reply.status,
                    elapsed=clock() - started,
                )
            )  # fmt: skip
        return reply

    def _failed(
        self,
        method: str,
        path: str,
        attempt: int,
        elapsed: float,
        exc: Exception,
        phase: str,
    ) -> TransportError:
        """Record a failed attempt; the `TransportError` to raise for it.

        Its `sent` is derived here, from the failure's type (see `_NOT_SENT`).
        """
        sent = not isinstance(exc, _NOT_SENT)
        reason = redact(describe_failure(exc, phase), self._secret)
        self._record(
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

    def _safe_cause(self, exc: BaseException) -> BaseException | None:
        """`exc` if nothing reachable from it holds the secret, else None."""
        if reaches(exc, self._secret):
            logger.debug(
                "the %s behind a failure holds the API secret; not chained",
                type(exc).__name__,
            )
            return None
        return exc

    def _record(self, done: Attempt) -> None:
        """Log one attempt and hand it to the `on_attempt` callback."""
        if done.status is not None:
            logger.debug(
                "%s %s -> %s in %.3fs (attempt %d)",
                done.method, done.path, done.status, done.elapsed, done.attempt,
                extra=extra(
                    "http_reply", status=done.status, http_attempt=done.attempt
                ),
            )  # fmt: skip
        else:
            logger.debug(
                "%s %s failed after %.3fs (attempt %d, %s): %s",
                done.method, done.path, done.elapsed, done.attempt,
                "may have been sent" if done.sent else "not sent", done.error,
                extra=extra("http_failed", http_attempt=done.attempt, sent=done.sent),
            )  # fmt: skip
        if self._on_attempt is None:
            return
        try:
            self._on_attempt(done)
        except Exception:
            # An observer's bug must not change what a purchase does.
            logger.exception(
                "the on_attempt callback raised; ignored",
                extra=extra("callback_failed"),
            )

    async def _read(self, response: aiohttp.ClientResponse) -> Reply:
        status = response.status
        headers = response.headers
        # Only a redirect's Location is ever shown (see `_status`).
        location = headers.get("Location") if 300 <= status < 400 else None
        raw, cut_short = await self._body(response)
        problem = cut_short
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # Shown as far as it reads. A cut body may just end inside a
            # character; a whole one that is not UTF-8 is unreadable.
            text = raw.decode("utf-8", "replace")
            problem = problem or "body is not UTF-8"
        data, problem = (None, problem) if problem else _parse(text)
        return self._reply(
            status,
            text,
            problem,
            location,
            data=data,
            cut=cut_short is not None,
            date=headers.get("Date"),
        )

    async def _body(self, response: aiohttp.ClientResponse) -> tuple[bytes, str | None]:
        """The body's bytes up to the cap, and why they are not all of it, if so."""
        declared = response.content_length
        if declared is not None and declared > MAX_RESPONSE_BYTES:
            return b"", f"body of {declared} bytes exceeds the cap"
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    return (
                        b"".join(chunks),
                        f"body exceeds the {MAX_RESPONSE_BYTES}-byte cap",
                    )
                chunks.append(chunk)
        except aiohttp.ClientPayloadError:
            # The server answered (we have its status) but cut the body short:
            # an unreadable answer, not a network failure without one.
            return b"".join(chunks), f"body was cut off after {size} bytes"
        return b"".join(chunks), None

    def _reply(
        self,
        status: int,
        text: str,
        problem: str | None,
        location: str | None,
        *,
        data: Any,
        cut: bool,
        date: str | None,
    ) -> Reply:
        """The one place replies are made: the secret is redacted from all of it.

        A server or proxy may echo our request headers into its answer (an
        error page, a JSON message, even a 2xx body); the client knows its
        secret, so it keeps no copy of it. Redacted: the text (and a piece of
        the secret where a cut body ends), every string of the parsed JSON
        (which catches the secret written with JSON escapes), `Location` and
        `Date`.
        """
        secret = self._secret
        clean = redact(text, secret, cut=cut)
        # Only a text holding the secret or a JSON escape can carry it in data.
        if problem is None and secret and (secret in text or "\\" in text):
            redacted = _redact_data(data, secret)
            if redacted != data and not _parses_to(clean, redacted):
                # The JSON spelled the secret with escapes: the text cannot be
                # redacted piecewise, so it becomes the redacted data.
                clean = json.dumps(redacted, ensure_ascii=False)
            data = redacted
        return Reply(
            status=status,
            text=clean,
            data=data,
            problem=problem,
            location=None if location is None else redact(location, secret),
            date=None if date is None else redact(date, secret),
        )


#: How far `reaches` looks: deep enough for aiohttp's exceptions and their chains.
_REACH_DEPTH = 8
_REACH_NODES = 5000


def reaches(root: object, secret: str) -> bool:
    """True when `secret` is in any string or bytes reachable from `root`.

    Follows what an error reporter may show: exception args, `__cause__`,
    `__context__`, `__notes__`, attributes (`__dict__` and `__slots__`),
    mappings (keys and values, multidicts included) and sequences. Not
    tracebacks: their frames reach every live object. Bounded in depth and
    in objects seen; an unexplored rest counts as reaching it (refuse when
    unsure).
    """
    if not secret:
        return False
    wanted = secret.encode()
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if secret in node:
                return True
            continue
        if isinstance(node, (bytes, bytearray, memoryview)):
            if wanted in bytes(node):
                return True
            continue
        if node is None or isinstance(node, (bool, int, float)) or id(node) in seen:
            continue
        if depth > _REACH_DEPTH or len(seen) > _REACH_NODES:
            return True
        seen.add(id(node))
        children: list[object] = []
        if isinstance(node, BaseException):
            children += [node.args, node.__cause__, node.__context__]
            children.append(getattr(node, "__notes__", None))
        if isinstance(node, Mapping):
            for key, value in list(node.items()):
                children += [key, value]
        elif isinstance(node, (list, tuple, set, frozenset)):
            children += list(node)
        elif not isinstance(node, type):
            children += list(getattr(node, "__dict__", {}).values())
            for cls in type(node).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if isinstance(name, str):
                        children.append(getattr(node, name, None))
        stack.extend((child, depth + 1) for child in children)
    return False


def _parse(text: str) -> tuple[Any, str | None]:
    """The JSON of a whole body's text, or None and why it cannot be read."""
    if not text or text.isspace():
        return None, "body is empty"
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        # RecursionError: JSON nested thousands deep is hostile, not data.
        return None, f"body is not JSON ({type(exc).__name__})"


def _parses_to(text: str, data: Any) -> bool:
    try:
        return bool(json.loads(text) == data)
    except (ValueError, RecursionError):
        return False


def redact(text: str, secret: str, *, cut: bool = False) -> str:
    """`text` with every occurrence of `secret` replaced by `REDACTED`.

    With `cut`, a trailing start of the secret (where a body was cut short)
    is redacted too.
    """
    if not secret:
        return text
    if secret in text:
        text = text.replace(secret, REDACTED)
    if cut:
        for size in range(len(secret) - 1, _MIN_SECRET_PIECE - 1, -1):
            if text.endswith(secret[:size]):
                return text[:-size] + REDACTED
    return text


def _redact_data(data: Any, secret: str, depth: int = 0) -> Any:
    """Parsed JSON with the secret redacted from every string, keys included."""
    if isinstance(data, str):
        return redact(data, secret)
    if depth > 100:
        # Deeper than any answer of the contract: judged as a whole.
        try:
            found = secret in json.dumps(data)
        except (ValueError, RecursionError):
            found = True
        return REDACTED if found else data
    if isinstance(data, Mapping):
        return {
            redact(str(k), secret): _redact_data(v, secret, depth + 1)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_redact_data(v, secret, depth + 1) for v in data]
    return data


async def _close_at_loop_end(
    session: aiohttp.ClientSession,
) -> AsyncGenerator[None, None]:
    """Wait at its `yield` until closed: then close `session` (see `_watch`)."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


def _abandon(session: aiohttp.ClientSession) -> None:
    """Let go of our session whose event loop has finished, without awaiting it.

    Its loop cannot run any more, so its connections cannot be closed the
    usual way; the session is marked closed so that it does not warn, and
    its connector is closed as far as a finished loop allows.
    """
    connector = session.connector
    session.detach()
    closer = getattr(connector, "_close", None)
    if callable(closer):
        try:
            closer()
        except RuntimeError:  # the loop is closed: nothing more can be done
            logger.debug("the session of a finished event loop was dropped")


def describe_failure(exc: BaseException, phase: str) -> str:
    """Say what a network failure was, without any header value.

    `phase` is where the attempt was when it failed: `_WAITING` (sending, or
    waiting for the answer's head) or `_READING` (reading its body).
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect ({type(exc).__name__})"
    if isinstance(exc, asyncio.TimeoutError):
        # A caller's session may still time each read (sock_read) itself.
        return f"timed out {phase}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    return f"{type(exc).__name__}: {exc}"
