"""Fixtures of the reliability suite: a sandbox whose account uses the canary secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from reliability_support import PLENTY

from sendblue_lines.sandbox import ManualClock, Sandbox, SandboxAccount


@pytest.fixture
async def sandbox(secret_canary: Any) -> AsyncIterator[Sandbox[ManualClock]]:
    """A fresh sandbox; its one account has the session's canary secret, no limits."""
    account = SandboxAccount(
        "reliability-key-id",
        secret_canary.canary,
        daily_limit=PLENTY,
        monthly_limit=PLENTY,
    )
    async with Sandbox(accounts=[account]) as started:
        yield started
