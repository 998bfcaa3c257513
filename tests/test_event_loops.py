"""One LinesClient across event loops: it works, or says why in a typed error.

A client made at import time and used by two `asyncio.run()` calls (or
`anyio.run`) opens a new session in each loop and leaves no connection
behind; a caller's session bound to a finished loop, or a client in use by
a loop still running in another thread, is a `ConfigurationError`, never
a bare `RuntimeError`. The server runs on 127.0.0.1 in a thread of its own,
since each test drives loops of its own (a plain aiohttp app, not the
sandbox: answering the spec's fixtures is all it must do, from another loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import aiohttp
import anyio
import pytest
from aiohttp import web
from foundation_support import CONFIRM, KEY_ID, LIMITS, PREVIEW, SECRET, load, respond

from sendblue_lines import ConfigurationError, LinesClient, Provisioner, RetryPolicy

NO_WAIT = RetryPolicy(attempts=2, base_delay=0, max_delay=0)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A spec-shaped server on 127.0.0.1, in its own thread and loop."""
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    url: list[str] = []

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", LIMITS, respond(200, load("limits_canonical")))
        app.router.add_route("*", PREVIEW, respond(200, load("preview_ok")))
        app.router.add_route("*", CONFIRM, respond(200, load("confirm_ok")))
        runner = web.AppRunner(app, shutdown_timeout=0.1, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
            stop.append(asyncio.Event())
            ready.set()
            await asyncio.wait_for(stop[0].wait(), 120)
        finally:
            await runner.cleanup()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    assert ready.wait(10)
    yield url[0]
    loop.call_soon_threadsafe(stop[0].set)
    thread.join(10)
    loop.close()


def test_two_asyncio_runs_share_one_client(server_url: str) -> None:
    """Used by one asyncio.run, then another: both work, on a new session each."""
    client = LinesClient(KEY_ID, SECRET, base_url=server_url, retry=NO_WAIT)

    async def buy() -> str:
        line = await client.confirm(await client.preview())
        return line.phone_number

    first = asyncio.run(buy())
    second = asyncio.run(buy())
    assert first == second == load("confirm_ok")["phone_number"]

    async def close() -> None:
        await client.aclose()

    asyncio.run(close())
    assert client.closed


def test_asyncio_then_anyio_run_share_one_client(server_url: str) -> None:
    """asyncio.run, then anyio.run, then a third loop that closes the client."""
    client = LinesClient(KEY_ID, SECRET, base_url=server_url, retry=NO_WAIT)

    async def limits() -> bool:
        return (await client.get_limits()).known

    async def buy() -> str:
        async with client:
            Provisioner(client)  # built in this loop, on the same client
            return (await client.confirm(await client.preview())).worker_id

    assert asyncio.run(limits())
    assert anyio.run(limits)
    assert asyncio.run(buy()) == load("confirm_ok")["worker_id"]


def test_a_session_left_by_a_finished_loop_is_closed_with_it(server_url: str) -> None:
    """The session of a finished asyncio.run is closed when that loop shuts down."""
    client = LinesClient(KEY_ID, SECRET, base_url=server_url, retry=NO_WAIT)
    sessions: list[aiohttp.ClientSession] = []

    async def use() -> None:
        await client.get_limits()
        sessions.append(client._transport._session)  # type: ignore[arg-type]

    asyncio.run(use())
    assert sessions[0].closed
    asyncio.run(use())
    assert sessions[1] is not sessions[0]
    assert sessions[1].closed


def test_a_caller_session_of_a_finished_loop_is_a_configuration_error(
    server_url: str,
) -> None:
    """A caller's session made in a loop that has finished: ConfigurationError."""
    made: list[aiohttp.ClientSession] = []

    async def make() -> None:
        made.append(aiohttp.ClientSession())

    asyncio.run(make())
    client = LinesClient(
        KEY_ID, SECRET, base_url=server_url, retry=NO_WAIT, session=made[0]
    )

    async def use() -> None:
        await client.get_limits()

    try:
        with pytest.raises(ConfigurationError, match="closed event loop"):
            asyncio.run(use())
        with pytest.raises(ConfigurationError, match="closed event loop"):
            asyncio.run(client.confirm("lpv_abc"))  # type: ignore[arg-type]
    finally:
        made[0].detach()  # its loop is gone: nothing left to close


def test_a_caller_session_of_another_running_loop_is_a_configuration_error(
    server_url: str,
) -> None:
    """A caller's session whose loop runs in another thread: ConfigurationError."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:

        async def make() -> aiohttp.ClientSession:
            return aiohttp.ClientSession()

        session = asyncio.run_coroutine_threadsafe(make(), loop).result(10)
        client = LinesClient(KEY_ID, SECRET, base_url=server_url, session=session)

        async def use() -> None:
            await client.get_limits()

        with pytest.raises(ConfigurationError, match="another event loop"):
            asyncio.run(use())
        asyncio.run_coroutine_threadsafe(session.close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_client_in_use_by_a_running_loop_refuses_a_second_loop(
    server_url: str,
) -> None:
    """Our own session in use by a loop still running elsewhere: ConfigurationError."""
    client = LinesClient(KEY_ID, SECRET, base_url=server_url, retry=NO_WAIT)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(client.get_limits(), loop).result(10)

        async def use() -> None:
            await client.get_limits()

        with pytest.raises(ConfigurationError, match="still running"):
            asyncio.run(use())
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
