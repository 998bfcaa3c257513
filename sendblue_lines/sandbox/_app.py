"""The sandbox's HTTP face: routes, handlers and the error body for the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._clock import http_date
from ._control import CONTROL_PREFIX, add_control_routes
from ._faults import Endpoint, Fault, ReplyContext, drop_connection
from ._runtime import Runtime, attach, read_body, runtime_of, serving
from ._state import (
    Refusal,
    SandboxAccount,
    error_body,
    json_object,
    limits_body,
    signed_in,
)

__all__ = ["ROUTES", "build_app"]

ROUTES: tuple[tuple[Endpoint, str, str], ...] = (
    ("limits", "GET", "/accounts/limits"),
    ("preview", "POST", "/accounts/lines/provision-preview"),
    ("confirm", "POST", "/accounts/lines/provision-confirm"),
    ("lines_state", "GET", "/api/v2/lines/state"),
)


def build_app(runtime: Runtime) -> web.Application:
    """Build the aiohttp application: the endpoints of `ROUTES`, the control API."""
    app = web.Application(middlewares=[_unrouted])
    attach(app, runtime)
    app.on_response_prepare.append(_date_from_clock)
    for endpoint, method, path in ROUTES:
        app.router.add_route(method, path, _handler(endpoint), name=endpoint)
    add_control_routes(app)
    return app


async def _date_from_clock(request: web.Request, response: web.StreamResponse) -> None:
    """Send the sandbox clock's time as `Date`, as a server sends its own time.

    aiohttp would send the machine's time; with a moved `ManualClock` that
    would disagree with the `expires_at` the sandbox hands out, and a client
    that reads its token's validity from the two would be misled.
    """
    runtime = serving(request.app)
    if runtime is not None:
        response.headers["Date"] = http_date(runtime.state.clock.now())


def _answered(request: web.Request, response: web.StreamResponse) -> int | None:
    """Return the status that went out, or None if the connection was dropped."""
    transport = request.transport
    dropped = transport is None or transport.is_closing()
    return None if dropped and not response.prepared else response.status


@web.middleware
async def _unrouted(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Answer 404 and 405 with the API's error body, logged like any request.

    A path under ``/_sandbox/`` is the control API's: no API request, so it
    is answered at once, neither logged nor counted.
    """
    routing_error = request.match_info.http_exception
    if routing_error is None:
        return await handler(request)
    if request.path.startswith(CONTROL_PREFIX):
        return _routing_answer(routing_error)
    runtime = runtime_of(request)
    with runtime.log.observe(request.method, request.path, None) as observation:
        if not await runtime.pause(runtime.latency_seconds()):
            return drop_connection(request)
        response = _routing_answer(routing_error)
        observation.status = _answered(request, response)
        return response


def _routing_answer(routing_error: web.HTTPException) -> web.Response:
    """A 404 or 405 with the API's error body (and a 405's ``Allow``)."""
    body = error_body(None, routing_error.reason)
    response = web.json_response(body, status=routing_error.status)
    if "Allow" in routing_error.headers:
        response.headers["Allow"] = routing_error.headers["Allow"]
    return response


def _handler(
    endpoint: Endpoint,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        runtime = runtime_of(request)
        # The fault is taken on arrival, so "the next N requests" means the
        # next N to arrive, whatever latency each one then draws.
        fault = runtime.faults.pop(endpoint)
        account = runtime.state.authenticate(request.headers)
        with runtime.log.observe(
            request.method,
            request.path,
            endpoint,
            fault=None if fault is None else fault.kind,
            api_key_id=None if account is None else account.api_key_id,
        ) as observation:
            response = await _serve(runtime, endpoint, request, account, fault)
            observation.status = _answered(request, response)
            return response

    return handle


async def _serve(
    runtime: Runtime,
    endpoint: Endpoint,
    request: web.Request,
    account: SandboxAccount | None,
    fault: Fault | None,
) -> web.StreamResponse:
    # The body is read first, as a server reads it before its handler runs:
    # a slow answer must not turn into a body that can no longer be read.
    try:
        received = await _receive(request) if endpoint == "confirm" else b""
    except ConnectionError:
        return drop_connection(request)
    wait = runtime.latency_seconds() + (0.0 if fault is None else fault.delay_seconds)
    if not await runtime.pause(wait):
        return drop_connection(request)
    if fault is not None and fault.reply is not None and not fault.after_commit:
        return await fault.reply(ReplyContext(request, None, runtime.pause))
    failing = fault is not None and fault.fails_provisioning
    status, body = _process(runtime, endpoint, received, account, failing)
    if fault is not None and fault.reply is not None:
        return await fault.reply(ReplyContext(request, body, runtime.pause))
    return web.json_response(body, status=status)


def _process(
    runtime: Runtime,
    endpoint: Endpoint,
    received: bytes | Refusal,
    account: SandboxAccount | None,
    fail_provisioning: bool,
) -> tuple[int, Any]:
    """Do what the API does for this request; return its status and JSON body.

    This never awaits: every check and the commit happen in one step of the
    event loop, so concurrent confirms cannot oversell a limit or the stock.
    """
    try:
        account = signed_in(account)
        if endpoint == "limits":
            limits = runtime.state.limits(account)
            return 200, limits_body(limits, runtime.limits_shape)
        if endpoint == "preview":
            return 200, runtime.state.preview(account)
        if endpoint == "lines_state":
            return 200, runtime.state.lines_state(account)
        token = _parse_token(received)
        return 200, runtime.state.confirm(
            account, token, fail_provisioning=fail_provisioning
        )
    except Refusal as refusal:
        return refusal.status, refusal.body()


async def _receive(request: web.Request) -> bytes | Refusal:
    """Read a confirm's body, or say why it cannot be used.

    Raises:
        ConnectionError: the client went away while sending it.
    """
    # Like an Express server with express.json(), we only parse a body sent
    # as application/json: a client that forgets the header gets a 400 here
    # rather than a surprise in production.
    if request.content_type != "application/json":
        return Refusal(400, None, _NOT_JSON)
    try:
        return await read_body(request)
    except Refusal as refusal:
        return refusal


_NOT_JSON = "The body must be a JSON object with a preview_token"


def _parse_token(received: bytes | Refusal) -> str:
    """Return the ``preview_token`` of a confirm's body.

    Raises:
        Refusal: 400 when the body is not a JSON object with a non-empty
            string ``preview_token``; 413 when it was too large.
    """
    if isinstance(received, Refusal):
        raise received
    token = json_object(received, _NOT_JSON).get("preview_token")
    if not isinstance(token, str) or not token:
        raise Refusal(400, None, "preview_token is required")
    return token
