"""Concurrent requests: no overselling, and the in-flight counts and waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import aiohttp
import pytest

from sendblue_lines.sandbox import Fault, ManualClock, Sandbox


async def test_200_concurrent_confirms_buy_exactly_the_3_slots_left():
    """200 confirms racing for the 3 daily slots produce exactly 3 purchases."""
    async with (
        Sandbox(clock=ManualClock()) as sandbox,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=20),
        ) as session,
    ):
        headers = sandbox.auth_headers()
        tokens = []
        for _ in range(200):
            async with session.post(
                sandbox.url + "/accounts/lines/provision-preview", headers=headers
            ) as response:
                assert response.status == 200
                tokens.append((await response.json())["preview_token"])

        async def confirm(token: str) -> tuple[int, dict]:
            async with session.post(
                sandbox.url + "/accounts/lines/provision-confirm",
                headers=headers,
                json={"preview_token": token},
            ) as response:
                return response.status, await response.json()

        results = await asyncio.wait_for(
            asyncio.gather(*(confirm(token) for token in tokens)), timeout=20
        )

    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 3, 429: 197}
    assert {body["error"] for status, body in results if status == 429} == {
        "daily_limit_reached"
    }
    bought = [body["phone_number"] for status, body in results if status == 200]
    assert sorted(bought) == sorted(c.phone_number for c in sandbox.purchases())
    assert len(sandbox.ledger) == 3
    assert {sandbox.token_status(token) for token in tokens} == {"used"}
    assert sandbox.counters["confirm"].requests == 200


async def test_concurrent_confirms_of_one_token_buy_once(sandbox, session, api):
    """50 concurrent confirms of the same token buy one line; the rest get 410."""
    token = await api.token()
    results = await asyncio.wait_for(
        asyncio.gather(*(api.confirm(token) for _ in range(50))), timeout=20
    )
    assert Counter(status for status, _ in results) == {200: 1, 410: 49}
    assert len(sandbox.ledger) == 1


async def test_concurrent_confirms_respect_inventory(sandbox, session, api):
    """With 2 lines in stock, 20 concurrent confirms buy exactly 2."""
    sandbox.account.daily_limit = 100
    sandbox.account.monthly_limit = 100
    sandbox.set_inventory(2)
    tokens = [await api.token() for _ in range(20)]
    results = await asyncio.wait_for(
        asyncio.gather(*(api.confirm(token) for token in tokens)), timeout=20
    )
    assert Counter(status for status, _ in results) == {200: 2, 503: 18}
    assert sandbox.inventory == 0


async def test_peak_in_flight_counts_requests_in_progress_at_once(sandbox, api):
    """Five delayed confirms at once: the peak is 5, and none is in flight after."""
    sandbox.account.daily_limit = 100
    sandbox.account.monthly_limit = 100
    tokens = [await api.token() for _ in range(5)]
    sandbox.inject("confirm", Fault.delay(0.2), times=5)
    results = await asyncio.wait_for(
        asyncio.gather(*(api.confirm(token) for token in tokens)), timeout=20
    )
    assert [status for status, _ in results] == [200] * 5
    confirm = sandbox.counters["confirm"]
    assert (confirm.peak_in_flight, confirm.in_flight) == (5, 0)
    assert sandbox.counters["preview"].peak_in_flight == 1
    assert sandbox.in_flight() == 0


async def test_one_request_at_a_time_peaks_at_one(sandbox, api):
    """Sequential purchases never have two confirms in progress at once."""
    for _ in range(3):
        status, _ = await api.buy()
        assert status == 200
    assert sandbox.counters["confirm"].peak_in_flight == 1


async def test_wait_idle_returns_once_a_handler_outlives_its_client(sandbox, api):
    """A confirm whose client left is still in flight; wait_idle sees it commit."""
    token = await api.token()
    sandbox.inject("confirm", Fault.delay(0.3))
    task = asyncio.create_task(api.confirm(token))
    await sandbox.wait_for_requests("confirm")
    assert sandbox.in_flight("confirm") == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert sandbox.ledger == []
    await sandbox.wait_idle()
    assert sandbox.in_flight() == 0
    assert [charge.preview_token for charge in sandbox.purchases()] == [token]


async def test_wait_idle_times_out_while_a_request_hangs(sandbox, api):
    """A hanging confirm keeps the sandbox busy: wait_idle raises TimeoutError."""
    token = await api.token()
    sandbox.inject("confirm", Fault.hang())
    task = asyncio.create_task(api.confirm(token))
    await sandbox.wait_for_requests("confirm")
    with pytest.raises(TimeoutError):
        await sandbox.wait_idle(within=0.1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_short_hang_drops_the_connection_by_itself(sandbox, api):
    """Fault.hang(seconds=...) drops the connection after that time, unanswered."""
    token = await api.token()
    sandbox.inject("confirm", Fault.hang(seconds=0.1, after_commit=True))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.confirm(token)
    await sandbox.wait_idle()
    assert sandbox.requests[-1].status is None
    assert [charge.preview_token for charge in sandbox.purchases()] == [token]


async def test_wait_for_requests_counts_arrivals(sandbox, api):
    """wait_for_requests returns at once for past arrivals, times out for others."""
    await api.buy()
    await sandbox.wait_for_requests("confirm", 1)
    with pytest.raises(TimeoutError):
        await sandbox.wait_for_requests("confirm", 2, within=0.05)


def test_a_negative_hang_is_refused():
    """Fault.hang(seconds=-1) raises ValueError."""
    with pytest.raises(ValueError, match="negative"):
        Fault.hang(seconds=-1)
