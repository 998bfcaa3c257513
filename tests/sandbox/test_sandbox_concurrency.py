"""Concurrent confirms cannot oversell: check and commit are one step."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

from sendblue_lines.sandbox import ManualClock, Sandbox


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
