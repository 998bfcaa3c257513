"""PostgreSQL for the tests: the DSN, the probe, and a schema of the test's own.

The server comes from ``SENDBLUE_LINES_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Where none answers, a test
that needs one is skipped with a reason saying how to get one, unless
``SENDBLUE_LINES_REQUIRE_POSTGRES=1`` (as in CI): then it fails.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_DSN = os.environ.get("SENDBLUE_LINES_TEST_POSTGRES", DEFAULT_DSN)
REQUIRE_POSTGRES = os.environ.get("SENDBLUE_LINES_REQUIRE_POSTGRES") == "1"
HOW_TO_GET_ONE = (
    "start one, e.g. `docker run -d -p 127.0.0.1:5432:5432 "
    "-e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:15`, "
    "or point SENDBLUE_LINES_TEST_POSTGRES at one"
)


async def need_postgres() -> str:
    """The test DSN once a server answers there; else skip (fail where required)."""
    try:
        connection = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
        message = (
            f"no PostgreSQL answers at the test DSN ({type(e).__name__}: {e}); "
            f"{HOW_TO_GET_ONE}"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(f"SENDBLUE_LINES_REQUIRE_POSTGRES=1 but {message}")
        pytest.skip(message)
    await connection.close()
    return POSTGRES_DSN


@contextlib.asynccontextmanager
async def fresh_schema(dsn: str) -> AsyncIterator[str]:
    """The name of a schema nobody else uses, dropped (with its tables) on exit."""
    schema = "test_" + uuid.uuid4().hex[:16]
    try:
        yield schema
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()
