"""A journal that cannot be trusted fails loudly: schema, file, disk, connection."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from journal_support import Store
from secret_graph import secret_paths

from sendblue_lines import (
    ConfigurationError,
    JournalError,
    PostgresJournal,
    SQLiteJournal,
)
from sendblue_lines.journal import SCHEMA_VERSION, default_owner, redact_dsn

ACCOUNT = "key-id-a"
EXPIRES = datetime.now(timezone.utc) + timedelta(minutes=10)


async def test_the_schema_is_created_with_its_version(store: Store) -> None:
    """A new journal writes its schema version on first use."""
    async with store.make():
        pass
    rows = await store.sql("SELECT value FROM meta WHERE key = 'schema_version'")
    assert [tuple(row) for row in rows] == [(str(SCHEMA_VERSION),)]


async def test_a_newer_schema_is_refused_untouched(store: Store) -> None:
    """A journal written by a newer version is a clear error, never downgraded."""
    async with store.make() as journal:
        (slot,) = await journal.reserve(ACCOUNT, default_owner(), 1, None)
        await journal.record_intent(slot, "lpv_newer", EXPIRES)
    newer = str(SCHEMA_VERSION + 1)
    await store.sql(
        "UPDATE meta SET value = $1 WHERE key = 'schema_version'"
        if store.kind == "postgres"
        else "UPDATE meta SET value = ? WHERE key = 'schema_version'",
        newer,
    )
    with pytest.raises(
        JournalError, match=f"schema version {newer}.*upgrade"
    ) as caught:
        async with store.make():
            pass
    assert caught.value.operation == "open the journal"
    rows = await store.sql("SELECT value FROM meta WHERE key = 'schema_version'")
    assert [tuple(row) for row in rows] == [(newer,)]
    assert len(await store.sql("SELECT * FROM purchases")) == 1


async def test_an_unreadable_schema_version_is_refused(store: Store) -> None:
    """A version that is not a number is refused too."""
    async with store.make():
        pass
    await store.sql("UPDATE meta SET value = 'banana' WHERE key = 'schema_version'")
    with pytest.raises(JournalError, match="unreadable schema version 'banana'"):
        async with store.make():
            pass


# -- SQLite files -----------------------------------------------------------


async def test_the_file_is_created_private(tmp_path: Path) -> None:
    """The journal's file is created with mode 0600, whatever the umask allows."""
    path = tmp_path / "private.sqlite3"
    old = os.umask(0)
    try:
        async with SQLiteJournal(path):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
async def test_a_file_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    """A journal file that group or others may write is refused, with the fix."""
    path = tmp_path / "shared.sqlite3"
    async with SQLiteJournal(path):
        pass
    path.chmod(mode)
    with pytest.raises(JournalError, match="chmod 600"):
        async with SQLiteJournal(path):
            pass


async def test_a_missing_directory_is_a_journal_error(tmp_path: Path) -> None:
    """A path whose directory does not exist is a JournalError naming the path."""
    path = tmp_path / "nowhere" / "journal.sqlite3"
    with pytest.raises(JournalError, match="nowhere") as caught:
        async with SQLiteJournal(path):
            pass
    assert caught.value.backend == "sqlite"
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    """A journal cut short (a copy that stopped half-way) is refused on open."""
    path = tmp_path / "cut.sqlite3"
    async with SQLiteJournal(path) as journal:
        slots = await journal.reserve(ACCOUNT, default_owner(), 300, None)
        for slot in slots:
            await journal.record_intent(slot, f"lpv_{slot:04d}" + "x" * 200, EXPIRES)
    size = path.stat().st_size
    assert size > 8 * 4096
    with path.open("r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(JournalError, match=r"damaged|corrupt|malformed"):
        async with SQLiteJournal(path):
            pass


@pytest.fixture
def read_only_file(tmp_path: Path) -> Iterator[Path]:
    """A journal file that this process cannot write, root or not.

    root writes whatever the mode says, so for root the file is made
    immutable (``chattr +i``) instead of read-only.
    """
    path = tmp_path / "journal.sqlite3"
    anyio.run(_create, path)
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o400)
        yield path
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: no way to make a file read-only")
    subprocess.run([chattr, "+i", str(path)], check=True, timeout=30)  # noqa: S603
    try:
        yield path
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True, timeout=30)  # noqa: S603


async def _create(path: Path) -> None:
    async with SQLiteJournal(path) as journal:
        await journal.reserve(ACCOUNT, default_owner(), 1, None)


async def test_a_read_only_file_is_a_journal_error(read_only_file: Path) -> None:
    """A journal that cannot be written is refused when opened, before any purchase."""
    before = await anyio.Path(read_only_file).read_bytes()
    with pytest.raises(JournalError, match="read-only") as caught:
        async with SQLiteJournal(read_only_file):
            pass
    assert caught.value.operation == "open the journal"
    assert await anyio.Path(read_only_file).read_bytes() == before


async def test_a_full_disk_stops_the_intent_with_a_journal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no room left, an intent is refused: nothing half-written, nothing lost."""
    path = tmp_path / "full.sqlite3"
    async with SQLiteJournal(path) as journal:
        slots = await journal.reserve(ACCOUNT, default_owner(), 40, None)
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = real_connect(*args, **kwargs)
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
        connection.execute(f"PRAGMA max_page_count = {pages}")
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)
    written: list[str] = []
    async with SQLiteJournal(path) as journal:
        refused: JournalError | None = None
        for slot in slots:
            token = f"lpv_{slot:03d}_" + "y" * 1500
            try:
                await journal.record_intent(slot, token, EXPIRES)
            except JournalError as error:
                refused = error
                break
            written.append(token)
        assert refused is not None
        assert "full" in str(refused)
        assert refused.operation == "record the intent to confirm"
        assert isinstance(refused.__cause__, sqlite3.OperationalError)
        entries = await journal.entries()
    monkeypatch.undo()
    # Every intent that returned is on record; the one refused is not.
    assert [entry.preview_token for entry in entries] == written
    assert len(written) < len(slots)


# -- PostgreSQL -----------------------------------------------------------------


async def test_a_dropped_connection_mid_transaction_is_a_journal_error(
    postgres_store: Store,
) -> None:
    """A reservation whose connection dies mid-transaction fails, leaving nothing."""
    store = postgres_store
    dsn, schema = store.spec["dsn"], store.spec["schema"]
    async with store.make() as journal:
        await journal.entries()  # the schema exists
        blocker = await asyncpg.connect(dsn)
        admin = await asyncpg.connect(dsn)
        try:
            # Hold the account's row: the reservation waits there, with its
            # owner's lease already written in its open transaction.
            blocker_tx = blocker.transaction()
            await blocker_tx.start()
            await blocker.execute(
                f'INSERT INTO "{schema}".accounts VALUES ($1)',  # noqa: S608
                ACCOUNT,
            )
            result: dict[str, BaseException] = {}

            async def reserve() -> None:
                try:
                    await journal.reserve(ACCOUNT, "doomed-owner", 1, None)
                except JournalError as error:
                    result["error"] = error

            async with anyio.create_task_group() as group:
                group.start_soon(reserve)
                with anyio.fail_after(30):
                    while True:
                        pids = await admin.fetch(
                            "SELECT pid FROM pg_stat_activity WHERE wait_event_type"
                            " = 'Lock' AND query LIKE '%accounts%' AND datname ="
                            " current_database()"
                        )
                        if pids:
                            break
                        await anyio.sleep(0.02)
                await admin.execute("SELECT pg_terminate_backend($1)", pids[0]["pid"])
            await blocker_tx.rollback()
        finally:
            await blocker.close()
            await admin.close()
        error = result["error"]
        assert isinstance(error, JournalError)
        assert error.operation == "reserve purchase slots"
        assert (
            await store.sql("SELECT * FROM owners WHERE owner = 'doomed-owner'") == []
        )
        assert await store.sql("SELECT * FROM purchases") == []
        # The journal goes on with a fresh connection.
        assert len(await journal.reserve(ACCOUNT, default_owner(), 1, None)) == 1


async def test_an_unreachable_database_is_a_journal_error_without_the_password() -> (
    None
):
    """An unreachable server is a JournalError; the DSN's password never shows."""
    journal = PostgresJournal(
        "postgresql://postgres:hunter2-secret@127.0.0.1:1/test", schema="x"
    )
    with pytest.raises(JournalError) as caught:
        async with journal:
            pass
    text = f"{caught.value} {caught.value.location} {journal!r}"
    assert "hunter2-secret" not in text
    assert "postgres:***@127.0.0.1:1" in str(caught.value)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:pw1@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=pw1&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        (
            "host=h user=u password=pw1 dbname=db",
            "host=h user=u password=*** dbname=db",
        ),
        ("host=h password='pw1 x' dbname=db", "host=h password=*** dbname=db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:pw1@h:nope/db", "postgresql://u:***@h:nope/db"),
        ("postgresql://u:pw1@[::1/db", "postgresql://u:***@[::1/db"),
        ("postgresql://u:pw1@h:99999/db", "postgresql://u:***@h:99999/db"),
        ("postgresql://u:p/w1@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@w1@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p[w1@h/db", "postgresql://u:***@h/db"),
    ],
)
def test_dsns_are_redacted(dsn: str, shown: str) -> None:
    """Every DSN form loses its password before it is shown, malformed ones too."""
    assert redact_dsn(dsn) == shown


MALFORMED_DSNS = [
    "postgresql://app:{pw}@127.0.0.1:not-a-port/db",
    "postgresql://app:{pw}@[::1/db",
    "postgresql://app:{pw}@127.0.0.1:99999/db",
    "postgresql://app:{pw}@127.0.0.1:-1/db",
    "postgresql://app:{pw}@127.0.0.1:5432,127.0.0.1:x/db",
    "postgresql://app:{pw}@" + "h" * 300 + "/db",
    # A password with a URL delimiter in it: asyncpg quotes the piece before it.
    "postgresql://app:{pw}/x@127.0.0.1/db",
    "postgresql://app:x?{pw}@127.0.0.1/db",
]


@pytest.mark.parametrize("template", MALFORMED_DSNS)
async def test_a_malformed_dsn_is_a_journal_error_without_the_password(
    template: str,
) -> None:
    """A DSN asyncpg cannot parse or use is a JournalError; no password anywhere."""
    password = "hunter2-" + os.urandom(4).hex()
    journal = PostgresJournal(template.format(pw=password), schema="x")
    with pytest.raises(JournalError) as caught:
        async with journal:
            pass
    assert caught.value.operation == "connect"
    assert "app:***@" in str(caught.value)
    assert secret_paths(caught.value, [password]) == []
    assert password not in repr(journal) + journal.location


@pytest.mark.parametrize(
    ("kind", "argument", "options"),
    [
        (PostgresJournal, 123, {}),
        (PostgresJournal, b"postgresql://u@h/db", {}),
        (PostgresJournal, "postgresql://u@h/db", {"schema": 5}),
        (PostgresJournal, "postgresql://u@h/db", {"schema": "Bad-Name"}),
        (PostgresJournal, "postgresql://u@h/db", {"schema": 'x"; drop'}),
        (PostgresJournal, "postgresql://u@h/db", {"lease": 0}),
        (PostgresJournal, "postgresql://u@h/db", {"lease": -1.0}),
        (PostgresJournal, "postgresql://u@h/db", {"lease": 86_401}),
        (PostgresJournal, "postgresql://u@h/db", {"account": 5}),
        (PostgresJournal, "postgresql://u@h/db", {"lease": float("nan")}),
        (PostgresJournal, "postgresql://u@h/db", {"lease": float("inf")}),
        (PostgresJournal, "postgresql://u@h/db", {"lease": "60"}),
        (PostgresJournal, "postgresql://u@h/db", {"lease": True}),
        (PostgresJournal, "postgresql://u@h/db", {"pool_size": 0}),
        (PostgresJournal, "postgresql://u@h/db", {"pool_size": 2.5}),
        (PostgresJournal, "postgresql://u@h/db", {"pool_size": "4"}),
        (SQLiteJournal, 123, {}),
        (SQLiteJournal, "journal.sqlite3", {"account": 5}),
        (SQLiteJournal, "journal.sqlite3", {"busy_timeout": float("nan")}),
        (SQLiteJournal, "journal.sqlite3", {"busy_timeout": -1}),
        (SQLiteJournal, "journal.sqlite3", {"busy_timeout": "30"}),
    ],
)
def test_bad_journal_arguments_are_configuration_errors(
    kind: Any, argument: Any, options: dict[str, Any]
) -> None:
    """A wrong type or value for any argument is refused when the journal is made."""
    with pytest.raises(ConfigurationError):
        kind(argument, **options)


async def test_a_nul_in_the_path_is_a_journal_error(tmp_path: Path) -> None:
    """A path the system cannot take is a JournalError on open, not a ValueError."""
    with pytest.raises(JournalError, match="null"):
        async with SQLiteJournal(f"{tmp_path}/bad\0name.sqlite3"):
            pass


async def test_an_unreadable_row_is_a_journal_error(tmp_path: Path) -> None:
    """A stored time that is not a time (a damaged row) is a JournalError."""
    path = tmp_path / "journal.sqlite3"
    async with SQLiteJournal(path) as journal:
        (slot,) = await journal.reserve(ACCOUNT, default_owner(), 1, None)
        await journal.record_intent(slot, "lpv_damaged", EXPIRES)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("UPDATE purchases SET expires_at = 'not a time'")
    async with SQLiteJournal(path) as journal:
        with pytest.raises(JournalError, match="not a time") as caught:
            await journal.entries()
    assert caught.value.operation == "read the entries"


async def test_without_asyncpg_the_postgres_journal_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The core has no asyncpg: opening a PostgresJournal then names the extra."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(JournalError, match=r"sendblue-lines\[postgres\]"):
        async with PostgresJournal("postgresql://u@127.0.0.1/db"):
            pass


def test_the_core_imports_without_asyncpg() -> None:
    """`import sendblue_lines` leaves asyncpg out (the core keeps four dependencies)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sendblue_lines; print('asyncpg' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "False"
