"""The ``sendblue_sandbox`` pytest fixture, registered through ``pytest11``.

Installing ``sendblue-lines`` makes the fixtures available in every test
suite, without a conftest. They work in pytest-asyncio's ``auto`` and
``strict`` modes. This module imports only pytest until a fixture is used,
so it costs nothing to suites that never ask for one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._clock import ManualClock
    from ._server import Sandbox

# pytest-asyncio's own decorator makes the fixtures work in its strict mode
# too; without it, whichever plugin runs async tests picks them up.
try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover
    _async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = ["sendblue_sandbox", "sendblue_sandbox_factory"]


@_async_fixture
async def sendblue_sandbox() -> AsyncIterator[Sandbox[ManualClock]]:
    """A started sandbox with one default account, fresh for each test.

    Its clock follows real time and moves on with ``sandbox.clock.advance()``.
    It is closed when the test ends.
    """
    from ._server import Sandbox

    async with Sandbox() as sandbox:
        yield sandbox


@_async_fixture
async def sendblue_sandbox_factory() -> AsyncIterator[
    Callable[..., Awaitable[Sandbox[Any]]]
]:
    """A coroutine function that starts sandboxes with any `Sandbox` options.

    Every sandbox it started is closed when the test ends::

        async def test_two_accounts(sendblue_sandbox_factory):
            sandbox = await sendblue_sandbox_factory(inventory=1)
    """
    from ._server import Sandbox

    started: list[Sandbox[Any]] = []

    async def start(**options: Any) -> Sandbox[Any]:
        sandbox: Sandbox[Any] = Sandbox(**options)
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    try:
        yield start
    finally:
        for sandbox in reversed(started):
            await sandbox.aclose()
