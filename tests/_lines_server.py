"""A small stateful provisioning server on 127.0.0.1 for the Provisioner's tests.

It keeps what the property and cancellation tests need to check: which
tokens were issued, spent and charged, which got an unclear answer, and how
many confirms were in flight at once. Each endpoint answers from a queue of
scripted actions, then normally.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

from aiohttp import web

KEY_ID = "fake-key-id"
SECRET = "fake-s3cr3t-for-the-provisioner-tests"
HANG_SECONDS = 2.0
#: How long the "slow" preview and "delay" confirm actions wait.
SLOW_SECONDS = 0.3

#: Confirm actions after which the client cannot know what happened.
UNCLEAR = frozenset(
    {
        "drop_before",
        "drop_after",
        "502_before",
        "502_after",
        "hang_before",
        "hang_after",
    }
)


def limits_body(
    daily: int | None = 3,
    monthly: int | None = 10,
    *,
    daily_limit: int = 3,
    monthly_limit: int = 10,
    next_daily: str | None = None,
    next_monthly: str | None = None,
) -> dict[str, Any]:
    """The canonical limits answer with the given `remaining` per window."""

    def window(limit: int, left: int | None, span: str, nxt: str | None) -> Any:
        body: dict[str, Any] = {"limit": limit, "used": limit - (left or 0)}
        if left is not None:
            body["remaining"] = left
        body["window"] = span
        body["next_available_at"] = nxt
        return body

    return {
        "status": "OK",
        "limits": {
            "api_provision_daily": window(
                daily_limit, daily, "rolling_24h", next_daily
            ),
            "api_provision_monthly": window(
                monthly_limit, monthly, "rolling_30d", next_monthly
            ),
        },
    }


def _error(status: int, code: str | None, message: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"status": "ERROR", "message": message, **extra}
    if code is not None:
        body["error"] = code
    return web.json_response(body, status=status)


class LinesServer:
    """The fake server; `async with LinesServer() as server:` binds a free port."""

    def __init__(
        self,
        *,
        limits: Mapping[str, Any] | None = None,
        token_ttl: float = 600.0,
        confirm_delay: float = 0.0,
        preview_delay: float = 0.0,
        hang_seconds: float = HANG_SECONDS,
    ) -> None:
        self.limits: Mapping[str, Any] = limits if limits is not None else limits_body()
        self.token_ttl = token_ttl
        self.confirm_delay = confirm_delay
        self.preview_delay = preview_delay
        self.hang_seconds = hang_seconds
        self.script: dict[str, deque[str]] = {
            "limits": deque(),
            "preview": deque(),
            "confirm": deque(),
        }
        self.issued: list[str] = []
        self.spent: set[str] = set()
        self.charges: dict[str, str] = {}  # token -> "line" | "provisioning_failed"
        self.unclear: set[str] = set()  # tokens that got an unclear answer
        self.log: list[tuple[str, str | None, str]] = []  # endpoint, token, action
        self.confirming = 0
        self.max_confirming = 0
        self.running = 0
        self._idle = asyncio.Event()
        #: Set when the first confirm reaches the server.
        self.confirm_arrived = asyncio.Event()
        self._tokens = itertools.count(1)
        self._numbers = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> LinesServer:
        app = web.Application()
        app.router.add_get("/accounts/limits", self._limits)
        app.router.add_post("/accounts/lines/provision-preview", self._preview)
        app.router.add_post("/accounts/lines/provision-confirm", self._confirm)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def queue(self, endpoint: str, *actions: str) -> None:
        """Answer the next requests to `endpoint` with `actions`, in order."""
        self.script[endpoint].extend(actions)

    def count(self, endpoint: str) -> int:
        """How many requests reached `endpoint`."""
        return sum(1 for name, _, _ in self.log if name == endpoint)

    async def settle(self, limit: float = 5.0) -> None:
        """Wait until no handler is running (a handler outlives its client)."""
        if self.running:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), limit)
            except asyncio.TimeoutError:
                raise AssertionError("a fake server handler is still running") from None

    def _enter(self) -> None:
        self.running += 1

    def _leave(self) -> None:
        self.running -= 1
        if self.running == 0:
            self._idle.set()

    def _next(self, endpoint: str) -> str:
        queue = self.script[endpoint]
        return queue.popleft() if queue else "ok"

    @staticmethod
    def _authorized(request: web.Request) -> bool:
        return (
            request.headers.get("sb-api-key-id") == KEY_ID
            and request.headers.get("sb-api-secret-key") == SECRET
        )

    async def _limits(self, request: web.Request) -> web.StreamResponse:
        action = self._next("limits")
        self.log.append(("limits", None, action))
        if not self._authorized(request):
            return _error(401, None, "Unauthorized")
        if action == "ok":
            return web.json_response(dict(self.limits))
        return self._status(action)

    async def _preview(self, request: web.Request) -> web.StreamResponse:
        self._enter()
        try:
            action = self._next("preview")
            self.log.append(("preview", None, action))
            if self.preview_delay:
                await asyncio.sleep(self.preview_delay)
            if not self._authorized(request):
                return _error(401, None, "Unauthorized")
            if action == "slow":
                await asyncio.sleep(SLOW_SECONDS)
            elif action != "ok":
                return self._status(action)
            token = f"lpv_fake{next(self._tokens):06d}"
            self.issued.append(token)
            return web.json_response(
                {
                    "status": "OK",
                    "preview_token": token,
                    "expires_at": _in_seconds(self.token_ttl),
                    "message": "Call the confirm endpoint within 10 minutes.",
                }
            )
        finally:
            self._leave()

    async def _confirm(self, request: web.Request) -> web.StreamResponse:
        self._enter()
        self.confirming += 1
        self.max_confirming = max(self.max_confirming, self.confirming)
        try:
            body = await request.json()
            token = body.get("preview_token") if isinstance(body, dict) else None
            action = self._next("confirm")
            self.log.append(("confirm", token, action))
            self.confirm_arrived.set()
            if self.confirm_delay:
                await asyncio.sleep(self.confirm_delay)
            if not self._authorized(request):
                return _error(401, None, "Unauthorized")
            if not isinstance(token, str):
                return _error(400, None, "preview_token is required")
            if action in UNCLEAR:
                self.unclear.add(token)
            if action in ("ok", "delay"):
                if action == "delay":
                    await asyncio.sleep(SLOW_SECONDS)
                return self._commit(token)
            if action == "pf":
                if token in self.spent or token not in self.issued:
                    return _token_expired()
                self.spent.add(token)
                self.charges[token] = "provisioning_failed"
                return _error(
                    500,
                    "provisioning_failed",
                    "Subscription created but provisioning failed",
                    preview_token=token,
                )
            if action.endswith("_after"):
                self._commit(token)
                return await self._unclear_answer(request, action)
            if action.endswith("_before"):
                return await self._unclear_answer(request, action)
            return self._status(action)
        finally:
            self.confirming -= 1
            self._leave()

    def _commit(self, token: str) -> web.Response:
        if token in self.spent or token not in self.issued:
            return _token_expired()
        self.spent.add(token)
        self.charges[token] = "line"
        number = next(self._numbers)
        return web.json_response(
            {
                "status": "OK",
                "phone_number": f"+1415555{number:04d}",
                "worker_id": f"worker_{number}",
                "subscription_id": f"sub_{token}",
            }
        )

    async def _unclear_answer(
        self, request: web.Request, action: str
    ) -> web.StreamResponse:
        kind = action.split("_")[0]
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=499)
        if kind == "502":
            return web.Response(
                status=502,
                text="<html>502 Bad Gateway</html>",
                content_type="text/html",
            )
        await asyncio.sleep(self.hang_seconds)
        return web.Response(status=504, text="too late")

    @staticmethod
    def _status(action: str) -> web.Response:
        answers = {
            "401": (401, None, "Unauthorized"),
            "402": (402, "no_card_on_file", "No card on file"),
            "403": (403, None, "Not on the inbound_only plan"),
            "404": (404, None, "Not found"),
            "410": (410, "token_expired", "Token expired or already used"),
            "429d": (
                429,
                "daily_limit_reached",
                "Maximum 3 lines can be added per day via API",
            ),
            "429m": (429, "monthly_limit_reached", "Maximum 10 lines per month"),
            "503nl": (503, "no_lines_available", "No lines available"),
            "503": (503, None, "Service unavailable"),
            "500": (500, None, "Internal error"),
        }
        status, code, message = answers[action]
        return _error(status, code, message)


def _token_expired() -> web.Response:
    return _error(410, "token_expired", "Token expired or already used")


def _in_seconds(seconds: float) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
