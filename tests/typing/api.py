"""The public signatures, pinned: type-checked with `mypy --strict`, never run.

A change to a public name, argument or return type breaks this file before it
breaks a user. Lines ending in `# type: ignore[...]` must stay errors: mypy's
`warn_unused_ignores` (part of strict) fails if one starts to type-check.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp

from sendblue_lines import (
    APIError,
    Attempt,
    ConfigurationError,
    DailyLimitReachedError,
    LimitWindow,
    LinesClient,
    MalformedResponseError,
    OutcomeUnknownError,
    Preview,
    ProvisionedLine,
    ProvisioningFailedError,
    ProvisioningLimits,
    RateLimitError,
    RetryPolicy,
    SendblueError,
    TokenExpiredError,
    TransportError,
    __version__,
)


def count(attempt: Attempt) -> None:
    method: str = attempt.method
    path: str = attempt.path
    number: int = attempt.attempt
    status: int | None = attempt.status
    elapsed: float = attempt.elapsed
    error: str | None = attempt.error
    sent: bool = attempt.sent
    del method, path, number, status, elapsed, error, sent


async def construct(session: aiohttp.ClientSession) -> None:
    from_env: LinesClient = LinesClient()
    full: LinesClient = LinesClient(
        "key id",
        "secret",
        base_url="https://api.sendblue.com",
        timeout=30.0,
        connect_timeout=10.0,
        session=session,
        retry=RetryPolicy(attempts=3, base_delay=0.25, max_delay=5.0),
        confirm_attempts=3,
        on_attempt=count,
    )
    LinesClient("key id", "secret", "https://api.sendblue.com")  # type: ignore[call-arg]
    observed: LinesClient = LinesClient(
        proxy="http://user:password@proxy.example:3128",
        trust_env=True,
        trace_configs=[aiohttp.TraceConfig()],
    )
    LinesClient(trace_configs=aiohttp.TraceConfig())  # type: ignore[arg-type]
    del observed
    RetryPolicy(3)  # type: ignore[call-arg]
    url: str = full.base_url
    key_id: str = full.api_key_id
    timeout: float = full.timeout
    policy: RetryPolicy = full.retry
    confirms: int = full.confirm_attempts
    closed: bool = full.closed
    version: str = __version__
    del from_env, url, key_id, timeout, policy, confirms, closed, version
    await full.aclose()


async def buy() -> ProvisionedLine | None:
    async with LinesClient() as client:
        same: LinesClient = client
        limits: ProvisioningLimits = await same.get_limits()
        daily: LimitWindow | None = limits.daily
        monthly: LimitWindow | None = limits.monthly
        known: bool = limits.known
        remaining: int | None = limits.remaining
        windows: dict[str, LimitWindow] = limits.windows()
        raw: Any = limits.raw
        if daily is not None:
            limit: int | None = daily.limit
            used: int | None = daily.used
            left: int | None = daily.remaining
            next_at: datetime | None = daily.next_available_at
            exhausted: bool = daily.exhausted
            del limit, used, left, next_at, exhausted
        del monthly, known, remaining, windows, raw

        preview: Preview = await client.preview()
        token: str = preview.token
        expires_at: datetime = preview.expires_at
        message: str = preview.message
        expired: bool = preview.expired(margin=5.0)
        del expires_at, message, expired
        await client.confirm(42)  # type: ignore[arg-type]
        try:
            line: ProvisionedLine = await client.confirm(preview)
            again: ProvisionedLine = await client.confirm(token)
        except OutcomeUnknownError as unknown:
            sent_token: str = unknown.preview_token
            first_sent_at: datetime = unknown.first_sent_at
            attempts: int = unknown.attempts
            reason: str = unknown.reason
            last_status: int | None = unknown.status
            last_raw: str | None = unknown.raw
            del sent_token, first_sent_at, attempts, reason, last_status, last_raw
            return None
        except ProvisioningFailedError as failed:
            failed_body: Mapping[str, Any] | None = failed.body
            del failed_body
            return None
        except TokenExpiredError:
            return None
        del again
        phone_number: str = line.phone_number
        worker_id: str | None = line.worker_id
        subscription_id: str | None = line.subscription_id
        del phone_number, worker_id, subscription_id
        return line


def inspect_errors(error: SendblueError) -> None:
    message: str = error.message
    del message
    if isinstance(error, APIError):
        status: int = error.status
        code: str | None = error.code
        body: Mapping[str, Any] | None = error.body
        del status, code, body
    if isinstance(error, RateLimitError):
        next_at: datetime | None = error.next_available_at
        del next_at
    if isinstance(error, TransportError):
        sent: bool = error.sent
        method: str = error.method
        del sent, method
    if isinstance(error, MalformedResponseError):
        raw: str | None = error.raw
        http_status: int | None = error.status
        del raw, http_status
    daily: type[RateLimitError] = DailyLimitReachedError
    config: type[SendblueError] = ConfigurationError
    del daily, config
