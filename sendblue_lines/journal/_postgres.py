"""`PostgresJournal`: one journal for a fleet of machines, on asyncpg.

asyncpg is an optional dependency (``pip install 'sendblue-lines[postgres]'``)
and is imported only when a `PostgresJournal` opens, so the core package
keeps its four dependencies.

Each operation is one transaction on a pooled connection. A reservation
locks its account's row in ``accounts`` first, so the reservations of one
account are serialised across the fleet and each counts every open purchase
committed before it. A claim picks candidates with ``FOR UPDATE SKIP
LOCKED`` (claimers never wait on each other) and judges them again in the
statement that takes them over, on a fresh snapshot, so a purchase is never
taken from an owner that just claimed it. Liveness is a lease in ``owners``,
renewed by `PostgresJournal.renew` (and by every reservation), and judged by
the database's clock, ``now()``, never by a worker's. The order of settled
purchases (`Journal.mark`) is a sequence, ``settled_order``: a value is
handed out when an outcome is written, after its confirm's answer came, so
one at or below a mark was taken before the mark was read (see `_rules`).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio

from .._config import check_count, check_instance, check_seconds
from ..errors import ConfigurationError, JournalError, excerpt
from ._entry import JournalEntry
from ._journal import Journal, journal_error, refusing
from ._rules import (
    BY_HAND,
    Intent,
    Outcome,
    Refused,
    Settlement,
    SlotRequest,
    check_token_free,
)
from ._schema import (
    COLUMNS,
    SCHEMA_VERSION,
    counted,
    entry_from_row,
    keyed,
    postgres_ddl,
    postgres_upgrades,
    stored_version,
)

__all__ = ["PostgresJournal", "redact_dsn"]

_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="PostgresJournal")

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: How long an owner stays alive without a heartbeat, by default, in seconds.
DEFAULT_LEASE = 60.0
#: The longest one statement may take before the journal gives up, in seconds.
COMMAND_TIMEOUT = 30.0
#: An advisory lock key that serialises schema creation across the fleet.
_SETUP_LOCK = 0x5E4DB1E


# A password in a key/value DSN or a URL's query (``password=...``, quoted
# or not), and in a URL's ``user:password@``: up to the last ``@`` before
# the path, or, when the password holds a ``/`` that should have been
# escaped (a malformed DSN), up to the first ``@`` at all.
_KEYWORD_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)")
_URL_PASSWORD = re.compile(r"(://[^:/?#@]*:)([^/?#]*|[^@]*)@")


def redact_dsn(dsn: str) -> str:
    """Return `dsn` with any password replaced by ``***``.

    Handles URLs (``postgresql://user:secret@host/db?password=...``), even
    malformed ones (an unclosed ``[``, a port that is not a number, an
    unescaped ``/`` or ``@`` in the password), and key/value strings
    (``host=... password=secret``).
    """
    return _URL_PASSWORD.sub(r"\1***@", _KEYWORD_PASSWORD.sub(r"\1***", dsn))


def _passwords(dsn: str) -> list[str]:
    """Every password `dsn` holds, longest first: as written, unescaped, and cut.

    A driver that misreads a malformed URL quotes a piece of its password
    (``postgresql://u:pw/x@h`` makes "pw" a port), so each piece between the
    URL's delimiters counts too; pieces under 3 characters would blank out
    ordinary words of a message and give away little.
    """
    found = {m.group(2).strip("'") for m in _KEYWORD_PASSWORD.finditer(dsn)}
    found.update(m.group(2) for m in _URL_PASSWORD.finditer(dsn))
    found.update([urllib.parse.unquote(text) for text in found])
    found.update(
        piece
        for text in list(found)
        for piece in re.split(r"[/?#@:\[\]]", text)
        if len(piece) >= 3
    )
    return sorted(filter(None, found), key=len, reverse=True)


async def _no_reset(connection: Any) -> None:
    """Give a connection back to the journal's own pool as it is.

    The journal's connections change no session state (no ``SET``,
    ``LISTEN``, cursor or session lock), and asyncpg rolls back a transaction
    left open before this runs. Its default reset on release once left a
    connection mid-operation here ("another operation is in progress", as in
    asyncpg issue 784), failing the next reservation on it.
    """


class PostgresJournal(Journal):
    """The purchase journal of a fleet: one PostgreSQL schema shared by every worker.

    ``PostgresJournal(dsn)`` opens its own small pool and closes it with the
    journal; ``PostgresJournal(pool)`` uses a caller's asyncpg pool and
    leaves it open. `schema` names the PostgreSQL schema that holds the
    tables (created on first use). `lease` is how many seconds an owner
    stays alive without `renew`: a Provisioner's confirm in flight renews
    every third of it (`heartbeat_seconds`, between 0.1 s and 15 s), so a
    lease under 0.3 s cannot be kept alive and suits only tests. A
    purchase of an owner whose lease ran out, by the database's clock, is an
    orphan that exactly one survivor claims. `account`, when given, binds
    the journal to one API key id, as for `SQLiteJournal`.

    Its clock is the database's ``now()``: it stamps the entries' times and
    judges leases, so the clocks of the fleet's hosts never meet in one
    comparison. A reservation renews the owner's lease and gives
    back the reserved slots of owners whose lease ran out; `record_intent`
    renews the slot owner's lease.

    Raises:
        ConfigurationError: a schema name that is not a plain lower-case
            identifier, a first argument that is neither a str nor a pool,
            an account that is not a str, a lease that is not a number of
            seconds above 0 and at most a day, or a `pool_size` that is not
            an int of at least 1.

    Every method raises `JournalError` when the database cannot be reached,
    drops the connection, refuses a statement, or holds a schema written by
    a newer sendblue-lines. A DSN's password never appears in a message.
    """

    backend = "postgresql"

    def __init__(
        self,
        dsn_or_pool: str | Any,
        *,
        schema: str = "sendblue_lines",
        account: str | None = None,
        lease: float = DEFAULT_LEASE,
        pool_size: int = 4,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(str(schema)):
            msg = (
                f"the journal's schema must be a lower-case identifier "
                f"(letters, digits, _), not {schema!r}"
            )
            raise ConfigurationError(msg)
        check_instance(account, str, "account")
        self._lease = check_seconds(lease, "the lease")
        self._pool_size = check_count(pool_size, "pool_size", low=1)
        if isinstance(dsn_or_pool, str):
            self._dsn: str | None = dsn_or_pool
            self._given_pool: Any = None
            self._location = redact_dsn(dsn_or_pool)
        elif hasattr(dsn_or_pool, "acquire"):
            self._dsn = None
            self._given_pool = dsn_or_pool
            self._location = "a caller's connection pool"
        else:
            msg = f"PostgresJournal needs a DSN or a pool, not {type(dsn_or_pool)}"
            raise ConfigurationError(msg)
        self._schema = schema
        self._qualified = f'"{schema}"'
        self._account = account
        self._pool: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError, TimeoutError)
        # asyncpg's error for a unique index broken (set on open).
        self._unique: type[BaseException] = LookupError

    @property
    def schema(self) -> str:
        """The PostgreSQL schema that holds the journal's tables."""
        return self._schema

    @property
    def lease(self) -> float:
        """How many seconds an owner stays alive without `renew`.

        A Provisioner's confirm in flight renews its owner every third of it
        (see `heartbeat_seconds`), at most every 15 s and at least every
        0.1 s: a lease under 0.3 s cannot be kept alive that way.
        """
        return self._lease

    @property
    def location(self) -> str:
        """Where the journal is: the DSN without its password, or the pool."""
        return self._location

    # -- plumbing ---------------------------------------------------------

    @property
    def _named(self) -> tuple[str, str]:
        name = f"PostgreSQL journal {self._location} (schema {self._schema})"
        return name, self._location

    @property
    def _opened(self) -> bool:
        return self._pool is not None

    def _failed(self, operation: str, exc: BaseException) -> JournalError:
        """The `JournalError` for a driver's failure, with no password in it.

        A message that held one is redacted, and its exception is not
        chained either (it is the `__cause__` otherwise).
        """
        said = str(exc) or type(exc).__name__
        text = said
        for password in _passwords(self._dsn or ""):
            text = text.replace(password, "***")
        error = journal_error(self, operation, f"{type(exc).__name__}: {text}")
        error.__cause__ = exc if text == said else None
        return error

    async def _guard(self, operation: str, work: Callable[[], Awaitable[_T]]) -> _T:
        try:
            # A transaction that started is finished (committed or rolled
            # back) before a cancellation is let through, so what the caller
            # is told matches what the database holds.
            with anyio.CancelScope(shield=True), refusing(self, operation):
                return await work()
        except self._errors as exc:
            failure = exc
        # Raised outside the except block, so that a driver's exception whose
        # message held a password is not even its __context__.
        raise self._failed(operation, failure)

    async def _run(self, operation: str, work: Callable[[Any], Awaitable[_T]]) -> _T:
        pool = self._pool
        if pool is None:
            raise journal_error(
                self, operation, "the journal is not open (use async with)"
            )

        async def transaction() -> _T:
            async with pool.acquire() as connection, connection.transaction():
                return await work(connection)

        return await self._guard(operation, transaction)

    # -- lifecycle ----------------------------------------------------------

    async def open(self: _Self) -> _Self:
        """Connect, and create or check the schema.

        Raises:
            JournalError: asyncpg is not installed, the DSN cannot be parsed
                or used, the database cannot be reached, or it holds a
                journal of a newer version or of another account.
        """
        if self._pool is not None:
            return self
        try:
            import asyncpg  # optional: only a fleet needs it
        except ImportError as exc:
            raise journal_error(
                self,
                "open the journal",
                "asyncpg is not installed: pip install 'sendblue-lines[postgres]'",
            ) from exc
        self._errors = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
            OSError,
            TimeoutError,
            # A DSN that asyncpg cannot parse (a port that is not a number,
            # an unclosed "[") or a port the socket refuses (past 65535),
            # whenever the pool opens a connection; and an unreadable row.
            ValueError,
            OverflowError,
        )
        self._unique = asyncpg.UniqueViolationError

        async def connect() -> Any:
            if self._given_pool is not None:
                return self._given_pool
            return await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                command_timeout=COMMAND_TIMEOUT,
                reset=_no_reset,
            )

        pool = await self._guard("connect", connect)
        self._pool = pool
        try:
            await self._run("open the journal", self._prepare)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _prepare(self, connection: Any) -> None:
        s = self._qualified
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
        meta: dict[str, str] = {}
        if await connection.fetchval("SELECT to_regclass($1)", f"{s}.meta"):
            meta = {
                row["key"]: row["value"]
                for row in await connection.fetch(f"SELECT key, value FROM {s}.meta")
            }
        version = stored_version(meta.get("schema_version"), self._location)
        # No journal yet: a schema with tables is another application's,
        # refused before anything is created in it.
        tables = "schema_version" not in meta and await connection.fetchval(
            "SELECT string_agg(tablename, ', ' ORDER BY tablename) FROM pg_tables "
            "WHERE schemaname = $1",
            self._schema,
        )
        if tables:
            raise Refused(
                f"the schema {self._schema} holds no sendblue-lines journal but "
                f"tables of its own ({excerpt(tables, 80)}); it was left unchanged"
            )
        for statement in postgres_ddl(s):
            await connection.execute(statement)
        if version < SCHEMA_VERSION:
            for statement in postgres_upgrades(s):
                await connection.execute(statement)
            await connection.execute(
                f"INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                str(SCHEMA_VERSION),
            )
        if self._account is None:
            return
        await connection.execute(
            f"INSERT INTO {s}.meta (key, value) VALUES ('account', $1) "
            "ON CONFLICT (key) DO NOTHING",
            self._account,
        )
        bound = await connection.fetchval(
            f"SELECT value FROM {s}.meta WHERE key = 'account'"
        )
        if bound != self._account:
            raise Refused(
                f"it belongs to the account with key id {bound!r}, "
                f"not {self._account!r}"
            )

    async def aclose(self) -> None:
        """Close the pool this journal opened (never a caller's). Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None and self._given_pool is None:
            await self._guard("close the journal", pool.close)

    # -- the hooks of Journal's methods ---------------------------------------

    async def _renew(self, connection: Any, owner: str) -> None:
        await connection.execute(
            f"INSERT INTO {self._qualified}.owners (owner, lease_until) "
            "VALUES ($1, now() + make_interval(secs => $2)) "
            "ON CONFLICT (owner) DO UPDATE SET lease_until = EXCLUDED.lease_until",
            owner,
            self._lease,
        )

    async def mark(self) -> int:
        """Return the last value of the order of settled purchases (see `Journal.mark`).

        Raises:
            JournalError: the database failed or the journal is not open.
        """

        async def work(connection: Any) -> int:
            mark = await connection.fetchval(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                f"FROM {self._qualified}.settled_order"
            )
            return int(mark)

        return await self._run("mark the journal's place", work)

    async def _taking(self, connection: Any, request: SlotRequest) -> tuple[int, int]:
        """Lock the account; count what takes room on it and fills the key's total.

        Renews the owner's lease and gives back the reserved slots of owners
        whose lease ran out, on the way (see `_reserve`).
        """
        s = self._qualified
        account, owner, since = request.account, request.owner, request.since
        # Renew the owner and lock the account's row in one statement: an
        # upsert that updates locks the row it finds, or the one it inserts.
        await connection.execute(
            f"WITH renewed AS (INSERT INTO {s}.owners (owner, lease_until) "
            "VALUES ($2, now() + make_interval(secs => $3)) ON CONFLICT (owner) "
            "DO UPDATE SET lease_until = EXCLUDED.lease_until) "
            f"INSERT INTO {s}.accounts (account) VALUES ($1) "
            "ON CONFLICT (account) DO UPDATE SET account = EXCLUDED.account",
            account,
            owner,
            self._lease,
        )
        # On a snapshot taken after the lock (read committed): give back the
        # slots of owners whose lease ran out, and count the rest, in one
        # statement (which sees the rows it deletes, so they are left out).
        # Without a mark no settled entry counts (NULL compares false).
        row = await connection.fetchrow(
            f"WITH dead AS (DELETE FROM {s}.purchases p WHERE p.account = $1 "
            "AND p.state = 'reserved' AND NOT EXISTS (SELECT 1 FROM "
            f"{s}.owners o WHERE o.owner = p.owner AND o.lease_until > now()) "
            "RETURNING p.id) SELECT "
            f"count(*) FILTER (WHERE {counted('$2::bigint')}), "
            f"count(*) FILTER (WHERE {keyed('$3')}) "
            f"FROM {s}.purchases WHERE account = $1 "
            "AND id NOT IN (SELECT id FROM dead)",
            account,
            since,
            request.key,
        )
        return int(row[0]), int(row[1])

    async def _reserve(self, request: SlotRequest) -> list[int]:
        s = self._qualified

        async def work(connection: Any) -> list[int]:
            count = request.granted(*await self._taking(connection, request))
            if count == 0:
                return []
            rows = await connection.fetch(
                f"INSERT INTO {s}.purchases (account, owner, state, created_at, key) "
                "SELECT $1, $2, 'reserved', now(), $4 FROM generate_series(1, $3) "
                "RETURNING id",
                request.account,
                request.owner,
                count,
                request.key,
            )
            return sorted(int(row["id"]) for row in rows)

        return await self._run("reserve purchase slots", work)

    async def _reserve_intent(
        self, request: SlotRequest, intent: Intent
    ) -> JournalEntry | None:
        s = self._qualified

        async def work(connection: Any) -> JournalEntry | None:
            if request.granted(*await self._taking(connection, request)) == 0:
                return None
            try:
                row = await connection.fetchrow(
                    f"INSERT INTO {s}.purchases (account, owner, state, preview_token, "
                    "expires_at, created_at, first_sent_at, key) "
                    "VALUES ($1, $2, 'pending', $3, $4, now(), $5, $6) "
                    f"RETURNING {COLUMNS}",
                    request.account,
                    request.owner,
                    intent.preview_token,
                    intent.expires_at,
                    intent.first_sent_at,
                    request.key,
                )
            except self._unique:  # the transaction is rolled back
                check_token_free(taken=True)
                raise  # pragma: no cover - check_token_free raised
            return entry_from_row(tuple(row))

        return await self._run("record the intent to confirm", work)

    async def release(self, slot_ids: Iterable[int]) -> None:
        """Give back slots that never got an intent; others are left alone.

        Raises:
            JournalError: the database failed.
        """
        ids = [int(i) for i in slot_ids]

        async def work(connection: Any) -> None:
            await connection.execute(
                f"DELETE FROM {self._qualified}.purchases "
                "WHERE id = ANY($1::bigint[]) AND state = 'reserved'",
                ids,
            )

        await self._run("release purchase slots", work)

    async def _record_intent(self, intent: Intent) -> JournalEntry:
        s = self._qualified
        # One statement, so one round trip: lock the slot if it is still
        # reserved, renew its owner's lease, write the intent. A token
        # already in the journal breaks the unique index on preview_token.
        statement = (
            f"WITH slot AS (SELECT id AS slot_id, owner AS slot_owner "
            f"FROM {s}.purchases WHERE id = $4 AND state = 'reserved' FOR UPDATE), "
            f"renewed AS (INSERT INTO {s}.owners (owner, lease_until) "
            "SELECT slot_owner, now() + make_interval(secs => $5) FROM slot "
            "ON CONFLICT (owner) DO UPDATE SET lease_until = EXCLUDED.lease_until) "
            f"UPDATE {s}.purchases SET state = 'pending', preview_token = $1, "
            "expires_at = $2, created_at = now(), first_sent_at = $3 "
            f"FROM slot WHERE id = slot.slot_id RETURNING {COLUMNS}"
        )

        async def work(connection: Any) -> JournalEntry:
            try:
                row = await connection.fetchrow(
                    statement,
                    intent.preview_token,
                    intent.expires_at,
                    intent.first_sent_at,
                    intent.slot_id,
                    self._lease,
                )
            except self._unique:
                check_token_free(taken=True)
                raise  # pragma: no cover - check_token_free raised
            intent.check_slot(None if row is None else "reserved")
            return entry_from_row(tuple(row))

        return await self._run("record the intent to confirm", work)

    async def _record_outcome(
        self, preview_token: str, outcome: Outcome, owner: str | None
    ) -> JournalEntry:
        s = self._qualified
        values = (*outcome.columns(), outcome.first_sent_at, outcome.evidence)
        setting = (
            f"UPDATE {s}.purchases SET state = $1, phone_number = $2, "
            "worker_id = $3, subscription_id = $4, error_code = $5, "
            "message = $6, attempts = COALESCE($7, attempts), "
            "first_sent_at = COALESCE($8, first_sent_at), "
            "settled_at = now(), evidence = COALESCE($9, evidence), "
            f"settled_seq = nextval('{s}.settled_order') "
        )

        async def work(connection: Any) -> JournalEntry:
            # The row lock keeps a claim from changing the owner until commit.
            found = await connection.fetchrow(
                f"SELECT state, owner FROM {s}.purchases WHERE preview_token = $1 "
                "FOR UPDATE",
                preview_token,
            )
            state, holder = (None, None) if found is None else tuple(found)
            row = None
            if outcome.applies_over(state, holder, owner):
                row = await connection.fetchrow(
                    f"{setting} WHERE preview_token = $10 AND owner = $11 "
                    f"RETURNING {COLUMNS}",
                    *values,
                    preview_token,
                    holder,
                )
            if row is None:  # not applied: the entry as it stands
                row = await connection.fetchrow(
                    f"SELECT {COLUMNS} FROM {s}.purchases WHERE preview_token = $1",
                    preview_token,
                )
            return entry_from_row(tuple(row))

        return await self._run("record the outcome", work)

    async def _claim_orphans(
        self, account: str, owner: str, key: str | None
    ) -> list[JournalEntry]:
        """Take over the pending purchases of owners whose lease ran out.

        Renews `owner`'s lease in the same transaction, so the claim and the
        claimer's liveness commit together.
        """
        s = self._qualified
        orphaned = (
            f"NOT EXISTS (SELECT 1 FROM {s}.owners o "
            "WHERE o.owner = p.owner AND o.lease_until > now())"
        )

        async def work(connection: Any) -> list[JournalEntry]:
            await self._renew(connection, owner)
            candidates = await connection.fetch(
                f"SELECT p.id FROM {s}.purchases p WHERE p.account = $1 "
                "AND p.state IN ('reserved', 'pending') AND p.owner <> $2 "
                "AND ($3::text IS NULL OR p.key = $3) "
                f"AND {orphaned} ORDER BY p.id FOR UPDATE OF p SKIP LOCKED",
                account,
                owner,
                key,
            )
            ids = [int(row["id"]) for row in candidates]
            if not ids:
                return []
            # Judged again on this statement's fresh snapshot: a candidate
            # that another claimer took over meanwhile has a live owner now.
            await connection.execute(
                f"DELETE FROM {s}.purchases p WHERE p.id = ANY($1::bigint[]) "
                f"AND p.state = 'reserved' AND {orphaned}",
                ids,
            )
            rows = await connection.fetch(
                f"UPDATE {s}.purchases p SET owner = $2 WHERE p.id = ANY($1::bigint[]) "
                f"AND p.state = 'pending' AND p.owner <> $2 AND {orphaned} "
                f"RETURNING p.id, {COLUMNS}",
                ids,
                owner,
            )
            ordered = sorted(rows, key=lambda row: int(row["id"]))
            return [entry_from_row(tuple(row)[1:]) for row in ordered]

        return await self._run("claim orphaned purchases", work)

    async def renew(self, owner: str) -> None:
        """Extend `owner`'s lease by `lease` seconds from the database's now.

        Raises:
            JournalError: the database failed.
        """
        await self._run("renew an owner", lambda c: self._renew(c, owner))

    async def entries(
        self, account: str | None = None, *, key: str | None = None
    ) -> list[JournalEntry]:
        """Return every entry (of one account or all, of one key or all), oldest first.

        Raises:
            JournalError: the database failed.
        """

        async def work(connection: Any) -> list[JournalEntry]:
            rows = await connection.fetch(
                f"SELECT {COLUMNS} FROM {self._qualified}.purchases "
                "WHERE state <> 'reserved' AND ($1::text IS NULL OR account = $1) "
                "AND ($2::text IS NULL OR key = $2) ORDER BY id",
                account,
                key,
            )
            return [entry_from_row(tuple(row)) for row in rows]

        return await self._run("read the entries", work)

    async def _settle(self, settlement: Settlement) -> JournalEntry:
        s = self._qualified

        async def work(connection: Any) -> JournalEntry:
            found = await connection.fetch(
                f"SELECT preview_token, state FROM {s}.purchases "
                "WHERE left(preview_token, $1) = $2 "
                "ORDER BY preview_token = $2 DESC LIMIT 2 FOR UPDATE",
                len(settlement.prefix),
                settlement.prefix,
            )
            token = settlement.check([tuple(row) for row in found])
            row = await connection.fetchrow(
                f"UPDATE {s}.purchases SET state = $1, phone_number = $2, "
                "worker_id = NULL, subscription_id = NULL, error_code = $3, "
                f"message = $4, settled_at = now() WHERE preview_token = $5 "
                f"RETURNING {COLUMNS}",
                settlement.state,
                settlement.phone_number,
                BY_HAND,
                settlement.message,
                token,
            )
            return entry_from_row(tuple(row))

        return await self._run("settle a purchase by hand", work)
