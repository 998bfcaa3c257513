"""Helpers for the Provisioner's tests: quick retries, leftover tasks, the sandbox.

Kept out of `conftest.py` so that test modules can import them by a name no
other conftest shadows.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import sendblue_lines
from sendblue_lines import (
    LinesClient,
    OutcomeUnknownError,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    RetryPolicy,
)
from sendblue_lines.sandbox import Sandbox

KEY_ID = "key-id-for-provisioner-tests"
#: The scripted client's secret, unique to this session and never to be seen.
SECRET = "s3cr3t-provisioner-" + secrets.token_hex(12)
#: Retries of safe calls that do not wait.
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
#: NoLinesAvailableError retries that do not wait.
FAST_NO_LINES = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)

#: The `make` fixture's type: builds a Provisioner on the scripted client.
Make = Callable[..., Provisioner]

PACKAGE_DIR = sendblue_lines.__file__.rsplit("/", 1)[0]


def our_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still running code of the package, apart from the test's own."""
    found = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_filename.startswith(PACKAGE_DIR):
            found.append(task)
    return found


def connect(sandbox: Sandbox[Any], **options: Any) -> LinesClient:
    """A LinesClient on the sandbox's default account (its secret is its own)."""
    options.setdefault("retry", NO_WAIT)
    return LinesClient(
        sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url, **options
    )


def requests(sandbox: Sandbox[Any], endpoint: str) -> int:
    """How many requests reached the sandbox's `endpoint`."""
    return sandbox.counters[endpoint].requests


def check_ledger(sandbox: Sandbox[Any], outcomes: list[ProvisionOutcome]) -> None:
    """Every charge in the sandbox's ledger is reported exactly once, nothing else.

    A line reports its charge by phone number, an `OutcomeUnknownError` by its
    token; each charge that failed to provision has its `ProvisioningFailedError`.
    """
    reported: list[str] = []
    by_number = {c.phone_number: c.preview_token for c in sandbox.ledger}
    for outcome in outcomes:
        if outcome.line is not None:
            reported.append(by_number[outcome.line.phone_number])
        elif isinstance(outcome.error, OutcomeUnknownError):
            reported.append(outcome.error.preview_token)
    failed = [c for c in sandbox.ledger if not c.provisioned]
    pf = [o for o in outcomes if isinstance(o.error, ProvisioningFailedError)]
    assert len(pf) == len(failed)
    assert sorted(reported) == sorted(
        c.preview_token for c in sandbox.ledger if c.provisioned
    )
