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
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import attrs
import pytest

from sendblue_lines import PostgresJournal, SQLiteJournal
from sendblue_lines.journal import Journal

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_DSN = os.environ.get("SENDBLUE_LINES_TEST_POSTGRES", DEFAULT_DSN)
REQUIRE_POSTGRES = os.environ.get("SENDBLUE_LINES_REQUIRE_POSTGRES") == "1"
WORKER = Path(__file__).with_name("journal_worker.py")
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


@attrs.define
class Store:
    """One journal's storage, and a way to open any number of journals on it."""

    kind: str
    spec: dict[str, Any]
    make: Callable[..., Journal]

    async def sql(self, statement: str, *args: Any) -> Any:
        """Run one statement on the store behind the journal's back; fetch its rows."""
        if self.kind == "sqlite":
            import sqlite3

            def run() -> Any:
                connection = sqlite3.connect(self.spec["path"], isolation_level=None)
                try:
                    return connection.execute(statement, args).fetchall()
                finally:
                    connection.close()

            return await anyio.to_thread.run_sync(run)
        connection = await asyncpg.connect(self.spec["dsn"])
        try:
            await connection.execute(f'SET search_path TO "{self.spec["schema"]}"')
            return await connection.fetch(statement, *args)
        finally:
            await connection.close()

    def worker_command(self, action: str, **args: Any) -> list[str]:
        """The command line of a child process that does `action` on this store."""
        return [
            sys.executable,
            str(WORKER),
            json.dumps(self.spec),
            action,
            json.dumps(args),
        ]


def open_spec(spec: dict[str, Any]) -> Journal:
    """Build a journal from a store's spec (as the worker process does)."""
    if spec["kind"] == "sqlite":
        return SQLiteJournal(spec["path"], **spec.get("options", {}))
    return PostgresJournal(
        spec["dsn"], schema=spec["schema"], **spec.get("options", {})
    )


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
