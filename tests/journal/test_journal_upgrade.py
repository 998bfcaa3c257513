"""A journal written by the previous schema opens, upgraded in place, every entry kept.

`tests/fixtures/journal_v1.sqlite3` and `journal_v1.sql` were written by
the code of schema version 1 (see `make_journal_v1.py`): one entry in each
state and a slot still reserved. Today's code opens them, upgrades them to
`SCHEMA_VERSION`, and goes on buying.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from postgres_support import fresh_schema, need_postgres

from sendblue_lines import PostgresJournal, ProvisionedLine, SQLiteJournal
from sendblue_lines.journal import SCHEMA_VERSION, Journal, default_owner

FIXTURES = Path(__file__).parents[1] / "fixtures"
ACCOUNT = "key-id-v1"
EXPIRES = datetime(2026, 12, 7, 12, 10, tzinfo=timezone.utc)
#: What schema 1 held, entry by entry, oldest first.
WRITTEN = [
    ("lpv_v1_bought_000000000000", "bought"),
    ("lpv_v1_unknown_00000000000", "unknown"),
    ("lpv_v1_notbought_000000000", "not_bought"),
    ("lpv_v1_failed_0000000000000", "provisioning_failed"),
    ("lpv_v1_pending_00000000000", "pending"),
]


@pytest.fixture(params=["sqlite", "postgres"])
async def old(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Opens the schema-1 journal of each store (a copied file, a loaded schema)."""
    if request.param == "sqlite":
        path = tmp_path / "journal.sqlite3"
        shutil.copyfile(FIXTURES / "journal_v1.sqlite3", path)
        os.chmod(path, 0o600)
        yield lambda: SQLiteJournal(path)
        return
    dsn = await need_postgres()
    async with fresh_schema(dsn) as schema:
        dump = (FIXTURES / "journal_v1.sql").read_text()
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(dump.replace("v1_fixture", schema))
        finally:
            await connection.close()
        yield lambda: PostgresJournal(dsn, schema=schema)


async def stored_version(journal: Journal) -> str:
    """The schema version the store now says it holds."""
    if isinstance(journal, SQLiteJournal):
        import sqlite3

        connection = sqlite3.connect(journal.path)
        try:
            (value,) = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
        finally:
            connection.close()
        return str(value)
    assert isinstance(journal, PostgresJournal)
    connection = await asyncpg.connect(journal.location)
    try:
        value = await connection.fetchval(
            f'SELECT value FROM "{journal.schema}".meta '  # noqa: S608
            "WHERE key = 'schema_version'"
        )
    finally:
        await connection.close()
    return str(value)


async def test_every_entry_of_schema_1_is_kept(old: Any) -> None:
    """Tokens, states, line, evidence, messages and times survive the upgrade."""
    async with old() as journal:
        entries = await journal.entries()
        version = await stored_version(journal)
    assert version == str(SCHEMA_VERSION)
    assert [(e.preview_token, e.state) for e in entries] == WRITTEN
    bought, unknown, nothing, failed, pending = entries
    assert bought.line == ProvisionedLine(
        phone_number="+14155550101",
        worker_id="worker_v1_bought",
        subscription_id="sub_v1_bought",
    )
    assert [item["worker_id"] for item in unknown.evidence] == ["worker_v1_stray"]
    assert (unknown.attempts, unknown.message) == (2, "the outcome is unknown")
    assert (nothing.error_code, nothing.message) == ("token_expired", "HTTP 410")
    assert failed.message == "HTTP 500 provisioning_failed: sub_v1_failed"
    assert pending.settled_at is None
    assert all(e.account == ACCOUNT for e in entries)
    assert all(e.key is None for e in entries)
    assert all(e.expires_at == EXPIRES for e in entries)


async def test_an_upgraded_journal_goes_on_buying_and_reopens(old: Any) -> None:
    """After the upgrade, the journal reserves, records and marks as a new one does.

    Its old settled purchases come before the first mark, so they take no
    room a second time; its pending purchase still does, and so does its
    reserved slot while its owner may live (on SQLite an owner of another
    host always may; on PostgreSQL that owner's lease ran out long ago).
    """
    me = default_owner()
    async with old() as journal:
        mark = await journal.mark()
        held = 2 if isinstance(journal, SQLiteJournal) else 1
        assert len(await journal.reserve(ACCOUNT, me, 5, 3, since=mark)) == 3 - held
        [slot] = await journal.reserve(ACCOUNT, me, 1, None)
        await journal.record_intent(slot, "lpv_after_upgrade", EXPIRES)
        entry = await journal.record_outcome(
            "lpv_after_upgrade",
            "bought",
            line=ProvisionedLine(
                phone_number="+14155550102", worker_id="w2", subscription_id="s2"
            ),
        )
        assert entry.state == "bought"
        assert await journal.mark() > mark
    async with old() as again:
        tokens = [e.preview_token for e in await again.entries()]
    assert tokens == [token for token, _ in WRITTEN] + ["lpv_after_upgrade"]
