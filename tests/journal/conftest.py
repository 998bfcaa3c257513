"""Both journals, one fixture: every test of the journal runs on SQLite and PostgreSQL.

PostgreSQL comes from ``SENDBLUE_LINES_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets a schema of its
own, dropped afterwards. Where no server answers, the PostgreSQL half is
skipped with a reason saying how to get one, unless
``SENDBLUE_LINES_REQUIRE_POSTGRES=1`` (as in CI): then it fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from journal_support import Store

from sendblue_lines import PostgresJournal, SQLiteJournal
from sendblue_lines.journal import Journal

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_DSN = os.environ.get("SENDBLUE_LINES_TEST_POSTGRES", DEFAULT_DSN)
REQUIRE_POSTGRES = os.environ.get("SENDBLUE_LINES_REQUIRE_POSTGRES") == "1"
HOW_TO_GET_ONE = (
    "start one, e.g. `docker run -d -p 127.0.0.1:5432:5432 "
    "-e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:15`, "
    "or point SENDBLUE_LINES_TEST_POSTGRES at one"
)


def _probe() -> str | None:
    """Return why PostgreSQL cannot be used, or None when it answers."""

    async def connect() -> None:
        connection = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        await connection.close()

    # The probe runs on a loop of its own, in a thread: the session fixture
    # may be first asked for from inside a test's running loop.
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, connect()).result()
    except (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        TimeoutError,
    ) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    problem = _probe()
    if problem is None:
        return POSTGRES_DSN
    message = f"no PostgreSQL answers at the test DSN ({problem}); {HOW_TO_GET_ONE}"
    if REQUIRE_POSTGRES:
        pytest.fail(f"SENDBLUE_LINES_REQUIRE_POSTGRES=1 but {message}")
    pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty journal store on each backend."""
    if request.param == "sqlite":
        path = str(tmp_path / "journal.sqlite3")
        spec: dict[str, Any] = {"kind": "sqlite", "path": path}

        def make_sqlite(**options: Any) -> Journal:
            return SQLiteJournal(path, **options)

        yield Store("sqlite", spec, make_sqlite)
        return
    async with _postgres(request.getfixturevalue("postgres_dsn")) as made:
        yield made


@pytest.fixture
async def postgres_store(postgres_dsn: str) -> AsyncIterator[Store]:
    """A fresh, empty PostgreSQL journal store, for what only PostgreSQL has."""
    async with _postgres(postgres_dsn) as made:
        yield made


@contextlib.asynccontextmanager
async def _postgres(dsn: str) -> AsyncIterator[Store]:
    schema = "test_" + uuid.uuid4().hex[:16]
    spec = {"kind": "postgres", "dsn": dsn, "schema": schema}

    def make_postgres(**options: Any) -> Journal:
        return PostgresJournal(dsn, schema=schema, **options)

    try:
        yield Store("postgres", spec, make_postgres)
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()


@pytest.fixture
async def journal(store: Store) -> AsyncIterator[Journal]:
    """An open journal on a fresh store."""
    async with store.make() as opened:
        yield opened
