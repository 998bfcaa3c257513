"""Helpers for the foundation's tests: fixture bodies and hand-written servers.

Kept out of `conftest.py` so that test modules can import it by a name no
other conftest shadows. The paths are the spec's own, written out here
rather than taken from the package, so that the tests check the contract.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures"

LIMITS = "/accounts/limits"
PREVIEW = "/accounts/lines/provision-preview"
CONFIRM = "/accounts/lines/provision-confirm"
METHODS = {LIMITS: "GET", PREVIEW: "POST", CONFIRM: "POST"}

MOMENT = datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc)

#: Every timestamp form the SDK accepts, and the UTC instant it means: the
#: one table for the parser and for each structured field that uses it. The
#: same on every supported Python (3.10's `fromisoformat` reads fewer forms).
ACCEPTED_TIMESTAMPS = [
    pytest.param("2026-05-18T14:30:00.000Z", MOMENT, id="spec-form"),
    pytest.param(
        "2026-05-18T14:30:00.123Z", MOMENT.replace(microsecond=123000), id="millis"
    ),
    pytest.param("2026-05-18T14:30:00Z", MOMENT, id="no-fraction"),
    pytest.param("2026-05-18T14:30:00z", MOMENT, id="lowercase-z"),
    pytest.param("2026-05-18t14:30:00Z", MOMENT, id="lowercase-t"),
    pytest.param("2026-05-18 14:30:00Z", MOMENT, id="space-separator"),
    pytest.param("2026-05-18T14:30:00", MOMENT, id="no-offset-is-utc"),
    pytest.param("2026-05-18T14:30Z", MOMENT, id="minutes-only"),
    pytest.param(
        "2026-05-18T14:30:00.1Z", MOMENT.replace(microsecond=100000), id="1-digit"
    ),
    pytest.param(
        "2026-05-18T14:30:00.12Z", MOMENT.replace(microsecond=120000), id="2-digit"
    ),
    pytest.param(
        "2026-05-18T14:30:00.1234Z",
        MOMENT.replace(microsecond=123400),
        id="4-digit",
    ),
    pytest.param(
        "2026-05-18T14:30:00.123456789Z",
        MOMENT.replace(microsecond=123456),
        id="nanoseconds-cut-not-rounded",
    ),
    pytest.param(
        "2026-05-18T14:30:00.9999999Z",
        MOMENT.replace(microsecond=999999),
        id="never-rounded-up-to-next-second",
    ),
    pytest.param("2026-05-18T14:30:00+00:00", MOMENT, id="offset-extended"),
    pytest.param("2026-05-18T16:30:00.000000+02:00", MOMENT, id="micros-offset"),
    pytest.param("2026-05-18T14:30:00+0000", MOMENT, id="offset-basic"),
    pytest.param(
        "2026-05-18T16:30:00.5+0200",
        MOMENT.replace(microsecond=500000),
        id="fraction-offset-basic",
    ),
    pytest.param("2026-05-18T14:30:00+00", MOMENT, id="offset-hours"),
    pytest.param("2026-05-18T14:30:00-00:00", MOMENT, id="offset-minus-zero"),
    pytest.param("2026-05-18T16:30:00+02:00", MOMENT, id="offset-east"),
    pytest.param("2026-05-18T09:00:00-05:30", MOMENT, id="offset-west-half"),
    pytest.param("2026-05-19T00:00:00+09:30", MOMENT, id="offset-crosses-day"),
    pytest.param("  2026-05-18T14:30:00Z\n", MOMENT, id="surrounding-space"),
    pytest.param("2026-05-18", MOMENT.replace(hour=0, minute=0), id="date-only"),
]

KEY_ID = "key-id-for-foundation-tests"
SECRET = "s3cr3t-foundation-never-to-be-seen"


@attrs.define
class OutrunFirst:
    """An `approve` callback under which the first token expires on the server.

    It approves every preview, recording its token in `asked`; at the first
    ask it moves the sandbox's clock past the token's 10 minutes, so that the
    confirm meets a real 410 and the Provisioner previews again (the
    `outrun_first` fixture).
    """

    clock: Any
    asked: list[str] = attrs.Factory(list)

    def __call__(self, preview: Any) -> bool:
        self.asked.append(preview.token)
        if len(self.asked) == 1:
            self.clock.advance(minutes=11)
        return True


#: The token of `fixtures/preview_ok.json`, which `call` confirms.
TOKEN = "lpv_abc123def456ghi789jkl0"


async def call(client: Any, path: str) -> Any:
    """Call the `LinesClient` method for `path` (a confirm spends `TOKEN`)."""
    if path == LIMITS:
        return await client.get_limits()
    if path == PREVIEW:
        return await client.preview()
    return await client.confirm(TOKEN)


def load(name: str) -> Any:
    """The parsed JSON of `tests/fixtures/<name>.json`."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def text(name: str) -> str:
    """The raw text of `tests/fixtures/<name>.json`."""
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@attrs.define
class Seen:
    """One request as a real test server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.define
class Server:
    """A real aiohttp server on 127.0.0.1 that records what reaches it."""

    url: str = ""
    seen: list[Seen] = attrs.Factory(list)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


@asynccontextmanager
async def serve(routes: dict[str, Handler] | Handler) -> AsyncIterator[Server]:
    """Run handlers on 127.0.0.1 (one for every path, or one per path).

    Only for bytes or connection behaviour the sandbox's faults do not give;
    each user says why in its docstring.

    Each request is recorded (its body read first) before its handler runs.
    """
    server = Server()

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        server.seen.append(
            Seen(request.method, request.path, dict(request.headers), body)
        )
        return await handler(request)

    app = web.Application(middlewares=[record])
    if callable(routes):
        app.router.add_route("*", "/{tail:.*}", routes)
    else:
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield server
    finally:
        await runner.cleanup()


def respond(status: int, body: Any) -> Handler:
    """A handler answering `status` with `body` as JSON (or as given, if bytes)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        del request
        if isinstance(body, bytes):
            return web.Response(status=status, body=body)
        return web.json_response(body, status=status)

    return handler
