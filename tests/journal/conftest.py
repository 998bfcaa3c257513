"""Both journals, one fixture: every test of the journal runs on SQLite and PostgreSQL.

PostgreSQL comes from `postgres_support` (the DSN, skipped or required as
it says); each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from journal_support import Store
from postgres_support import fresh_schema, need_postgres

from sendblue_lines import PostgresJournal, SQLiteJournal
from sendblue_lines.journal import Journal


@pytest.fixture
async def postgres_dsn() -> str:
    """The test DSN, once a server answers there (see `postgres_support`)."""
    return await need_postgres()


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
    async with _postgres(await need_postgres()) as made:
        yield made


@pytest.fixture
async def postgres_store(postgres_dsn: str) -> AsyncIterator[Store]:
    """A fresh, empty PostgreSQL journal store, for what only PostgreSQL has."""
    async with _postgres(postgres_dsn) as made:
        yield made


@contextlib.asynccontextmanager
async def _postgres(dsn: str) -> AsyncIterator[Store]:
    async with fresh_schema(dsn) as schema:
        spec = {"kind": "postgres", "dsn": dsn, "schema": schema}

        def make_postgres(**options: Any) -> Journal:
            return PostgresJournal(dsn, schema=schema, **options)

        yield Store("postgres", spec, make_postgres)


@pytest.fixture
async def journal(store: Store) -> AsyncIterator[Journal]:
    """An open journal on a fresh store."""
    async with store.make() as opened:
        yield opened
