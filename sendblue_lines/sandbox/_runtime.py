"""What a running sandbox's handlers share, and how a request finds it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import attrs
from aiohttp import web

from ._faults import FaultQueue
from ._records import RequestLog
from ._state import LimitsShape, Refusal, SandboxState

__all__ = [
    "Latency",
    "Runtime",
    "attach",
    "read_body",
    "release_app",
    "runtime_of",
    "serving",
]

Latency = float | Callable[[], float] | None


@attrs.define
class Runtime:
    """Everything the handlers read and change while the sandbox runs."""

    state: SandboxState
    faults: FaultQueue
    log: RequestLog
    latency: Latency = None
    limits_shape: LimitsShape = "canonical"
    closing: asyncio.Event = attrs.field(factory=asyncio.Event)

    def latency_seconds(self) -> float:
        """Draw the latency to add to the request that just arrived."""
        latency = self.latency() if callable(self.latency) else self.latency
        return max(float(latency or 0.0), 0.0)

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds``, waking early if the sandbox closes; True if still open."""
        if seconds > 0:
            with anyio.move_on_after(seconds):
                await self.closing.wait()
        return not self.closing.is_set()


@attrs.define
class _Held:
    """The application's reference to its `Runtime`, dropped by `release_app`.

    aiohttp keeps every application it served in a module-level cache (up to
    1024 of them), so whatever an application references outlives the
    Sandbox: the ledger, the request log and the queued faults of every
    sandbox a test suite closed would stay in memory.
    """

    runtime: Runtime | None


_RUNTIME = web.AppKey("sendblue_lines.sandbox.runtime", _Held)


def attach(app: web.Application, runtime: Runtime) -> None:
    """Make `runtime` what the handlers of `app` find."""
    app[_RUNTIME] = _Held(runtime)


def release_app(app: web.Application) -> None:
    """Let go of the runtime of an application that no longer serves."""
    app[_RUNTIME].runtime = None


def serving(app: web.Application) -> Runtime | None:
    """The runtime of `app`, or None once it was released."""
    return app[_RUNTIME].runtime


def runtime_of(request: web.Request) -> Runtime:
    """The runtime of the application serving `request`.

    Raises:
        web.HTTPServiceUnavailable: the application was released.
    """
    runtime = serving(request.app)
    if runtime is None:  # pragma: no cover - the server is shut down first
        raise web.HTTPServiceUnavailable
    return runtime


async def read_body(request: web.Request) -> bytes:
    """The body of `request`, as every handler reads it.

    Raises:
        Refusal: 413 when it is larger than the server accepts.
        ConnectionError: the client went away while sending it.
    """
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refusal(413, None, "The request body is too large") from None
