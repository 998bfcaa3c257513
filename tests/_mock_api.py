"""Scripted aioresponses answers for the Provisioner's unit tests.

`MockApi` registers one answer per call, in order, and records every request
that reached it (endpoint and JSON body) in one ordered list, so tests can
assert on what was sent and in which order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from typing import Any

import aiohttp
from aioresponses import CallbackResult
from aioresponses import aioresponses as AioResponses
from foundation_support import sent_json

from sendblue_lines import RetryPolicy

BASE_URL = "https://api.provisioner.test"
KEY_ID = "key-id-for-provisioner-tests"
SECRET = "s3cr3t-provisioner-never-to-be-seen"
LIMITS_URL = BASE_URL + "/accounts/limits"
PREVIEW_URL = BASE_URL + "/accounts/lines/provision-preview"
CONFIRM_URL = BASE_URL + "/accounts/lines/provision-confirm"
#: Retries of safe calls that do not wait.
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)

#: NoLinesAvailableError retries that do not wait.
FAST_NO_LINES = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


def iso(moment: datetime) -> str:
    """The spec's timestamp form: UTC, milliseconds, `Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def in_seconds(seconds: float) -> str:
    """An ISO timestamp `seconds` from now."""
    return iso(datetime.now(timezone.utc) + timedelta(seconds=seconds))


def canonical(
    daily: int | None,
    monthly: int | None,
    *,
    daily_limit: int = 3,
    monthly_limit: int = 10,
    next_daily: str | None = None,
    next_monthly: str | None = None,
) -> dict[str, Any]:
    """A canonical limits body with these `remaining` values (None: no window)."""
    limits: dict[str, Any] = {}
    if daily is not None:
        limits["api_provision_daily"] = {
            "limit": daily_limit,
            "used": daily_limit - daily,
            "remaining": daily,
            "window": "rolling_24h",
            "next_available_at": next_daily,
        }
    if monthly is not None:
        limits["api_provision_monthly"] = {
            "limit": monthly_limit,
            "used": monthly_limit - monthly,
            "remaining": monthly,
            "window": "rolling_30d",
            "next_available_at": next_monthly,
        }
    return {"status": "OK", "limits": limits}


ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "400": (400, {"status": "ERROR", "message": "preview_token is required"}),
    "401": (401, {"status": "ERROR", "message": "Unauthorized"}),
    "402": (402, {"status": "ERROR", "error": "no_card_on_file", "message": "No card"}),
    "403": (403, {"status": "ERROR", "message": "Not on the inbound_only plan"}),
    "404": (404, {"status": "ERROR", "message": "Not found"}),
    "410": (410, {"status": "ERROR", "error": "token_expired", "message": "Expired"}),
    "429d": (
        429,
        {
            "status": "ERROR",
            "error": "daily_limit_reached",
            "message": "Maximum 3 lines can be added per day via API",
        },
    ),
    "429m": (
        429,
        {"status": "ERROR", "error": "monthly_limit_reached", "message": "Monthly"},
    ),
    "429": (429, {"status": "ERROR", "message": "Too many requests"}),
    "500pf": (
        500,
        {
            "status": "ERROR",
            "error": "provisioning_failed",
            "message": "Subscription created but provisioning failed",
        },
    ),
    "502": (502, {"status": "ERROR", "message": "Bad gateway"}),
    "503nl": (
        503,
        {"status": "ERROR", "error": "no_lines_available", "message": "No lines"},
    ),
}


class MockApi:
    """Registers answers on an aioresponses mock and records what was asked."""

    def __init__(self, mocked: AioResponses) -> None:
        self.mocked = mocked
        self.calls: list[tuple[str, Any]] = []
        self._tokens = itertools.count(1)
        self._numbers = itertools.count(1)
        self._queues: dict[str, deque[Any]] = {
            "limits": deque(),
            "preview": deque(),
            "confirm": deque(),
        }
        self._sticky: dict[str, Any] = {}
        self._registered: set[str] = set()
        #: Seconds every preview and confirm answer waits (limits never wait).
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0

    def names(self) -> list[str]:
        """The endpoints called, in order."""
        return [name for name, _ in self.calls]

    def count(self, name: str) -> int:
        """How many calls reached `name`."""
        return sum(1 for called, _ in self.calls if called == name)

    def confirmed_tokens(self) -> list[str]:
        """The tokens sent to confirm, in order."""
        return [body["preview_token"] for name, body in self.calls if name == "confirm"]

    def _answer(
        self,
        name: str,
        status: int,
        payload: Any,
        repeat: bool | int = False,
        *,
        delay: float | None = None,
        exception: Exception | None = None,
        text: str | None = None,
    ) -> None:
        # One repeating matcher per endpoint, answering from our own queue:
        # aioresponses removes a used matcher only after its callback has run,
        # so concurrent requests could otherwise share one scripted answer.
        wait = self.delay if delay is None else delay
        count = 1 if repeat is False else (1_000_000 if repeat is True else int(repeat))
        for _ in range(count if count < 1_000_000 else 1):
            self._queues[name].append((status, payload, wait, exception, text))
        if count >= 1_000_000:
            self._sticky[name] = (status, payload, wait, exception, text)
        if name in self._registered:
            return
        self._registered.add(name)

        async def callback(url: object, **kwargs: Any) -> CallbackResult:
            queue = self._queues[name]
            if queue:
                status, payload, wait, exception, text = queue.popleft()
            elif name in self._sticky:
                status, payload, wait, exception, text = self._sticky[name]
            else:
                raise aiohttp.ClientConnectionError(f"no answer scripted for {name}")
            self.calls.append((name, sent_json(kwargs)))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if wait:
                    await asyncio.sleep(wait)
            finally:
                self.in_flight -= 1
            if exception is not None:
                raise exception
            # A real server dates every answer; the client reads a token's
            # validity from `expires_at` against this header.
            headers = {"Date": formatdate(usegmt=True)}
            if text is not None:
                return CallbackResult(status=status, body=text, headers=headers)
            return CallbackResult(status=status, payload=payload, headers=headers)

        method, url = {
            "limits": ("GET", LIMITS_URL),
            "preview": ("POST", PREVIEW_URL),
            "confirm": ("POST", CONFIRM_URL),
        }[name]
        self.mocked.add(url, method, callback=callback, repeat=True)

    def limits(self, body: Any = None, *, repeat: bool | int = False) -> None:
        """Answer the limits read with `body` (default: plenty left)."""
        plenty = canonical(50, 50, daily_limit=50, monthly_limit=50)
        self._answer("limits", 200, body or plenty, repeat, delay=0.0)

    def preview(
        self, *, expires_in: float = 600.0, times: int = 1, delay: float | None = None
    ) -> list[str]:
        """Answer `times` previews with fresh tokens; return the tokens."""
        tokens = []
        for _ in range(times):
            token = f"lpv_test{next(self._tokens):04d}"
            tokens.append(token)
            self._answer(
                "preview",
                200,
                {
                    "status": "OK",
                    "preview_token": token,
                    "expires_at": in_seconds(expires_in),
                    "message": "Call the confirm endpoint within 10 minutes.",
                },
                False,
                delay=delay,
            )
        return tokens

    def confirm(self, *, times: int = 1, delay: float | None = None) -> None:
        """Answer `times` confirms with a fresh line each."""
        for _ in range(times):
            number = next(self._numbers)
            self._answer(
                "confirm",
                200,
                {
                    "status": "OK",
                    "phone_number": f"+1415555{number:04d}",
                    "worker_id": f"worker_{number}",
                    "subscription_id": f"sub_{number}",
                },
                False,
                delay=delay,
            )

    def fail(
        self, name: str, error: str, *, times: int = 1, delay: float | None = None
    ) -> None:
        """Answer `times` calls to `name` with one of `ERRORS`."""
        status, body = ERRORS[error]
        for _ in range(times):
            self._answer(name, status, body, False, delay=delay)

    def raise_(self, name: str, exception: Exception, *, times: int = 1) -> None:
        """Make `times` calls to `name` fail with `exception` (a network failure)."""
        for _ in range(times):
            self._answer(name, 0, None, False, exception=exception)

    def raw(self, name: str, status: int, body: Any) -> None:
        """Answer one call to `name` with any status and JSON body."""
        self._answer(name, status, body, False)

    def text(self, name: str, status: int, text: str) -> None:
        """Answer one call to `name` with any status and a raw text body."""
        self._answer(name, status, None, False, text=text)

    def buys(self, count: int = 1) -> None:
        """Answer `count` previews and confirms (limits not included)."""
        self.preview(times=count)
        self.confirm(times=count)
