"""What an answer means does not depend on how the caller built its session.

A matrix: caller session settings (raise_for_status, decompression, JSON
serialization, default timeouts, base URL, default headers, cookies,
middlewares, buffer and header sizes, trace configs, connector options)
against answers that matter for money (a 500 `provisioning_failed` to
confirm, a first-send 410 then success, a 429 at preview, a 200, a 503),
each compared with what the SDK's own session gives, over a real aiohttp
server on 127.0.0.1 that gzips its answers. Settings no request can override
are refused by the constructor. (A hand-written server, not the sandbox: the
sandbox never gzips.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from foundation_support import serve

from sendblue_lines import (
    ConfigurationError,
    LinesClient,
    Provisioner,
    RetryPolicy,
    SendblueError,
)

KEY_ID = "key-id-for-session-matrix"
SECRET = "s3cr3t-session-matrix-never-seen"
NO_WAIT = RetryPolicy(attempts=3, base_delay=0, max_delay=0)
LIMITS = "/accounts/limits"
PREVIEW = "/accounts/lines/provision-preview"
CONFIRM = "/accounts/lines/provision-confirm"

LIMITS_BODY = {
    "status": "OK",
    "limits": {
        "api_provision_daily": {"limit": 3, "used": 0, "remaining": 3},
        "api_provision_monthly": {"limit": 10, "used": 0, "remaining": 10},
    },
}
PF_BODY = {
    "status": "ERROR",
    "error": "provisioning_failed",
    "message": "Subscription created but provisioning failed",
    "subscription_id": "sub_123",
}


class Scripted:
    """A provisioning server answering each endpoint from a script, then OK.

    Answers are gzipped whenever the request accepts gzip, so that a session
    that does not decompress would see bytes, not JSON.
    """

    def __init__(self, script: dict[str, list[tuple[int, Any]]]) -> None:
        self.script = {path: list(answers) for path, answers in script.items()}
        self.seen: list[tuple[str, str | None]] = []
        self.tokens = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        token = json.loads(body).get("preview_token") if body else None
        self.seen.append((request.path, token))
        if (
            request.headers.get("sb-api-key-id") != KEY_ID
            or request.headers.get("sb-api-secret-key") != SECRET
        ):
            return self.answer(request, 401, {"status": "ERROR", "message": "Unauth"})
        if request.headers.get("Accept") != "application/json":
            return self.answer(request, 406, {"status": "ERROR", "message": "Accept"})
        if request.path == CONFIRM and (
            request.headers.get("Content-Type") != "application/json"
            or not isinstance(token, str)
        ):
            return self.answer(request, 400, {"status": "ERROR", "message": "no token"})
        queue = self.script.get(request.path, [])
        if queue:
            status, payload = queue.pop(0)
            return self.answer(request, status, payload)
        if request.path == LIMITS:
            return self.answer(request, 200, LIMITS_BODY)
        if request.path == PREVIEW:
            self.tokens += 1
            return self.answer(
                request,
                200,
                {
                    "status": "OK",
                    "preview_token": f"lpv_matrix{self.tokens:04d}",
                    "expires_at": "2999-01-01T00:00:00.000Z",
                    "message": "Call confirm within 10 minutes.",
                },
            )
        return self.answer(
            request,
            200,
            {
                "status": "OK",
                "phone_number": "+14155551234",
                "worker_id": "worker_1",
                "subscription_id": "sub_1",
            },
        )

    @staticmethod
    def answer(request: web.Request, status: int, payload: Any) -> web.StreamResponse:
        response = web.json_response(payload, status=status)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    def count(self, path: str) -> int:
        return sum(1 for seen, _ in self.seen if seen == path)


@asynccontextmanager
async def running(server: Scripted) -> AsyncIterator[Scripted]:
    async with serve(server.handle) as served:
        server.url = served.url
        yield server


# -- the caller's sessions ----------------------------------------------------------


async def raise_on_error(response: aiohttp.ClientResponse) -> None:
    if response.status >= 400:
        raise RuntimeError(f"caller's raise_for_status: {response.status}")


async def failing_middleware(
    request: aiohttp.ClientRequest, handler: Any
) -> aiohttp.ClientResponse:
    response = await handler(request)
    if response.status >= 400:
        response.raise_for_status()
    return response


def tracing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    async def on_end(*args: Any) -> None:
        del args

    trace.on_request_end.append(on_end)
    return trace


Factory = Callable[[], aiohttp.ClientSession]

SESSIONS: dict[str, Factory] = {
    "raise-for-status": lambda: aiohttp.ClientSession(raise_for_status=True),
    "raise-for-status-callable": lambda: aiohttp.ClientSession(
        raise_for_status=raise_on_error
    ),
    "no-decompress": lambda: aiohttp.ClientSession(auto_decompress=False),
    "json-serialize": lambda: aiohttp.ClientSession(
        json_serialize=lambda obj: '{"preview_token": 1}'
    ),
    "tiny-total-timeout": lambda: aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=1e-6)
    ),
    "tiny-read-timeout": lambda: aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(sock_read=1e-6, sock_connect=1e-6)
    ),
    "base-url": lambda: aiohttp.ClientSession(base_url="http://127.0.0.1:9/elsewhere/"),
    "default-headers": lambda: aiohttp.ClientSession(
        headers={
            "Accept": "text/html",
            "Accept-Encoding": "br",
            "User-Agent": "caller/1.0",
            "SB-API-KEY-ID": "another-key",
            "sb-api-secret-key": "another-secret",
            "X-Caller": "app",
        }
    ),
    "cookies": lambda: aiohttp.ClientSession(cookies={"session": "abc"}),
    "middlewares": lambda: aiohttp.ClientSession(middlewares=(failing_middleware,)),
    "requote-and-bufsize": lambda: aiohttp.ClientSession(
        requote_redirect_url=False, read_bufsize=1
    ),
    "tiny-header-limits": lambda: aiohttp.ClientSession(
        max_line_size=16, max_field_size=16
    ),
    "trace-configs": lambda: aiohttp.ClientSession(trace_configs=[tracing()]),
    "skip-auto-headers": lambda: aiohttp.ClientSession(
        skip_auto_headers=["Content-Type", "User-Agent", "Accept-Encoding"]
    ),
    "connector-one-at-a-time": lambda: aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1, force_close=True)
    ),
    "http-1.0": lambda: aiohttp.ClientSession(version=aiohttp.HttpVersion10),
}


# -- the answers --------------------------------------------------------------------

Outcome = tuple[Any, ...]


def summary(result: object) -> Outcome:
    if isinstance(result, SendblueError):
        return (
            type(result).__name__,
            getattr(result, "status", None),
            getattr(result, "code", None),
            getattr(result, "body", None),
            getattr(result, "sent", None),
        )
    return ("ok", type(result).__name__)


async def pf_on_confirm(client: LinesClient, server: Scripted) -> Outcome:
    server.script[CONFIRM] = [(500, PF_BODY)]
    try:
        result: object = await client.confirm(await client.preview())
    except SendblueError as error:
        result = error
    return (*summary(result), server.count(CONFIRM))


async def expired_then_ok(client: LinesClient, server: Scripted) -> Outcome:
    server.script[CONFIRM] = [
        (410, {"status": "ERROR", "error": "token_expired", "message": "Expired"})
    ]
    try:
        result: object = await Provisioner(client).provision()
    except SendblueError as error:
        result = error
    return (*summary(result), server.count(PREVIEW), server.count(CONFIRM))


async def daily_at_preview(client: LinesClient, server: Scripted) -> Outcome:
    server.script[PREVIEW] = [
        (429, {"status": "ERROR", "error": "daily_limit_reached", "message": "Max 3"})
    ]
    try:
        result: object = await client.preview()
    except SendblueError as error:
        result = error
    return (*summary(result), server.count(PREVIEW))


async def all_ok(client: LinesClient, server: Scripted) -> Outcome:
    limits = await client.get_limits()
    line = await client.confirm(await client.preview())
    return (limits.known, line.phone_number, line.subscription_id, len(server.seen))


async def unavailable(client: LinesClient, server: Scripted) -> Outcome:
    server.script[PREVIEW] = [(503, {"status": "ERROR", "message": "down"})] * 5
    server.script[CONFIRM] = [(503, {"status": "ERROR", "message": "down"})] * 5
    try:
        at_preview: object = await client.preview()
    except SendblueError as error:
        at_preview = error
    try:
        at_confirm: object = await client.confirm("lpv_token_for_503")
    except SendblueError as error:
        at_confirm = error
    return (
        summary(at_preview),
        summary(at_confirm),
        server.count(PREVIEW),
        server.count(CONFIRM),
    )


SCENARIOS: dict[str, Callable[[LinesClient, Scripted], Awaitable[Outcome]]] = {
    "500-provisioning-failed": pf_on_confirm,
    "first-send-410-then-ok": expired_then_ok,
    "429-at-preview": daily_at_preview,
    "200-ok": all_ok,
    "503": unavailable,
}


async def outcome_with(
    scenario: str, session_factory: Factory | None
) -> tuple[Outcome, list[tuple[str, str | None]]]:
    server = Scripted({})
    async with running(server):
        session = session_factory() if session_factory is not None else None
        try:
            async with LinesClient(
                KEY_ID,
                SECRET,
                base_url=server.url,
                retry=NO_WAIT,
                session=session,
                timeout=5,
            ) as client:
                outcome = await SCENARIOS[scenario](client, server)
        finally:
            if session is not None:
                await session.close()
    return outcome, server.seen


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("setting", list(SESSIONS))
async def test_a_caller_session_gives_the_sdk_sessions_outcome(
    setting: str, scenario: str
) -> None:
    """Each caller session setting gives exactly the SDK's own session's outcome."""
    expected, expected_seen = await outcome_with(scenario, None)
    got, seen = await outcome_with(scenario, SESSIONS[setting])
    assert got == expected
    # The same requests reached the server, in the same order, the same tokens.
    assert seen == expected_seen


async def test_the_baseline_outcomes_are_the_contracts() -> None:
    """The SDK's own session gives what the contract says, so the matrix means it."""
    pf, _ = await outcome_with("500-provisioning-failed", None)
    assert pf == (
        "ProvisioningFailedError",
        500,
        "provisioning_failed",
        PF_BODY,
        None,
        1,
    )
    expired, _ = await outcome_with("first-send-410-then-ok", None)
    assert expired == ("ok", "ProvisionedLine", 2, 2)
    daily, _ = await outcome_with("429-at-preview", None)
    assert daily[:3] == ("DailyLimitReachedError", 429, "daily_limit_reached")
    assert daily[-1] == 1
    ok, _ = await outcome_with("200-ok", None)
    assert ok == (True, "+14155551234", "sub_1", 3)
    down, _ = await outcome_with("503", None)
    assert down[0][0] == "ServerError"
    assert down[1][0] == "OutcomeUnknownError"
    assert down[2:] == (3, 3)


# -- settings no request can override: refused by the constructor -------------------


class OwnResponse(aiohttp.ClientResponse):
    pass


class OwnRequest(aiohttp.ClientRequest):
    pass


REFUSED: dict[str, Callable[[], aiohttp.ClientSession]] = {
    "response-class": lambda: aiohttp.ClientSession(response_class=OwnResponse),
    "request-class": lambda: aiohttp.ClientSession(request_class=OwnRequest),
    "range-header": lambda: aiohttp.ClientSession(headers={"Range": "bytes=0-10"}),
    "if-none-match": lambda: aiohttp.ClientSession(headers={"If-None-Match": "*"}),
    "content-length": lambda: aiohttp.ClientSession(headers={"Content-Length": "0"}),
    "transfer-encoding": lambda: aiohttp.ClientSession(
        headers={"Transfer-Encoding": "chunked"}
    ),
    "host": lambda: aiohttp.ClientSession(headers={"Host": "elsewhere.test"}),
    "method-override": lambda: aiohttp.ClientSession(
        headers={"X-HTTP-Method-Override": "GET"}
    ),
}


@pytest.mark.parametrize("setting", list(REFUSED))
async def test_settings_no_request_can_override_are_refused(setting: str) -> None:
    """A session whose settings could change an answer is refused, saying why."""
    session = REFUSED[setting]()
    try:
        with pytest.raises(ConfigurationError, match="session="):
            LinesClient(
                KEY_ID, SECRET, base_url="https://api.example.test", session=session
            )
    finally:
        await session.close()
