"""The transport through real sockets on 127.0.0.1: what aioresponses cannot show.

Redirects, timeouts, disconnects, cut-off and oversized bodies, the session's
life, and cancellation.

Why a hand-written server (`foundation_support.serve`), not the sandbox: these
need bytes no HTTP server sends (a body cut off before its Content-Length, a
connection closed mid-answer) and hold of each connection's transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from foundation_support import (
    CONFIRM,
    KEY_ID,
    LIMITS,
    PREVIEW,
    SECRET,
    TOKEN,
    call,
    closed_port,
    load,
    respond,
    serve,
)

from sendblue_lines import (
    APIError,
    ConfigurationError,
    LinesClient,
    MalformedResponseError,
    OutcomeUnknownError,
    RetryPolicy,
    ServerError,
    TransportError,
    __version__,
)

NO_WAIT = RetryPolicy(attempts=3, base_delay=0, max_delay=0)
ANSWERS = {
    LIMITS: load("limits_canonical"),
    PREVIEW: load("preview_ok"),
    CONFIRM: load("confirm_ok"),
}
NAMES = {LIMITS: "limits", PREVIEW: "preview", CONFIRM: "confirm"}


def client_for(url: str, **options: Any) -> LinesClient:
    options.setdefault("retry", NO_WAIT)
    return LinesClient(KEY_ID, SECRET, base_url=url, **options)


def spec_routes() -> dict[str, Any]:
    return {path: respond(200, body) for path, body in ANSWERS.items()}


@pytest.mark.parametrize("path", [LIMITS, PREVIEW, CONFIRM], ids=NAMES.get)
async def test_the_server_receives_auth_accept_and_user_agent(path: str) -> None:
    """What reaches the server: both auth headers, JSON Accept, our User-Agent."""
    async with serve(spec_routes()) as server, client_for(server.url) as client:
        await call(client, path)
    (seen,) = server.seen
    assert seen.method == ("GET" if path == LIMITS else "POST")
    assert seen.path == path
    assert seen.headers["sb-api-key-id"] == KEY_ID
    assert seen.headers["sb-api-secret-key"] == SECRET
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"] == f"sendblue-lines/{__version__}"
    if path == CONFIRM:
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.json() == {"preview_token": TOKEN}
    else:
        assert seen.body == b""


def redirect_to(target: str, status: int) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": target + request.path})

    return handler


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("path", [LIMITS, PREVIEW], ids=NAMES.get)
async def test_redirects_are_refused_and_never_followed(path: str, status: int) -> None:
    """A 3xx to another origin is a ServerError; the other origin sees nothing."""
    async with (
        serve(spec_routes()) as elsewhere,
        serve(redirect_to(elsewhere.url, status)) as server,
        client_for(server.url) as client,
    ):
        with pytest.raises(ServerError) as caught:
            await call(client, path)
    assert elsewhere.seen == []
    assert caught.value.status == status
    assert "redirect" in caught.value.message
    assert elsewhere.url in caught.value.message
    # A redirect is not transient: asked once.
    assert server.paths() == [path]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirected_confirm_is_never_followed_and_never_called_clean(
    status: int,
) -> None:
    """A 3xx to confirm may follow a purchase: outcome unknown, and never followed."""
    async with (
        serve(spec_routes()) as elsewhere,
        serve(redirect_to(elsewhere.url, status)) as server,
        client_for(server.url) as client,
    ):
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.confirm(TOKEN)
    assert elsewhere.seen == []
    assert caught.value.preview_token == TOKEN
    assert caught.value.status == status
    assert [s.json() for s in server.seen] == [{"preview_token": TOKEN}] * len(
        server.seen
    )


def slow(seconds: float, path: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        del request
        await asyncio.sleep(seconds)
        return web.json_response(ANSWERS[path])

    return handler


@pytest.mark.parametrize("path", [LIMITS, PREVIEW], ids=NAMES.get)
async def test_a_slow_answer_times_out_and_is_retried(path: str) -> None:
    """An answer slower than `timeout` is a TransportError (maybe sent), retried.

    The server answers only once released, after the client gave up: each
    try timed out before any answer went out.
    """
    release = anyio.Event()
    answered: list[str] = []

    async def held(request: web.Request) -> web.StreamResponse:
        await release.wait()
        answered.append(request.path)
        return web.json_response(ANSWERS[path])

    async with (
        serve(held) as server,
        client_for(server.url, timeout=0.2) as client,
    ):
        # A guard against a hang, not a measure: the three tries take 0.6 s.
        with anyio.fail_after(30), pytest.raises(TransportError) as caught:
            await call(client, path)
        assert answered == []
        release.set()
    assert caught.value.sent is True
    assert "timed out waiting for the answer" in str(caught.value)
    assert len(server.seen) == 3


async def test_a_trickling_body_is_bounded_by_the_total_timeout() -> None:
    """A server that sends a byte now and then cannot hold a call past `timeout`."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(100):
            await response.write(b" ")
            await asyncio.sleep(0.05)
        await response.write(b"{}")
        return response

    async with (
        serve(trickle) as server,
        client_for(server.url, timeout=0.3, retry=RetryPolicy(attempts=1)) as client,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransportError) as caught:
            await client.get_limits()
        assert loop.time() - started < 1.5
    # The head had arrived: the timeout names the body's phase.
    assert "timed out reading the answer" in str(caught.value)
    assert caught.value.sent is True


@pytest.mark.parametrize("path", [LIMITS, PREVIEW], ids=NAMES.get)
async def test_a_dropped_connection_is_a_transport_error_maybe_sent(path: str) -> None:
    """The server closing after reading the request is TransportError(sent=True)."""

    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async with serve(drop) as server, client_for(server.url) as client:
        with pytest.raises(TransportError) as caught:
            await call(client, path)
    assert caught.value.sent is True
    assert caught.value.method == ("GET" if path == LIMITS else "POST")
    assert caught.value.path == path
    # aiohttp itself resends an idempotent GET once on a dropped connection.
    assert len(server.seen) == (6 if path == LIMITS else 3)


@pytest.mark.parametrize("path", [LIMITS, PREVIEW], ids=NAMES.get)
async def test_a_closed_port_is_a_transport_error_not_sent(path: str) -> None:
    """Connection refused is TransportError(sent=False), after the retries."""
    async with client_for(f"http://127.0.0.1:{closed_port()}") as client:
        with pytest.raises(TransportError) as caught:
            await call(client, path)
    assert caught.value.sent is False
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert "nothing was sent" in str(caught.value)


@pytest.mark.parametrize("seconds", [0.4, 1.0])
async def test_waiting_for_a_connection_is_a_connect_timeout_not_sent(
    seconds: float,
) -> None:
    """Waiting for a connection times out as not sent, however small `timeout` is."""
    async with (
        serve(slow(seconds * 3, PREVIEW)) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session,
        client_for(
            server.url,
            session=session,
            timeout=seconds,
            retry=RetryPolicy(attempts=1),
        ) as client,
    ):
        # The one pooled connection is held by a slow preview, so the limits
        # request waits for the pool and never writes a byte.
        holder = asyncio.ensure_future(client.preview())
        await asyncio.sleep(0.05)
        with pytest.raises(TransportError) as caught:
            await client.get_limits()
        with pytest.raises(TransportError):
            await holder
    assert caught.value.sent is False
    assert isinstance(caught.value.__cause__, aiohttp.ConnectionTimeoutError)
    assert server.paths() == [PREVIEW]


def cut_off(status: int) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=status, headers={"Content-Type": "application/json"}
        )
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"status": "OK", "preview_token": "lpv_')
        await asyncio.sleep(0.01)
        assert request.transport is not None
        request.transport.close()
        return response

    return handler


@pytest.mark.parametrize("path", [LIMITS, PREVIEW], ids=NAMES.get)
async def test_a_cut_off_body_is_malformed_with_what_arrived(path: str) -> None:
    """A body shorter than its Content-Length is malformed, the part received kept."""
    async with serve(cut_off(200)) as server, client_for(server.url) as client:
        with pytest.raises(MalformedResponseError) as caught:
            await call(client, path)
    assert caught.value.raw == '{"status": "OK", "preview_token": "lpv_'
    assert caught.value.status == 200
    assert "cut off" in str(caught.value)
    assert len(server.seen) == 1


async def test_a_cut_off_2xx_to_confirm_is_outcome_unknown() -> None:
    """A confirm whose 2xx body is cut short most likely bought: outcome unknown."""
    async with serve(cut_off(200)) as server, client_for(server.url) as client:
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.confirm(TOKEN)
    assert caught.value.attempts == 1
    assert caught.value.raw == '{"status": "OK", "preview_token": "lpv_'
    assert len(server.seen) == 1


def oversized(chunked: bool) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        size = 2 * 1024 * 1024
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = size + 11
        await response.prepare(request)
        await response.write(b'{"pad": "')
        for _ in range(size // 65536):
            await response.write(b"x" * 65536)
        await response.write(b'"}')
        return response

    return handler


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", [LIMITS, PREVIEW], ids=NAMES.get)
async def test_a_body_over_one_mib_is_refused(path: str, chunked: bool) -> None:
    """Above 1 MiB, declared or streamed, a body is malformed and not buffered."""
    async with serve(oversized(chunked)) as server, client_for(server.url) as client:
        with pytest.raises(MalformedResponseError, match="cap") as caught:
            await call(client, path)
    assert caught.value.raw is not None
    assert len(caught.value.raw) < 2100
    assert len(server.seen) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_2xx_to_confirm_is_outcome_unknown(chunked: bool) -> None:
    """An oversized 2xx to confirm is not a plain parse error: outcome unknown."""
    async with serve(oversized(chunked)) as server, client_for(server.url) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.confirm(TOKEN)
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"<html><body>Maintenance</body></html>", "text/html", id="html"),
        pytest.param(b'{"status": "\xff"}', "application/json", id="not-utf8"),
        pytest.param(b"", "application/json", id="empty"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, "application/json", id="deep"),
    ],
)
@pytest.mark.parametrize("path", [LIMITS, PREVIEW], ids=NAMES.get)
async def test_unreadable_bodies_over_a_real_socket(
    path: str, body: bytes, content_type: str
) -> None:
    """Real answers that are not JSON are MalformedResponseError, whatever the label."""

    async def handler(request: web.Request) -> web.StreamResponse:
        del request
        return web.Response(body=body, headers={"Content-Type": content_type})

    async with serve(handler) as server, client_for(server.url) as client:
        with pytest.raises(MalformedResponseError) as caught:
            await call(client, path)
    assert caught.value.raw == body.decode("utf-8", "replace")[:2048] or (
        caught.value.raw is not None and caught.value.raw.endswith("characters]")
    )


async def test_a_real_json_error_answer_is_typed() -> None:
    """A real 401 with the spec's body is an APIError subclass with that body."""
    async with (
        serve(respond(401, load("error_401"))) as server,
        client_for(server.url) as client,
    ):
        with pytest.raises(APIError) as caught:
            await client.preview()
    assert caught.value.status == 401
    assert caught.value.body == load("error_401")


def test_a_client_built_outside_a_loop_works_inside_one() -> None:
    """A client made with no loop running opens its session in the loop that uses it."""
    # The client is made before any loop exists, against a loopback port
    # where the server is started later, inside asyncio.run.
    port = closed_port()
    client = client_for(f"http://127.0.0.1:{port}")

    async def main() -> list[str]:
        app = web.Application()
        for path, body in ANSWERS.items():
            app.router.add_route("*", path, respond(200, body))
        runner = web.AppRunner(app, shutdown_timeout=0.1, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            async with client:
                limits = await client.get_limits()
                preview = await client.preview()
                line = await client.confirm(preview)
            return [type(x).__name__ for x in (limits, preview, line)]
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == ["ProvisioningLimits", "Preview", "ProvisionedLine"]
    assert client.closed


async def test_one_session_serves_every_request() -> None:
    """Successive calls reuse one session: all come over one kept-alive connection."""
    peers: list[Any] = []

    def remember(path: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            assert request.transport is not None
            peers.append(request.transport.get_extra_info("peername"))
            return web.json_response(ANSWERS[path])

        return handler

    routes = {path: remember(path) for path in ANSWERS}
    async with serve(routes) as server, client_for(server.url) as client:
        await client.get_limits()
        await client.preview()
        await client.confirm(TOKEN)
        await client.get_limits()
    assert len(peers) == 4
    assert len(set(peers)) == 1


async def wait_closed(transports: list[asyncio.BaseTransport]) -> bool:
    """True once every server-side transport has seen its connection close."""
    for _ in range(100):
        if all(t.is_closing() for t in transports):
            return True
        await asyncio.sleep(0.01)
    return False


def tracking(
    transports: list[asyncio.BaseTransport], delay: float = 0.0
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        transports.append(request.transport)
        await asyncio.sleep(delay)
        return web.json_response(ANSWERS[LIMITS])

    return handler


async def test_the_session_is_closed_when_the_body_raises() -> None:
    """Leaving `async with` by an exception closes the session and its connections."""
    transports: list[asyncio.BaseTransport] = []
    async with serve(tracking(transports)) as server:
        client = client_for(server.url)

        async def use() -> None:
            async with client:
                await client.get_limits()
                _ = 1 / 0

        with pytest.raises(ZeroDivisionError):
            await use()
        assert client.closed
        assert await wait_closed(transports)


async def test_the_session_is_closed_when_the_caller_is_cancelled() -> None:
    """A cancelled caller still closes the session, and sees CancelledError as is."""
    transports: list[asyncio.BaseTransport] = []
    async with serve(tracking(transports, delay=5)) as server:
        client = client_for(server.url)

        async def use() -> None:
            async with client:
                await client.get_limits()

        task = asyncio.ensure_future(use())
        for _ in range(100):
            if transports:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.closed
        assert await wait_closed(transports)


async def test_closing_inside_a_cancelled_anyio_scope_runs_to_its_end() -> None:
    """`aclose` in an already cancelled anyio scope runs to its end.

    aiohttp waits for its connections to close: unshielded, anyio would cut
    that wait (and the rest of the close) short.
    """
    transports: list[asyncio.BaseTransport] = []
    async with serve(tracking(transports)) as server:
        client = client_for(server.url)
        await client.get_limits()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await client.aclose()
        assert not scope.cancelled_caught
        assert client.closed
        assert await wait_closed(transports)


async def test_anyio_cancellation_is_not_wrapped() -> None:
    """An anyio deadline around a call cancels it cleanly, without a SendblueError."""
    transports: list[asyncio.BaseTransport] = []
    async with (
        serve(tracking(transports, delay=5)) as server,
        client_for(server.url) as client,
    ):
        with anyio.move_on_after(0.2) as scope:
            await client.get_limits()
        assert scope.cancelled_caught
    assert len(transports) == 1


async def test_a_caller_session_is_used_and_left_open() -> None:
    """With `session=`, requests go through the caller's session, which stays open."""
    async with (
        serve(spec_routes()) as server,
        aiohttp.ClientSession(headers={"X-Caller": "app"}) as session,
    ):
        async with client_for(server.url, session=session) as client:
            await client.get_limits()
            await client.preview()
        assert client.closed
        assert not session.closed
        async with session.get(server.url + LIMITS) as response:
            assert response.status == 200
    assert [s.headers.get("X-Caller") for s in server.seen] == ["app"] * 3


async def test_a_caller_session_closed_by_the_caller_is_a_typed_error() -> None:
    """A caller's session closed under the client is a typed error, not RuntimeError."""
    async with serve(spec_routes()) as server:
        session = aiohttp.ClientSession()
        await session.close()
        async with client_for(server.url, session=session) as client:
            with pytest.raises(ConfigurationError, match="closed"):
                await client.get_limits()
            with pytest.raises(ConfigurationError, match="closed"):
                await client.confirm(TOKEN)
    assert server.seen == []
