"""A journal opens only a new or empty store, or one it made: never another's.

Every refused file is compared byte for byte before and after, with no
``-wal``, ``-shm`` or ``-journal`` file left beside it. A journal written
by version 1 of the schema, before journals were marked, still opens. On
PostgreSQL, a schema that holds tables but no journal is refused the same way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
from postgres_support import fresh_schema

from sendblue_lines import JournalError, PostgresJournal, SQLiteJournal
from sendblue_lines.journal import default_owner

ACCOUNT = "key-id-a"
EXPIRES = datetime.now(timezone.utc) + timedelta(minutes=10)
#: The application id our journals carry ("SBLN"), as docs/journal.md gives it.
OURS = 0x53424C4E
#: The schema of version 1 as that code wrote it, frozen here: later code
#: must keep opening such files whatever its own schema becomes.
V1_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE purchases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'pending', 'bought',
        'not_bought', 'provisioning_failed', 'unknown')),
    preview_token TEXT UNIQUE,
    expires_at TEXT,
    created_at TEXT NOT NULL,
    first_sent_at TEXT,
    settled_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    phone_number TEXT,
    worker_id TEXT,
    subscription_id TEXT,
    error_code TEXT,
    message TEXT,
    evidence TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX purchases_open ON purchases (account, state);
"""
V1_VERSION = "INSERT INTO meta VALUES ('schema_version', '1');"
V1_ENTRY = """
INSERT INTO purchases (account, owner, state, preview_token, expires_at,
    created_at, settled_at, attempts, phone_number, worker_id, subscription_id)
VALUES ('key-id-a', 'host:1:1', 'bought', 'lpv_from_version_1',
    '2026-05-18T14:30:00.000000+00:00', '2026-05-18T14:20:00.000000+00:00',
    '2026-05-18T14:21:00.000000+00:00', 1, '+14155550100', 'worker_v1', 'sub_v1');
"""
NOTES = "CREATE TABLE notes (body TEXT);"
SETTLED_INDEX = "CREATE INDEX purchases_settled ON purchases (account, settled_at);"


def database(path: Path, script: str, *, wal: bool = False) -> None:
    """Make a SQLite file at `path` with `script`, mode 0600, closed cleanly."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        if wal:
            connection.execute("PRAGMA journal_mode = WAL")
        connection.executescript(script)
    path.chmod(0o600)


def app_with_purchases(path: Path) -> None:
    """Another application's database in WAL mode, with a `purchases` table."""
    database(
        path,
        "CREATE TABLE purchases (id INTEGER PRIMARY KEY, sku TEXT, cents INTEGER);"
        "INSERT INTO purchases (sku, cents) VALUES ('tea', 450);",
        wal=True,
    )


def app_with_other_tables(path: Path) -> None:
    """Another application's database with tables of its own, none like ours."""
    database(
        path,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER);"
        "INSERT INTO users (name) VALUES ('ada');",
    )


def another_application_id(path: Path) -> None:
    """A database marked by another application (Fossil's id), with no table."""
    database(path, "PRAGMA application_id = 252006674;")


def version_1_and_more(path: Path) -> None:
    """Our version-1 shape with one table added: not exactly ours."""
    database(path, V1_TABLES + SETTLED_INDEX + V1_VERSION + NOTES)


def purchases_of_another_shape(path: Path) -> None:
    """Our table and index names, but a `purchases` whose columns are not ours."""
    database(path, V1_TABLES.replace("evidence TEXT", "notes TEXT") + V1_VERSION)


def not_sqlite(path: Path) -> None:
    """A text file."""
    path.write_bytes(b"name,phone\nada,+14155550100\n" * 50)
    path.chmod(0o600)


def group_writable_app(path: Path) -> None:
    """Another application's database that its group may write."""
    app_with_other_tables(path)
    path.chmod(0o664)


REFUSED: list[tuple[Callable[[Path], None], str]] = [
    (app_with_purchases, r"tables of its own \(purchases\)"),
    (app_with_other_tables, r"tables of its own \(orders, users\)"),
    (another_application_id, r"another application \(application_id 0x0f055112\)"),
    (version_1_and_more, r"tables of its own \(meta, notes, purchases"),
    (purchases_of_another_shape, r"tables of its own \(meta, purchases"),
    (not_sqlite, r"not a SQLite database"),
    (group_writable_app, r"tables of its own \(orders, users\)"),
]


def beside(path: Path) -> list[str]:
    """The names of the files SQLite may leave beside `path`."""
    return sorted(
        p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-")
    )


@pytest.mark.parametrize(
    ("make", "found"), REFUSED, ids=[make.__name__ for make, _ in REFUSED]
)
async def test_a_file_that_is_not_a_journal_is_refused_unchanged(
    tmp_path: Path, make: Callable[[Path], None], found: str
) -> None:
    """Another application's file is a JournalError saying what it is; unchanged."""
    path = tmp_path / "app.db"
    make(path)
    before, mode = path.read_bytes(), path.stat().st_mode
    with pytest.raises(JournalError, match=found) as caught:
        async with SQLiteJournal(path):
            pass
    message = str(caught.value)
    assert "not a sendblue-lines journal" in message
    assert message.endswith("the file was left unchanged")
    assert "chmod" not in message
    assert caught.value.operation == "open the journal"
    assert path.read_bytes() == before
    assert path.stat().st_mode == mode
    assert beside(path) == []


@pytest.mark.parametrize("settled_index", [True, False], ids=["full", "early"])
async def test_a_version_1_journal_opens_and_is_marked(
    tmp_path: Path, settled_index: bool
) -> None:
    """A version-1 journal (no mark) opens with its entries, and is marked ours."""
    path = tmp_path / "journal.sqlite3"
    index = SETTLED_INDEX if settled_index else ""
    database(path, V1_TABLES + index + V1_VERSION + V1_ENTRY, wal=True)
    for _ in range(2):  # marked on the first open, recognised by the mark after
        async with SQLiteJournal(path) as journal:
            [entry] = await journal.entries()
            assert entry.preview_token == "lpv_from_version_1"
            assert entry.line is not None
            assert entry.line.phone_number == "+14155550100"
        with closing(sqlite3.connect(path)) as connection:
            assert connection.execute("PRAGMA application_id").fetchone() == (OURS,)


@pytest.mark.parametrize("kind", ["new", "zero bytes", "no tables"])
async def test_a_new_or_empty_file_becomes_a_marked_journal(
    tmp_path: Path, kind: str
) -> None:
    """A missing file, an empty one, or a database with no table is made a journal."""
    path = tmp_path / "journal.sqlite3"
    if kind == "zero bytes":
        path.write_bytes(b"")
        path.chmod(0o600)
    elif kind == "no tables":
        database(path, "CREATE TABLE t (x); DROP TABLE t;")
        assert path.stat().st_size > 0
    async with SQLiteJournal(path) as journal:
        [slot] = await journal.reserve(ACCOUNT, default_owner(), 1, None)
        await journal.record_intent(slot, "lpv_new_file", EXPIRES)
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA application_id").fetchone() == (OURS,)
    async with SQLiteJournal(path) as journal:
        assert [e.preview_token for e in await journal.entries()] == ["lpv_new_file"]


async def test_a_journal_marked_by_us_with_extra_tables_still_opens(
    tmp_path: Path,
) -> None:
    """The mark, not the tables, says ours: a table added later does not lock us out."""
    path = tmp_path / "journal.sqlite3"
    async with SQLiteJournal(path):
        pass
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    async with SQLiteJournal(path) as journal:
        assert await journal.entries() == []


async def test_a_postgres_schema_of_another_application_is_refused_unchanged(
    postgres_dsn: str,
) -> None:
    """A schema with tables but no journal is refused before anything is created."""
    async with fresh_schema(postgres_dsn) as schema:
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(
                f'CREATE SCHEMA "{schema}"; '
                f'CREATE TABLE "{schema}".meta (key text PRIMARY KEY, value text); '
                f'CREATE TABLE "{schema}".purchases (id serial, account text, '
                "state text, settled_at timestamptz)"
            )
            before = await _relations(admin, schema)
            with pytest.raises(JournalError, match=r"tables of its own \(meta, p"):
                async with PostgresJournal(postgres_dsn, schema=schema):
                    pass
            assert await _relations(admin, schema) == before
            meta = f'SELECT * FROM "{schema}".meta'  # noqa: S608
            assert await admin.fetch(meta) == []
        finally:
            await admin.close()


async def _relations(connection: asyncpg.Connection, schema: str) -> list[str]:
    rows = await connection.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY 1",
        schema,
    )
    return [row[0] for row in rows]
