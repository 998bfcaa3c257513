"""The journal's schema, its version, and the rows it holds.

A ``meta`` table holds ``schema_version`` (and ``account`` when the journal
is bound to one API key id); ``purchases`` holds one row per purchase slot:
``reserved`` (granted by `Journal.reserve`, no token yet), then ``pending``
once its intent is written, then one of the outcome states, with
``settled_seq``, its place in the journal's order of settled purchases.

Every journal is made the same way: the tables of version 1, then the
upgrade to version 2, so that a new journal and one written by version 1
end in the same schema, every entry kept. A journal whose version
is newer than this code's is refused, never downgraded.

- version 1: the tables;
- version 2: ``settled_seq`` (the order `Journal.mark` reads), replacing
  the wall-clock ``settled_at`` in the count of settled purchases; and
  ``key``, the reason a purchase was made for (`JournalEntry.key`). A
  process of version 1 that still has the journal open writes no
  ``settled_seq``: every such process stops before the upgrade (see
  docs/journal.md, "Upgrading").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..models import ProvisionedLine
from ._entry import ENTRY_STATES, EntryState, JournalEntry
from ._rules import CHARGED_STATES, KEY_STATES, Refused, utc

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "SQLITE_APPLICATION_ID",
    "SQLITE_DDL",
    "SQLITE_UPGRADES",
    "V1_SQLITE_SHAPE",
    "counted",
    "entry_from_row",
    "keyed",
    "newer_schema_message",
    "postgres_ddl",
    "postgres_upgrades",
    "stored_version",
]

#: The schema version this code writes and understands.
SCHEMA_VERSION = 2

#: The columns of ``purchases`` that make a `JournalEntry`, in this order.
COLUMNS = (
    "preview_token, state, account, owner, expires_at, created_at, "
    "phone_number, worker_id, subscription_id, error_code, message, "
    "first_sent_at, settled_at, attempts, evidence, key"
)


def _sql_list(states: Sequence[str]) -> str:
    """`states` as the inside of an SQL ``IN (...)``."""
    return ", ".join(f"'{state}'" for state in states)


_STATES_SQL = _sql_list(("reserved", *ENTRY_STATES))

SQLITE_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS purchases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        owner TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ({_STATES_SQL})),
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
    )""",
    "CREATE INDEX IF NOT EXISTS purchases_open ON purchases (account, state)",
)


def _to_version_2(prefix: str) -> tuple[str, ...]:
    """What turns a version-1 journal into version 2, tables named `prefix`-first."""
    return (
        f"DROP INDEX IF EXISTS {prefix}purchases_settled",
        f"ALTER TABLE {prefix}purchases ADD COLUMN settled_seq bigint",
        f"CREATE INDEX purchases_settled ON {prefix}purchases (settled_seq)",
        f"ALTER TABLE {prefix}purchases ADD COLUMN key text",
        f"CREATE INDEX purchases_key ON {prefix}purchases (account, key)",
    )


#: What turns a version-1 SQLite journal into the current one.
SQLITE_UPGRADES = _to_version_2("")


#: ``PRAGMA application_id`` of a SQLite journal ("SBLN" in ASCII), written
#: with its schema: a SQLite file without it is never taken for a journal.
SQLITE_APPLICATION_ID = 0x53424C4E

#: A version-1 SQLite journal, made before the application id was written:
#: its schema objects and the columns of ``purchases`` (its index
#: ``purchases_settled`` came later in version 1, so it is left out). Such a
#: file is recognised by exactly this shape, then marked.
V1_SQLITE_SHAPE = frozenset(
    {
        ("table", "meta"),
        ("index", "sqlite_autoindex_meta_1"),
        ("table", "purchases"),
        ("index", "sqlite_autoindex_purchases_1"),
        ("table", "sqlite_sequence"),
        ("index", "purchases_open"),
        *(
            ("column", name)
            for name in (  # noqa: SIM905 - a list would take a line per name
                "id account owner state preview_token expires_at created_at "
                "first_sent_at settled_at attempts phone_number worker_id "
                "subscription_id error_code message evidence"
            ).split()
        ),
    }
)


def postgres_ddl(schema: str) -> tuple[str, ...]:
    """The PostgreSQL schema, in the (already quoted) schema `schema`."""
    return (
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"CREATE TABLE IF NOT EXISTS {schema}.meta "
        "(key text PRIMARY KEY, value text NOT NULL)",
        # One row per account, locked by a reservation: the reservations of
        # one account are serialised, those of different accounts are not.
        f"CREATE TABLE IF NOT EXISTS {schema}.accounts (account text PRIMARY KEY)",
        f"CREATE TABLE IF NOT EXISTS {schema}.owners "
        "(owner text PRIMARY KEY, lease_until timestamptz NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS {schema}.purchases (
            id bigserial PRIMARY KEY,
            account text NOT NULL,
            owner text NOT NULL,
            state text NOT NULL CHECK (state IN ({_STATES_SQL})),
            preview_token text UNIQUE,
            expires_at timestamptz,
            created_at timestamptz NOT NULL,
            first_sent_at timestamptz,
            settled_at timestamptz,
            attempts integer NOT NULL DEFAULT 0,
            phone_number text,
            worker_id text,
            subscription_id text,
            error_code text,
            message text,
            evidence text NOT NULL DEFAULT '[]'
        )""",
        f"CREATE INDEX IF NOT EXISTS purchases_open ON {schema}.purchases "
        "(account, state)",
    )


def postgres_upgrades(schema: str) -> tuple[str, ...]:
    """What turns a version-1 PostgreSQL journal in `schema` into the current one."""
    return (*_to_version_2(f"{schema}."), f"CREATE SEQUENCE {schema}.settled_order")


def counted(since: str) -> str:
    """The condition on ``purchases`` of the rows a reservation counts.

    The open ones (reserved or pending), and those that may have charged
    settled after the mark `since` (a placeholder of the backend; NULL
    counts no settled row); see `_rules`.
    """
    return (
        f"(state IN ('reserved', 'pending') OR (state IN "
        f"({_sql_list(CHARGED_STATES)}) AND settled_seq > {since}))"
    )


def keyed(key: str) -> str:
    """The condition on ``purchases`` of the rows that fill key `key`'s total.

    `key` is a placeholder of the backend; see `KEY_STATES`.
    """
    return f"key = {key} AND state IN ({_sql_list(KEY_STATES)})"


def newer_schema_message(found: str, where: str) -> str:
    """Say that the journal at `where` was written by a newer sendblue-lines."""
    return (
        f"the journal at {where} has schema version {found}, but this version "
        f"of sendblue-lines knows only up to {SCHEMA_VERSION}: upgrade "
        "sendblue-lines to use it (it is never downgraded)"
    )


def stored_version(found: str | None, where: str) -> int:
    """The usable schema version of a journal (0 for a new one).

    Raises:
        Refused: the stored version is unreadable, unknown, or newer than
            this code's.
    """
    if found is None:
        return 0
    try:
        version = int(found)
    except ValueError:
        msg = f"the journal at {where} has an unreadable schema version {found!r}"
        raise Refused(msg) from None
    if version > SCHEMA_VERSION:
        raise Refused(newer_schema_message(found, where))
    if version < 1:
        msg = f"the journal at {where} has an unknown schema version {found!r}"
        raise Refused(msg)
    return version


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    return utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))


def entry_from_row(row: Sequence[Any]) -> JournalEntry:
    """Build an entry from a row of `COLUMNS`."""
    (
        token,
        state,
        account,
        owner,
        expires_at,
        created_at,
        phone_number,
        worker_id,
        subscription_id,
        error_code,
        message,
        first_sent_at,
        settled_at,
        attempts,
        evidence,
        key,
    ) = row
    line = None
    if state == "bought" and phone_number is not None:
        line = ProvisionedLine(
            phone_number=phone_number,
            worker_id=worker_id,
            subscription_id=subscription_id,
        )
    expires = _moment(expires_at)
    created = _moment(created_at)
    if expires is None or created is None:  # pragma: no cover - set with the intent
        msg = "a journal entry lacks its times"
        raise ValueError(msg)
    state_: EntryState = state
    return JournalEntry(
        preview_token=token,
        state=state_,
        account=account,
        owner=owner,
        expires_at=expires,
        created_at=created,
        line=line,
        error_code=error_code,
        message=message,
        first_sent_at=_moment(first_sent_at),
        settled_at=_moment(settled_at),
        attempts=int(attempts),
        evidence=json.loads(evidence),
        key=key,
    )
