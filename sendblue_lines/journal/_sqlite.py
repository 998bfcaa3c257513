"""`SQLiteJournal`: the embedded journal, for one host, on stdlib sqlite3.

One connection per journal, used by one worker thread at a time (a lock)
through `anyio.to_thread`, so the event loop never waits on the disk. The
file is in WAL mode with ``synchronous=FULL``: a commit is on disk when it
returns, and readers never block the writer.

Every write is one ``BEGIN IMMEDIATE`` transaction, which takes the file's
write lock at once, so the processes of one host that share the file
reserve and claim one after the other, never on a stale count.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

import anyio.to_thread

from .. import _clock
from .._config import check_instance, check_seconds
from ..errors import ConfigurationError, excerpt
from ._entry import JournalEntry
from ._journal import Journal, journal_error, refusing
from ._owner import process_alive
from ._rules import (
    BY_HAND,
    Intent,
    Outcome,
    Refused,
    Settlement,
    SlotRequest,
    check_token_free,
    utc,
)
from ._schema import (
    COLUMNS,
    SCHEMA_VERSION,
    SQLITE_APPLICATION_ID,
    SQLITE_DDL,
    SQLITE_UPGRADES,
    V1_SQLITE_SHAPE,
    counted,
    entry_from_row,
    keyed,
    stored_version,
)

__all__ = ["SQLiteJournal"]

_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="SQLiteJournal")

#: How long a write waits for another process's write lock, in seconds.
DEFAULT_BUSY_TIMEOUT = 30.0
#: What the file, the disk or the rows can raise: each one is a JournalError
#: (a ValueError: a NUL in the path, or a row this code cannot read).
_FAILURES = (sqlite3.Error, OSError, ValueError)


def _iso(moment: datetime | None) -> str | None:
    # One form for every stored time: UTC, with microseconds.
    moment = utc(moment)
    return None if moment is None else moment.isoformat(timespec="microseconds")


@contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction that holds the file's write lock from its start."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            # The first error says more than a failed rollback would.
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


class SQLiteJournal(Journal):
    """The embedded purchase journal: one SQLite file for the processes of one host.

    ``SQLiteJournal(path)`` creates the file on first use, with mode 0600
    (it holds tokens and numbers, never a credential), and refuses a file
    that group or others can write. `account`, when given, binds the
    journal to one API key id: a journal bound to another one is refused on
    open. `busy_timeout` is how long a write, or the first open of a new
    file by several processes at once, waits for another process.

    Owners are processes of this host (see `default_owner`): a row of a
    process that no longer runs is an orphan; a row of another host is
    never judged dead here (use `PostgresJournal` for a fleet). Its times
    (`JournalEntry.created_at`, `settled_at`) are the host's clock. A
    reservation gives back the reserved slots of dead processes on the way;
    pending intents count whoever wrote them.

    Every method raises `JournalError` when the file cannot be opened, read
    or written (another application's, corrupt, truncated, read-only, disk
    full) or when a journal rule is broken; see `Journal` for what each one
    does.

    Raises:
        ConfigurationError: a path that is not a str or path, an account
            that is not a str, or a `busy_timeout` that is not a number of
            seconds from 0 to a day.
    """

    backend = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        account: str | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        try:
            self._path = os.fspath(path)
        except TypeError:
            msg = f"SQLiteJournal needs a path, not {type(path).__name__}"
            raise ConfigurationError(msg) from None
        check_instance(account, str, "account")
        self._account = account
        self._busy_timeout = check_seconds(
            busy_timeout, "busy_timeout", allow_zero=True
        )
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def lease(self) -> None:
        """None: an owner here lives as long as its process, with no lease."""
        return None

    @property
    def path(self) -> str:
        """Where the journal's file is."""
        return self._path

    # -- plumbing ---------------------------------------------------------

    @property
    def _named(self) -> tuple[str, str]:
        return f"SQLite journal {self._path}", self._path

    @property
    def _opened(self) -> bool:
        return self._connection is not None

    def _guarded(self, operation: str, work: Callable[[], _T]) -> _T:
        with self._lock, refusing(self, operation):
            try:
                return work()
            except _FAILURES as exc:
                raise journal_error(self, operation, _describe(exc)) from exc

    async def _run(
        self, operation: str, work: Callable[[sqlite3.Connection], _T]
    ) -> _T:
        connection = self._connection
        if connection is None:
            raise journal_error(
                self, operation, "the journal is not open (use async with)"
            )
        # Not abandoned on cancellation: a commit that started finishes, so
        # what the caller is told matches what is on disk.
        return await anyio.to_thread.run_sync(
            self._guarded, operation, lambda: work(connection)
        )

    # -- lifecycle ----------------------------------------------------------

    async def open(self: _Self) -> _Self:
        """Open the file (creating it, mode 0600), check or create its schema.

        Raises:
            JournalError: the file cannot be created or opened, others can
                write it, it is not a sound SQLite database, it cannot be
                written, it was written by a newer sendblue-lines, or it is
                bound to another account.
        """
        if self._connection is None:
            self._connection = await anyio.to_thread.run_sync(
                self._guarded, "open the journal", self._connect
            )
        return self

    def _connect(self) -> sqlite3.Connection:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        connection = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            # Both only read: another application's file is refused as it is
            # (not told to chmod), before the switch to WAL writes to it.
            _check_ours(connection)
            mode = stat.S_IMODE(os.stat(self._path).st_mode)
            if mode & 0o022:
                raise Refused(
                    f"group or others may write the file (mode {mode:04o}); "
                    f"make it private with: chmod 600 {self._path}"
                )
            self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        mode = _switch_to_wal(connection, self._busy_timeout)
        if str(mode).lower() != "wal":
            raise Refused(f"the file cannot be switched to WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous = FULL")
        problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise Refused("the file is damaged: " + "; ".join(problems[:3]))
        with _immediate(connection):
            # The version is read before anything is created, so a journal of
            # a newer version is refused untouched.
            meta = _meta(connection)
            version = stored_version(meta.get("schema_version"), self._path)
            for statement in SQLITE_DDL:
                connection.execute(statement)
            if version < SCHEMA_VERSION:
                for statement in SQLITE_UPGRADES:
                    connection.execute(statement)
                connection.execute(
                    "INSERT OR REPLACE INTO meta (key, value) "
                    "VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            connection.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
            self._check_meta(connection, meta)
            # A write on every open: SQLite opens a file it cannot write
            # read-only without a word, and we want to know now, not at the
            # first intent of a purchase.
            connection.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?)",
                (_iso(_clock.now()),),
            )

    def _check_meta(self, connection: sqlite3.Connection, meta: dict[str, str]) -> None:
        if self._account is None:
            return
        bound = meta.get("account")
        if bound is None:
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('account', ?)", (self._account,)
            )
        elif bound != self._account:
            raise Refused(
                f"it belongs to the account with key id {bound!r}, "
                f"not {self._account!r}"
            )

    async def aclose(self) -> None:
        """Close the file. Idempotent."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await anyio.to_thread.run_sync(
                self._guarded, "close the journal", connection.close
            )

    # -- the hooks of Journal's methods ---------------------------------------

    async def mark(self) -> int:
        """Return the place of the last settled purchase (see `Journal.mark`).

        Raises:
            JournalError: the file cannot be read or the journal is not open.
        """

        def work(connection: sqlite3.Connection) -> int:
            (mark,) = connection.execute(_LAST_SETTLED).fetchone()
            return int(mark)

        return await self._run("mark the journal's place", work)

    async def _reserve(self, request: SlotRequest) -> list[int]:
        account, owner = request.account, request.owner

        def work(connection: sqlite3.Connection) -> list[int]:
            with _immediate(connection):
                taking = _taking(connection, request)
                created = _iso(_clock.now())
                return [
                    _inserted(
                        connection.execute(
                            "INSERT INTO purchases (account, owner, state, key,"
                            " created_at) VALUES (?, ?, 'reserved', ?, ?)",
                            (account, owner, request.key, created),
                        )
                    )
                    for _ in range(request.granted(*taking))
                ]

        return await self._run("reserve purchase slots", work)

    async def _reserve_intent(
        self, request: SlotRequest, intent: Intent
    ) -> JournalEntry | None:
        def work(connection: sqlite3.Connection) -> JournalEntry | None:
            with _immediate(connection):
                if request.granted(*_taking(connection, request)) == 0:
                    return None
                try:
                    connection.execute(
                        "INSERT INTO purchases (account, owner, state, key,"
                        " preview_token, expires_at, created_at, first_sent_at)"
                        " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                        (
                            request.account,
                            request.owner,
                            request.key,
                            intent.preview_token,
                            _iso(intent.expires_at),
                            _iso(_clock.now()),
                            _iso(intent.first_sent_at),
                        ),
                    )
                except sqlite3.IntegrityError:
                    check_token_free(taken=True)
                return _select_entry(connection, intent.preview_token)

        return await self._run("record the intent to confirm", work)

    async def release(self, slot_ids: Iterable[int]) -> None:
        """Give back slots that never got an intent; others are left alone.

        Raises:
            JournalError: the store failed.
        """
        ids = [(int(i),) for i in slot_ids]

        def work(connection: sqlite3.Connection) -> None:
            with _immediate(connection):
                connection.executemany(
                    "DELETE FROM purchases WHERE id = ? AND state = 'reserved'", ids
                )

        await self._run("release purchase slots", work)

    async def _record_intent(self, intent: Intent) -> JournalEntry:
        def work(connection: sqlite3.Connection) -> JournalEntry:
            with _immediate(connection):
                row = connection.execute(
                    "SELECT state FROM purchases WHERE id = ?", (intent.slot_id,)
                ).fetchone()
                intent.check_slot(None if row is None else row[0])
                try:
                    connection.execute(
                        "UPDATE purchases SET state = 'pending', preview_token = ?, "
                        "expires_at = ?, created_at = ?, first_sent_at = ? "
                        "WHERE id = ?",
                        (
                            intent.preview_token,
                            _iso(intent.expires_at),
                            _iso(_clock.now()),
                            _iso(intent.first_sent_at),
                            intent.slot_id,
                        ),
                    )
                except sqlite3.IntegrityError:
                    check_token_free(taken=True)
                return _select_entry(connection, intent.preview_token)

        return await self._run("record the intent to confirm", work)

    async def _record_outcome(
        self, preview_token: str, outcome: Outcome, owner: str | None
    ) -> JournalEntry:
        def work(connection: sqlite3.Connection) -> JournalEntry:
            with _immediate(connection):
                row = connection.execute(
                    "SELECT state, owner FROM purchases WHERE preview_token = ?",
                    (preview_token,),
                ).fetchone()
                state, holder = (None, None) if row is None else row
                if not outcome.applies_over(state, holder, owner):
                    return _select_entry(connection, preview_token)
                # On the owner just checked: the write lock is held since, so
                # the order of settled purchases is the order of these writes.
                connection.execute(
                    "UPDATE purchases SET state = ?, phone_number = ?, worker_id = ?,"
                    " subscription_id = ?, error_code = ?, message = ?,"
                    " attempts = COALESCE(?, attempts),"
                    " first_sent_at = COALESCE(?, first_sent_at), settled_at = ?,"
                    " evidence = COALESCE(?, evidence),"
                    f" settled_seq = ({_LAST_SETTLED}) + 1"
                    " WHERE preview_token = ? AND owner = ?",
                    (
                        *outcome.columns(),
                        _iso(outcome.first_sent_at),
                        _iso(_clock.now()),
                        outcome.evidence,
                        preview_token,
                        holder,
                    ),
                )
                return _select_entry(connection, preview_token)

        return await self._run("record the outcome", work)

    async def _claim_orphans(
        self, account: str, owner: str, key: str | None
    ) -> list[JournalEntry]:
        """Take over the pending purchases of this host's dead processes.

        ``BEGIN IMMEDIATE`` makes the claim exclusive across the processes
        sharing the file.
        """

        def work(connection: sqlite3.Connection) -> list[JournalEntry]:
            with _immediate(connection):
                rows = connection.execute(
                    "SELECT id, owner, state FROM purchases WHERE account = ? "
                    "AND state IN ('reserved', 'pending') AND owner != ? "
                    "AND (? IS NULL OR key = ?) ORDER BY id",
                    (account, owner, key, key),
                ).fetchall()
                dead = _judge({row[1] for row in rows})
                orphans = [row for row in rows if row[1] in dead]
                connection.executemany(
                    "DELETE FROM purchases WHERE id = ?",
                    [(row[0],) for row in orphans if row[2] == "reserved"],
                )
                claimed = [row[0] for row in orphans if row[2] == "pending"]
                connection.executemany(
                    "UPDATE purchases SET owner = ? WHERE id = ?",
                    [(owner, i) for i in claimed],
                )
                return [
                    entry_from_row(
                        connection.execute(
                            f"SELECT {COLUMNS} FROM purchases WHERE id = ?", (i,)
                        ).fetchone()
                    )
                    for i in claimed
                ]

        return await self._run("claim orphaned purchases", work)

    async def renew(self, owner: str) -> None:
        """Do nothing: on one host an owner lives as long as its process.

        Raises:
            JournalError: the journal is not open.
        """
        await self._run("renew an owner", lambda connection: None)

    async def entries(
        self, account: str | None = None, *, key: str | None = None
    ) -> list[JournalEntry]:
        """Return every entry (of one account or all, of one key or all), oldest first.

        Raises:
            JournalError: the store failed.
        """

        def work(connection: sqlite3.Connection) -> list[JournalEntry]:
            rows = connection.execute(
                f"SELECT {COLUMNS} FROM purchases WHERE state != 'reserved' "
                "AND (? IS NULL OR account = ?) AND (? IS NULL OR key = ?) "
                "ORDER BY id",
                (account, account, key, key),
            ).fetchall()
            return [entry_from_row(row) for row in rows]

        return await self._run("read the entries", work)

    async def _settle(self, settlement: Settlement) -> JournalEntry:
        def work(connection: sqlite3.Connection) -> JournalEntry:
            with _immediate(connection):
                found = connection.execute(
                    "SELECT preview_token, state FROM purchases "
                    "WHERE substr(preview_token, 1, ?) = ? "
                    "ORDER BY preview_token = ? DESC LIMIT 2",
                    (len(settlement.prefix), settlement.prefix, settlement.prefix),
                ).fetchall()
                token = settlement.check(found)
                connection.execute(
                    "UPDATE purchases SET state = ?, phone_number = ?, "
                    "worker_id = NULL, subscription_id = NULL, error_code = ?, "
                    "message = ?, settled_at = ? WHERE preview_token = ?",
                    (
                        settlement.state,
                        settlement.phone_number,
                        BY_HAND,
                        settlement.message,
                        _iso(_clock.now()),
                        token,
                    ),
                )
                return _select_entry(connection, token)

        return await self._run("settle a purchase by hand", work)


def _check_ours(connection: sqlite3.Connection) -> None:
    """Refuse, reading it only, a file that is not a journal of ours.

    Ours: marked with `SQLITE_APPLICATION_ID`; or unmarked, and either empty
    (no schema object, as a new file) or of exactly the shape of a version-1
    journal, made before the mark. One statement reads it all, in one
    snapshot: a journal another process is creating is seen whole or not yet.

    Raises:
        Refused: what was found instead; the file was left unchanged.
    """
    try:
        rows = connection.execute(
            "SELECT 'mark', application_id FROM pragma_application_id UNION ALL "
            "SELECT type, name FROM sqlite_master UNION ALL "
            "SELECT 'column', name FROM pragma_table_info('purchases')"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        if "not a database" not in str(exc).lower():
            raise
        found = f"not a SQLite database ({exc})"
    else:
        [mark] = [value for kind, value in rows if kind == "mark"]
        shape = {row for row in rows if row[0] != "mark"}
        shape.discard(("index", "purchases_settled"))  # may be missing in version 1
        if mark == SQLITE_APPLICATION_ID or (
            not mark and shape in (set(), V1_SQLITE_SHAPE)
        ):
            return
        tables = ", ".join(sorted(name for kind, name in shape if kind == "table"))
        found = (
            f"a SQLite database of another application (application_id {mark:#010x})"
            if mark
            else f"a SQLite database with tables of its own ({excerpt(tables, 80)})"
        )
    raise Refused(
        f"it is not a sendblue-lines journal: {found}; the file was left unchanged"
    )


#: The place of the last settled purchase in the journal's order (0: none).
_LAST_SETTLED = "SELECT COALESCE(MAX(settled_seq), 0) FROM purchases"


def _meta(connection: sqlite3.Connection) -> dict[str, str]:
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if exists is None:
        return {}
    return {
        str(key): str(value)
        for key, value in connection.execute("SELECT key, value FROM meta")
    }


def _taking(connection: sqlite3.Connection, request: SlotRequest) -> tuple[int, int]:
    """Count what takes room on the account and fills the key's total.

    Inside a ``BEGIN IMMEDIATE`` transaction, giving back dead owners' slots
    on the way: the open purchases (slots of live owners, pending intents of
    any owner) and, with a mark, those that may have charged settled after
    it (without one, none: a comparison with NULL is never true); and the
    key's slots and purchases in `KEY_STATES` (0 without a key).
    """
    rows = connection.execute(
        f"SELECT id, owner, state FROM purchases WHERE account = ? AND {counted('?')}",
        (request.account, request.since),
    ).fetchall()
    judged = _judge(
        {row[1] for row in rows if row[2] == "reserved" and row[1] != request.owner}
    )
    dead_slots = [row[0] for row in rows if row[2] == "reserved" and row[1] in judged]
    connection.executemany(
        "DELETE FROM purchases WHERE id = ?", [(i,) for i in dead_slots]
    )
    filled = 0
    if request.key is not None:
        (filled,) = connection.execute(
            f"SELECT count(*) FROM purchases WHERE account = ? AND {keyed('?')}",
            (request.account, request.key),
        ).fetchone()
    return len(rows) - len(dead_slots), int(filled)


def _judge(owners: set[str]) -> set[str]:
    """Return the owners among `owners` whose process is gone."""
    return {owner for owner in owners if not process_alive(owner)}


def _inserted(cursor: sqlite3.Cursor) -> int:
    row_id = cursor.lastrowid
    if row_id is None:  # pragma: no cover - an INSERT always sets it
        raise Refused("the new slot got no id")
    return row_id


def _select_entry(connection: sqlite3.Connection, preview_token: str) -> JournalEntry:
    row = connection.execute(
        f"SELECT {COLUMNS} FROM purchases WHERE preview_token = ?", (preview_token,)
    ).fetchone()
    return entry_from_row(row)


#: The first and the longest pause between two tries of the switch to WAL.
_WAL_RETRY_FIRST, _WAL_RETRY_MOST = 0.001, 0.05


def _switch_to_wal(connection: sqlite3.Connection, timeout: float) -> object:
    """Switch the file to WAL; return the mode SQLite reports after it.

    A new file's switch needs the file's exclusive lock, taken from the
    shared lock that reading its header took. When several processes open
    a new journal at once, SQLite answers "database is locked" at once to
    those that hold a shared lock while another waits for the exclusive one,
    without waiting in its busy handler (they would deadlock). So the switch
    is tried again, with growing pauses, until `timeout` has passed: the
    wait the busy handler would have made. It runs in a worker thread, never
    on the event loop.

    Raises:
        sqlite3.Error: another failure, or still locked after `timeout`.
    """
    deadline = _clock.monotonic() + timeout
    pause = _WAL_RETRY_FIRST
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or _clock.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, _WAL_RETRY_MOST)
            continue
        return mode


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether `exc` is SQLite's SQLITE_BUSY ("database is locked")."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF == 5  # SQLITE_BUSY, and its extended codes
    return "database is locked" in str(exc)


def _describe(exc: BaseException) -> str:
    text = str(getattr(exc, "strerror", None) or exc) or type(exc).__name__
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return f"{text} (the file is corrupt or truncated)"
    if "readonly" in lowered or "read-only" in lowered:
        return f"{text} (the file or its directory is read-only)"
    if "disk is full" in lowered or "disk i/o" in lowered:
        return f"{text} (free some space, then retry)"
    return text
