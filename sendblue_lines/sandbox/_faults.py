"""Faults: what the sandbox does instead of (or after) answering normally.

A `Fault` is queued for the next N requests of one endpoint. Unless
said otherwise, a fault replaces the request's processing entirely: nothing is
checked, nothing is spent, nothing is recorded in the ledger. With
``after_commit=True`` the request is processed first (a confirm buys its line
and spends its token) and only then is the real answer replaced.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, get_args

import attrs
from aiohttp import web
from multidict import CIMultiDict

__all__ = [
    "ENDPOINTS",
    "Endpoint",
    "Fault",
    "FaultQueue",
    "ReplyContext",
    "drop_connection",
]

Endpoint = Literal["limits", "preview", "confirm", "lines_state"]
ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)

HANG_LIMIT = 120.0
"""The longest a hanging request waits before the sandbox drops it anyway."""

_MALFORMED_JSON = b'{"status": "OK", "phone_number": "+1415'
_HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sendblue</title></head>"
    "<body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>\n"
)
_PROXY_502_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@attrs.frozen
class ReplyContext:
    """What a fault's reply can use: the request and the answer it replaces."""

    request: web.Request
    body: Any
    """The JSON body the sandbox would have answered, or None if unprocessed."""
    pause: Callable[[float], Awaitable[bool]]
    """Sleep up to N seconds; False if the sandbox started closing meanwhile."""


Reply = Callable[[ReplyContext], Awaitable[web.StreamResponse]]


def _check_status(status: int) -> int:
    if not 100 <= status <= 999:
        msg = f"an HTTP status is a number from 100 to 999, got {status}"
        raise ValueError(msg)
    return status


def _not_negative(what: str, value: float) -> float:
    if value < 0:
        msg = f"{what} cannot be negative, got {value}"
        raise ValueError(msg)
    return float(value)


def _encode(body: object, content_type: str | None) -> tuple[bytes, str]:
    if body is None:
        return b"", content_type or "application/octet-stream"
    if isinstance(body, bytes):
        return body, content_type or "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), content_type or "text/plain; charset=utf-8"
    return json.dumps(body).encode(), content_type or "application/json"


def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the request's connection without an answer.

    The client sees the connection end (aiohttp raises
    ``ServerDisconnectedError``); the response returned is never written.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


async def _drop(context: ReplyContext) -> web.StreamResponse:
    return drop_connection(context.request)


def _static(
    status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None
) -> Reply:
    all_headers = CIMultiDict(headers or {})
    all_headers["Content-Type"] = content_type

    async def reply(context: ReplyContext) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=all_headers)

    return reply


@attrs.frozen
class Fault:
    """One misbehaviour of the sandbox, for one request.

    Build faults with the class methods below and queue them with
    ``sandbox.inject(endpoint, fault, times=N)``. ``kind`` names the fault in
    the request log.
    """

    kind: str
    after_commit: bool = False
    delay_seconds: float = 0.0
    fails_provisioning: bool = attrs.field(default=False, repr=False)
    reply: Reply | None = attrs.field(default=None, repr=False, eq=False)

    # -- any answer -----------------------------------------------------

    @classmethod
    def respond(
        cls,
        status: int,
        body: object = None,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        after_commit: bool = False,
    ) -> Fault:
        """Answer ``status`` with ``body``, whatever the request was.

        A ``dict`` or ``list`` body is sent as JSON, a ``str`` as UTF-8 text,
        ``bytes`` as they are, ``None`` as an empty body. The content type is
        ``content_type`` if given, else a ``Content-Type`` in ``headers``, else
        the one that goes with the body.

        Raises:
            ValueError: ``status`` is not a number from 100 to 999.
        """
        given = CIMultiDict(headers or {})
        payload, kind = _encode(body, content_type or given.get("Content-Type"))
        return cls(
            kind="respond",
            after_commit=after_commit,
            reply=_static(_check_status(status), payload, kind, headers),
        )

    @classmethod
    def raw(
        cls,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        *,
        after_commit: bool = False,
    ) -> Fault:
        """Answer ``status`` with exactly these bytes (non-UTF-8, deep nesting...).

        Raises:
            ValueError: ``status`` is not a number from 100 to 999.
        """
        return cls(
            kind="raw",
            after_commit=after_commit,
            reply=_static(_check_status(status), bytes(body), content_type, None),
        )

    # -- money moved ----------------------------------------------------

    @classmethod
    def provisioning_failed(cls) -> Fault:
        """Make a confirm create the subscription but fail to provision the line.

        The confirm is processed as usual (token spent, every check made); if
        it would have bought a line, a charge with outcome
        ``"provisioning_failed"`` and no phone number goes in the ledger, and
        the answer is 500 ``provisioning_failed``. Confirm only.
        """
        return cls(kind="provisioning_failed", fails_provisioning=True)

    # -- lost connections -------------------------------------------------

    @classmethod
    def drop_before(cls) -> Fault:
        """Close the connection without processing the request or answering."""
        return cls(kind="drop_before", reply=_drop)

    @classmethod
    def drop_after_commit(cls) -> Fault:
        """Process the request (a confirm buys its line), then close the connection."""
        return cls(kind="drop_after_commit", after_commit=True, reply=_drop)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds``, then process and answer as usual.

        The purchase may well commit after the client gave up: aiohttp keeps
        running a handler after its client went away, and so does the real
        server. If the sandbox closes during the wait, the request is dropped
        unprocessed.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        return cls(kind="delay", delay_seconds=_not_negative("a delay", seconds))

    @classmethod
    def hang(cls, *, after_commit: bool = False, seconds: float = HANG_LIMIT) -> Fault:
        """Never answer: hold the connection, then drop it without an answer.

        The connection is dropped when the sandbox closes, or after
        ``seconds`` (two minutes at most by default, so a test that forgets
        to close the sandbox still ends). A short ``seconds`` lets a test
        wait for the sandbox to be idle while the client has long given up.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        _not_negative("a hang", seconds)

        async def reply(context: ReplyContext) -> web.StreamResponse:
            await context.pause(seconds)
            return drop_connection(context.request)

        return cls(kind="hang", after_commit=after_commit, reply=reply)

    # -- bodies a client cannot use ----------------------------------------

    @classmethod
    def malformed(cls, *, after_commit: bool = False) -> Fault:
        """Answer 200 ``application/json`` with a body that is not valid JSON."""
        return cls(
            kind="malformed",
            after_commit=after_commit,
            reply=_static(200, _MALFORMED_JSON, "application/json", None),
        )

    @classmethod
    def html(cls, status: int = 200, *, after_commit: bool = False) -> Fault:
        """Answer ``status`` with an HTML page (``text/html``).

        Raises:
            ValueError: ``status`` is not a number from 100 to 999.
        """
        return cls(
            kind="html",
            after_commit=after_commit,
            reply=_static(
                _check_status(status),
                _HTML_PAGE.encode(),
                "text/html; charset=utf-8",
                None,
            ),
        )

    @classmethod
    def proxy_502(cls, *, after_commit: bool = False) -> Fault:
        """Answer 502 with a proxy's HTML error page, as nginx would."""
        return cls(
            kind="proxy_502",
            after_commit=after_commit,
            reply=_static(
                502, _PROXY_502_PAGE.encode(), "text/html; charset=utf-8", None
            ),
        )

    # -- hostile servers ---------------------------------------------------

    @classmethod
    def redirect(
        cls, location: str, status: int = 307, *, after_commit: bool = False
    ) -> Fault:
        """Answer a redirect to ``location`` (a client must never follow it).

        Raises:
            ValueError: ``status`` is not a 3xx status.
        """
        if not 300 <= status <= 399:
            msg = f"a redirect needs a 3xx status, got {status}"
            raise ValueError(msg)
        return cls(
            kind="redirect",
            after_commit=after_commit,
            reply=_static(status, b"", "text/plain", {"Location": location}),
        )

    @classmethod
    def oversized(
        cls, size_bytes: int = 2 * 1024 * 1024, *, after_commit: bool = False
    ) -> Fault:
        """Answer 200 with valid JSON of at least ``size_bytes`` bytes.

        The body is the answer the sandbox would have given (or ``{"status":
        "OK"}`` when unprocessed) with a long ``padding`` field added.

        Raises:
            ValueError: ``size_bytes`` is negative.
        """
        _not_negative("a size", size_bytes)

        async def reply(context: ReplyContext) -> web.StreamResponse:
            base = context.body if isinstance(context.body, dict) else {}
            body = {"status": "OK", **base, "padding": "x" * size_bytes}
            return web.json_response(body)

        return cls(kind="oversized", after_commit=after_commit, reply=reply)

    @classmethod
    def drip(
        cls,
        body: object,
        chunk_size: int = 1,
        interval: float = 0.5,
        *,
        status: int = 200,
        content_type: str | None = None,
        after_commit: bool = False,
    ) -> Fault:
        """Send ``body`` slowly: ``chunk_size`` bytes every ``interval`` seconds.

        The headers (with the full ``Content-Length``) go out at once; ``body``
        is encoded as `respond` does. The drip stops if the client goes
        away or the sandbox closes.

        Raises:
            ValueError: ``chunk_size`` is below 1, ``interval`` is negative or
                ``status`` is not a number from 100 to 999.
        """
        if chunk_size < 1 or interval < 0:
            msg = f"need chunk_size >= 1, interval >= 0; got {chunk_size}, {interval}"
            raise ValueError(msg)
        payload, kind = _encode(body, content_type)
        _check_status(status)

        async def reply(context: ReplyContext) -> web.StreamResponse:
            response = web.StreamResponse(status=status)
            response.content_length = len(payload)
            response.headers["Content-Type"] = kind
            await response.prepare(context.request)
            for start in range(0, len(payload), chunk_size):
                if start and not await context.pause(interval):
                    drop_connection(context.request)
                    return response
                try:
                    await response.write(payload[start : start + chunk_size])
                except ConnectionError:
                    return response
            await response.write_eof()
            return response

        return cls(kind="drip", after_commit=after_commit, reply=reply)


@attrs.define
class _Queued:
    fault: Fault
    remaining: int


class FaultQueue:
    """The faults waiting for each endpoint, first in first out.

    Endpoints are named ``"limits"`` (``GET /accounts/limits``),
    ``"preview"``, ``"confirm"`` and ``"lines_state"``
    (``GET /api/v2/lines/state``).
    """

    def __init__(self) -> None:
        self._queues: dict[Endpoint, deque[_Queued]] = {
            endpoint: deque() for endpoint in ENDPOINTS
        }

    def inject(self, endpoint: Endpoint, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests of ``endpoint``.

        Faults already queued for that endpoint come first.

        Raises:
            ValueError: unknown endpoint, ``times`` below 1, or a confirm-only
                fault for another endpoint.
        """
        if endpoint not in self._queues:
            msg = f"unknown endpoint {endpoint!r}: use one of {', '.join(ENDPOINTS)}"
            raise ValueError(msg)
        if times < 1:
            msg = f"times must be at least 1, got {times}"
            raise ValueError(msg)
        if fault.fails_provisioning and endpoint != "confirm":
            msg = f"{fault.kind} only applies to confirm, not {endpoint}"
            raise ValueError(msg)
        self._queues[endpoint].append(_Queued(fault, times))

    def pending(self, endpoint: Endpoint | None = None) -> int:
        """Count the requests still to be hit, for one endpoint or all."""
        names = ENDPOINTS if endpoint is None else (endpoint,)
        return sum(item.remaining for name in names for item in self._queues[name])

    def clear(self, endpoint: Endpoint | None = None) -> None:
        """Forget the queued faults, for one endpoint or all."""
        for name in ENDPOINTS if endpoint is None else (endpoint,):
            self._queues[name].clear()

    def pop(self, endpoint: Endpoint) -> Fault | None:
        """Take the fault for the request that just arrived at ``endpoint``, if any."""
        queue = self._queues[endpoint]
        if not queue:
            return None
        head = queue[0]
        head.remaining -= 1
        if head.remaining == 0:
            queue.popleft()
        return head.fault
