"""Fixtures for the sandbox's own tests: a sandbox on a frozen clock, raw HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest

from sendblue_lines.sandbox import ManualClock, Sandbox, SandboxAccount

START = datetime(2026, 5, 18, 14, 20, tzinfo=timezone.utc)
LIMITS = "/accounts/limits"
PREVIEW = "/accounts/lines/provision-preview"
CONFIRM = "/accounts/lines/provision-confirm"


class RawAPI:
    """Speaks plain HTTP to a sandbox; returns (status, parsed JSON body)."""

    def __init__(self, session: aiohttp.ClientSession, sandbox: Sandbox[Any]) -> None:
        self.session = session
        self.sandbox = sandbox

    async def call(
        self,
        method: str,
        path: str,
        *,
        account: SandboxAccount | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        sent = self.sandbox.auth_headers(account) if headers is None else headers
        async with self.session.request(
            method,
            self.sandbox.url + path,
            headers=sent,
            allow_redirects=False,
            **kwargs,
        ) as response:
            return response.status, await response.json(content_type=None)

    async def limits(self, account: SandboxAccount | None = None) -> tuple[int, Any]:
        return await self.call("GET", LIMITS, account=account)

    async def preview(self, account: SandboxAccount | None = None) -> tuple[int, Any]:
        return await self.call("POST", PREVIEW, account=account)

    async def confirm(
        self, token: str, account: SandboxAccount | None = None
    ) -> tuple[int, Any]:
        return await self.call(
            "POST", CONFIRM, account=account, json={"preview_token": token}
        )

    async def token(self, account: SandboxAccount | None = None) -> str:
        status, body = await self.preview(account)
        assert status == 200, body
        token: str = body["preview_token"]
        return token

    async def buy(self, account: SandboxAccount | None = None) -> tuple[int, Any]:
        return await self.confirm(await self.token(account), account)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def sandbox(clock: ManualClock) -> AsyncIterator[Sandbox[ManualClock]]:
    async with Sandbox(clock=clock) as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@pytest.fixture
def api(session: aiohttp.ClientSession, sandbox: Sandbox[ManualClock]) -> RawAPI:
    return RawAPI(session, sandbox)
