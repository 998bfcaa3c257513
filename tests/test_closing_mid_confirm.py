"""A client or session closed mid-confirm never reads as "nothing bought".

An app shutting down closes its `LinesClient` (or its own aiohttp session)
while a purchase is being confirmed. The confirm may have reached the
server, so it must end in a line or an `OutcomeUnknownError`, the
Provisioner's `max_lines` unit stays spent, and no exception of any type
from a confirm that may have left gives the unit back. Real sockets on
127.0.0.1 (`tests/_lines_server.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _lines_server import KEY_ID, SECRET, LinesServer

from sendblue_lines import (
    APIError,
    Attempt,
    ConfigurationError,
    LinesClient,
    MalformedResponseError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    Provisioner,
    ProvisionOutcome,
    RetryPolicy,
    SendblueError,
    ServerError,
    TokenExpiredError,
    TransportError,
)

NO_WAIT = RetryPolicy(attempts=3, base_delay=0, max_delay=0)
TOKEN = "lpv_fake000001"


@pytest.fixture
async def server() -> AsyncIterator[LinesServer]:
    """A server whose confirm answers wait long enough to close the client."""
    async with LinesServer(confirm_delay=1.0) as s:
        yield s
        await s.settle()


def client_for(server: LinesServer, **options: Any) -> LinesClient:
    return LinesClient(
        KEY_ID, SECRET, base_url=server.url, retry=NO_WAIT, timeout=5, **options
    )


async def close_when_confirm_arrives(server: LinesServer, close: Any) -> None:
    await asyncio.wait_for(server.confirm_arrived.wait(), 5)
    await close()


@pytest.mark.parametrize("whose", ["own", "caller"])
async def test_closing_during_a_confirm_is_outcome_unknown(
    server: LinesServer, whose: str
) -> None:
    """aclose() or the caller's session.close() mid-confirm: OutcomeUnknownError."""
    session = aiohttp.ClientSession() if whose == "caller" else None
    client = client_for(server, session=session)
    try:
        preview = await client.preview()
        confirm = asyncio.ensure_future(client.confirm(preview))
        closer = client.aclose if session is None else session.close
        await close_when_confirm_arrives(server, closer)
        with pytest.raises(OutcomeUnknownError) as caught:
            await confirm
    finally:
        await client.aclose()
        if session is not None:
            await session.close()
    assert caught.value.preview_token == preview.token
    assert caught.value.attempts >= 1
    assert "closed" in caught.value.reason
    assert "nothing was sent" not in str(caught.value)


@pytest.mark.parametrize("whose", ["own", "caller"])
async def test_the_provisioner_keeps_the_unit_spent_when_closed_mid_confirm(
    server: LinesServer, whose: str
) -> None:
    """provision() ends unknown, max_lines stays spent, on_outcome hears it."""
    session = aiohttp.ClientSession() if whose == "caller" else None
    client = client_for(server, session=session)
    heard: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, max_lines=1, on_outcome=heard.append)
    try:
        buying = asyncio.ensure_future(provisioner.provision())
        closer = client.aclose if session is None else session.close
        await close_when_confirm_arrives(server, closer)
        with pytest.raises(OutcomeUnknownError):
            await buying
    finally:
        await client.aclose()
        if session is not None:
            await session.close()
    assert provisioner.lines_left == 0
    assert [o.charged for o in heard] == [True]


async def test_a_batch_closed_mid_confirm_reports_every_slot_as_charged(
    server: LinesServer,
) -> None:
    """In a batch, each slot whose confirm was in flight is charged, not failed."""
    client = client_for(server)
    provisioner = Provisioner(client, max_lines=2)
    running = asyncio.ensure_future(provisioner.provision_many(2, concurrency=2))
    await close_when_confirm_arrives(server, client.aclose)
    result = await running
    confirmed = server.count("confirm")
    assert confirmed >= 1
    unknown = [e for e in result.errors if isinstance(e, OutcomeUnknownError)]
    # Every confirm that reached the server is a line or an unknown outcome.
    assert len(result.lines) + len(unknown) >= confirmed
    assert result.charged == len(result.lines) + len(unknown)
    assert provisioner.lines_left == 2 - result.charged


async def test_a_resend_that_meets_a_closed_client_is_outcome_unknown() -> None:
    """An unclear send, then the client closes before the resend: unknown."""
    async with LinesServer() as server:
        server.queue("confirm", "drop_after")
        closing: list[asyncio.Task[None]] = []

        def close_after_the_unclear_send(attempt: Attempt) -> None:
            if attempt.status is None and attempt.sent:
                closing.append(asyncio.ensure_future(client.aclose()))

        client = client_for(server, on_attempt=close_after_the_unclear_send)
        preview = await client.preview()
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.confirm(preview)
        await client.aclose()
        await server.settle()
    assert server.count("confirm") == 1
    assert caught.value.attempts == 1
    assert "closed" in caught.value.reason


async def test_a_resend_that_meets_a_closed_caller_session_is_outcome_unknown() -> None:
    """The caller's session closed between an unclear send and its resend: unknown."""
    async with LinesServer() as server, aiohttp.ClientSession() as session:
        server.queue("confirm", "502_after")
        connector = session.connector

        def detach_after_the_unclear_send(attempt: Attempt) -> None:
            if attempt.status == 502:
                session.detach()  # closed at once, as far as the client can see

        client = client_for(
            server, session=session, on_attempt=detach_after_the_unclear_send
        )
        preview = await client.preview()
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.confirm(preview)
        await client.aclose()
        assert connector is not None
        await connector.close()
        await server.settle()
    assert server.charges == {preview.token: "line"}
    assert caught.value.status is None or caught.value.status == 502


async def test_a_client_closed_before_the_confirm_sends_nothing_and_says_so() -> None:
    """Closed before the first send: ConfigurationError, and nothing was sent."""
    async with LinesServer() as server:
        client = client_for(server)
        preview = await client.preview()
        await client.aclose()
        with pytest.raises(ConfigurationError, match="not sent"):
            await client.confirm(preview)
    assert server.count("confirm") == 0


# -- what the Provisioner reads from each error type of a confirm -------------------


def failing_confirm(error: BaseException) -> Any:
    async def confirm(preview: Any) -> Any:
        del preview
        raise error

    return confirm


MAY_HAVE_BOUGHT = [
    pytest.param(RuntimeError("Session is closed"), id="runtime-error"),
    pytest.param(
        AttributeError("'NoneType' has no attribute 'write'"), id="attr-error"
    ),
    pytest.param(ValueError("odd"), id="value-error"),
    pytest.param(
        TransportError("x", sent=True, method="POST", path="/c"), id="transport-sent"
    ),
    pytest.param(MalformedResponseError("x", status=200), id="malformed"),
    pytest.param(ServerError("x", status=502), id="server-error"),
    pytest.param(SendblueError("x"), id="base-error"),
]
BOUGHT_NOTHING = [
    pytest.param(
        TransportError("x", sent=False, method="POST", path="/c"), id="transport-unsent"
    ),
    pytest.param(
        TokenExpiredError("x", status=410, code="token_expired"), id="token-expired"
    ),
    pytest.param(APIError("x", status=403), id="refused-403"),
    pytest.param(
        NoLinesAvailableError("x", status=503, code="no_lines_available"),
        id="no-lines",
    ),
    pytest.param(ConfigurationError("closed before sending"), id="configuration"),
]


@pytest.mark.parametrize("error", MAY_HAVE_BOUGHT)
async def test_a_confirm_error_that_proves_nothing_is_outcome_unknown(
    error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error that does not prove "nothing bought" is unknown; the unit stays."""
    async with LinesServer() as server, client_for(server) as client:
        monkeypatch.setattr(client, "confirm", failing_confirm(error))
        provisioner = Provisioner(
            client, max_lines=1, max_repreviews=0, no_lines_retry=0
        )
        with pytest.raises(OutcomeUnknownError) as caught:
            await provisioner.provision()
    assert provisioner.lines_left == 0
    assert type(error).__name__ in caught.value.reason
    # A foreign exception is never chained: it may hold the request's headers.
    if not isinstance(error, SendblueError):
        assert caught.value.__cause__ is None


@pytest.mark.parametrize("error", BOUGHT_NOTHING)
async def test_a_confirm_error_that_proves_nothing_bought_gives_the_unit_back(
    error: SendblueError, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the client's proofs of "nothing bought" return the max_lines unit."""
    async with LinesServer() as server, client_for(server) as client:
        monkeypatch.setattr(client, "confirm", failing_confirm(error))
        provisioner = Provisioner(
            client, max_lines=1, max_repreviews=0, no_lines_retry=0
        )
        with pytest.raises(type(error)):
            await provisioner.provision()
    assert provisioner.lines_left == 1


@pytest.mark.parametrize("error", MAY_HAVE_BOUGHT)
async def test_a_cancelled_caller_sees_the_same_reading(
    error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled mid-confirm, a failure that proves nothing is still unknown."""
    gate = asyncio.Event()

    async def confirm(preview: Any) -> Any:
        del preview
        await gate.wait()
        raise error

    heard: list[ProvisionOutcome] = []
    async with LinesServer() as server, client_for(server) as client:
        monkeypatch.setattr(client, "confirm", confirm)
        provisioner = Provisioner(client, max_lines=1, on_outcome=heard.append)
        buying = asyncio.ensure_future(provisioner.provision())
        for _ in range(200):
            if server.count("preview"):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        buying.cancel()
        await asyncio.sleep(0.01)
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await buying
    assert provisioner.lines_left == 0
    assert len(heard) == 1
    assert isinstance(heard[0].error, OutcomeUnknownError)
