"""The one aioresponses helper: the aiohttp 3.14 shim, recorded requests, `ScriptedApi`.

Unit tests fake the HTTP API with aioresponses (the design's choice of
mock), and only through this module: it patches aioresponses so that it
works on aiohttp 3.14, reads what the mock recorded, and scripts answers
per endpoint with `ScriptedApi` (the `api` fixture, or `ScriptedApi.started()`
where a fixture cannot reach, as in a hypothesis test): queued answers for
flows (`limits`, `preview`, `confirm`, `fail`, ...), or one plain aioresponses
answer for a test of how the client reads it (`reply`, `requests`, `sent`).
Tests that need real sockets use the sandbox; a hand-written server stays
only for bytes or behaviours that the sandbox cannot give.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from typing import Any
from unittest import mock

import aiohttp
import aioresponses.core
from aioresponses import CallbackResult
from aioresponses import aioresponses as AioResponses
from yarl import URL

from sendblue_lines import RetryPolicy

__all__ = [
    "ENDPOINTS",
    "ERRORS",
    "UNUSABLE",
    "UNUSABLE_IDS",
    "AioResponses",
    "CallbackResult",
    "ScriptedApi",
    "all_calls",
    "calls",
    "canonical",
    "in_seconds",
    "iso",
    "merged",
    "sent_json",
]


class _ShimResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's `stream_writer`.

    Upstream issue pnuckowski/aioresponses#289 is open with no newer release;
    this test-only subclass supplies the missing argument.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", mock.Mock())
        super().__init__(*args, **kwargs)


aioresponses.core.ClientResponse = _ShimResponse  # type: ignore[misc]


def calls(mocked: AioResponses, method: str, url: str) -> list[Any]:
    """The requests aioresponses recorded for `method url`, in order."""
    return list(mocked.requests.get((method, URL(url)), []))


def all_calls(mocked: AioResponses) -> list[Any]:
    """Every request aioresponses recorded, whatever its URL."""
    return [call for found in mocked.requests.values() for call in found]


def sent_json(kwargs: dict[str, Any]) -> Any:
    """The JSON body of a request aioresponses recorded, or None without one.

    The client serializes bodies itself (a session's `json_serialize` must not
    change them) and sends them as `data=` bytes.
    """
    data = kwargs.get("data")
    if isinstance(data, aiohttp.BytesPayload):
        # The client's own session gets the bytes with their content type.
        data = data._value
    return None if data is None else json.loads(data)


BASE_URL = "https://api.sendblue.test"
LIMITS = "/accounts/limits"
PREVIEW = "/accounts/lines/provision-preview"
CONFIRM = "/accounts/lines/provision-confirm"
LINES_STATE = "/api/v2/lines/state"
#: Each endpoint by name: its method and path.
ENDPOINTS = {
    "limits": ("GET", LIMITS),
    "preview": ("POST", PREVIEW),
    "confirm": ("POST", CONFIRM),
    "lines_state": ("GET", LINES_STATE),
}


def _endpoint(name: str) -> tuple[str, str]:
    """The method and path of an endpoint given by name or by path."""
    if name in ENDPOINTS:
        return ENDPOINTS[name]
    [found] = [(method, path) for method, path in ENDPOINTS.values() if path == name]
    return found


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


#: What a required string field must never be (`...`: the field is missing).
UNUSABLE: list[Any] = ["", "   ", "\t\n", 0, 12.5, None, {}, ["lpv_x"], True, ...]
UNUSABLE_IDS = [
    "empty", "blank", "whitespace", "number", "float", "null", "object", "list",
    "boolean", "missing",
]  # fmt: skip


def merged(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` with `changes`; a change to `...` drops that field."""
    body = {**base, **changes}
    return {k: v for k, v in body.items() if v is not ...}


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


class ScriptedApi:
    """Registers answers on an aioresponses mock and records what was asked.

    Every answer is queued per endpoint and taken in order, so the answers
    go to the requests in the order they reach the mock. `calls` lists each
    request (endpoint and JSON body) in that order.
    """

    def __init__(self, mocked: AioResponses, base_url: str = BASE_URL) -> None:
        self.mocked = mocked
        self.base_url = base_url
        self.calls: list[tuple[str, Any]] = []
        self._tokens = itertools.count(1)
        self._numbers = itertools.count(1)
        self._queues: dict[str, deque[Any]] = {name: deque() for name in ENDPOINTS}
        self._sticky: dict[str, Any] = {}
        self._registered: set[str] = set()
        #: Seconds every preview and confirm answer waits (limits never wait).
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        #: The `Date` header of every scripted answer (None: no header).
        self.date: Callable[[], str | None] = lambda: formatdate(usegmt=True)

    @classmethod
    @contextmanager
    def started(cls, base_url: str = BASE_URL) -> Iterator[ScriptedApi]:
        """A ScriptedApi on a mock of its own, for code that cannot take fixtures."""
        with AioResponses() as mocked:
            yield cls(mocked, base_url)

    def url(self, name: str) -> str:
        """The full URL of the endpoint `name` (see `ENDPOINTS`) or path."""
        return self.base_url + _endpoint(name)[1]

    def reply(self, name: str, **answer: Any) -> str:
        """Register one plain aioresponses answer for `name`; return its URL.

        `answer` takes aioresponses' own keywords (`status`, `body`, `payload`,
        `exception`, `headers`, `content_type`, `callback`, `repeat`): for
        tests of the client's reading of one exact answer. Do not mix with the
        queued answers below on the same endpoint.
        """
        url = self.url(name)
        self.mocked.add(url, _endpoint(name)[0], **answer)
        return url

    def requests(self, name: str) -> list[Any]:
        """The requests the mock recorded for `name`, in order."""
        return calls(self.mocked, _endpoint(name)[0], self.url(name))

    def clear(self) -> None:
        """Forget every plain answer and recorded request (see `reply`)."""
        self.mocked.clear()

    def all_requests(self) -> list[Any]:
        """Every request the mock recorded, whatever its endpoint."""
        return all_calls(self.mocked)

    def sent(self, name: str) -> list[Any]:
        """The JSON bodies sent to `name`, in order (None for a request without)."""
        return [sent_json(call.kwargs) for call in self.requests(name)]

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
            date = self.date()
            headers = {} if date is None else {"Date": date}
            if text is not None:
                return CallbackResult(status=status, body=text, headers=headers)
            return CallbackResult(status=status, payload=payload, headers=headers)

        self.mocked.add(
            self.url(name), ENDPOINTS[name][0], callback=callback, repeat=True
        )

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
