"""A client or session closed mid-confirm never reads as "nothing bought".

An app shutting down closes its `LinesClient` (or its own aiohttp session)
while a purchase is being confirmed. The confirm may have reached the
server, so it must end in a line or an `OutcomeUnknownError`, the
Provisioner's `max_lines` unit stays spent, and no exception of any type
from a confirm that may have left gives the unit back. Real sockets on
127.0.0.1, on the sandbox. What the Provisioner makes of it is in
`tests/provisioner/test_outcome_unknown.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from sendblue_lines import (
    Attempt,
    ConfigurationError,
    LinesClient,
    OutcomeUnknownError,
    RetryPolicy,
)
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

NO_WAIT = RetryPolicy(attempts=3, base_delay=0, max_delay=0)


def client_for(server: Sandbox[ManualClock], **options: Any) -> LinesClient:
    return LinesClient(
        server.api_key_id,
        server.api_secret_key,
        base_url=server.url,
        retry=NO_WAIT,
        timeout=5,
        **options,
    )


@pytest.mark.parametrize("whose", ["own", "caller"])
async def test_closing_during_a_confirm_is_outcome_unknown(
    slow_confirms: Sandbox[ManualClock], whose: str
) -> None:
    """aclose() or the caller's session.close() mid-confirm: OutcomeUnknownError."""
    session = aiohttp.ClientSession() if whose == "caller" else None
    client = client_for(slow_confirms, session=session)
    try:
        preview = await client.preview()
        confirm = asyncio.ensure_future(client.confirm(preview))
        closer = client.aclose if session is None else session.close
        await slow_confirms.wait_for_requests("confirm")
        await closer()
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


async def test_a_resend_that_meets_a_closed_client_is_outcome_unknown(
    sendblue_sandbox: Sandbox[ManualClock],
) -> None:
    """An unclear send, then the client closes before the resend: unknown."""
    server = sendblue_sandbox
    server.inject("confirm", Fault.drop_after_commit())
    closing: list[asyncio.Task[None]] = []

    def close_after_the_unclear_send(attempt: Attempt) -> None:
        if attempt.status is None and attempt.sent:
            closing.append(asyncio.ensure_future(client.aclose()))

    client = client_for(server, on_attempt=close_after_the_unclear_send)
    preview = await client.preview()
    with pytest.raises(OutcomeUnknownError) as caught:
        await client.confirm(preview)
    await client.aclose()
    await server.wait_idle()
    assert server.counters["confirm"].requests == 1
    assert caught.value.attempts == 1
    assert "closed" in caught.value.reason


async def test_a_resend_that_meets_a_closed_caller_session_is_outcome_unknown(
    sendblue_sandbox: Sandbox[ManualClock],
) -> None:
    """The caller's session closed between an unclear send and its resend: unknown."""
    server = sendblue_sandbox
    async with aiohttp.ClientSession() as session:
        server.inject("confirm", Fault.proxy_502(after_commit=True))
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
        await server.wait_idle()
    assert [c.preview_token for c in server.purchases()] == [preview.token]
    assert caught.value.status is None or caught.value.status == 502


async def test_a_client_closed_before_the_confirm_sends_nothing_and_says_so(
    sendblue_sandbox: Sandbox[ManualClock],
) -> None:
    """Closed before the first send: ConfigurationError, and nothing was sent."""
    server = sendblue_sandbox
    client = client_for(server)
    preview = await client.preview()
    await client.aclose()
    with pytest.raises(ConfigurationError, match="not sent"):
        await client.confirm(preview)
    assert server.counters["confirm"].requests == 0
