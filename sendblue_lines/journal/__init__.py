"""Durable purchases: the journal that survives a crash (invariants 7 and 8).

A journal records every purchase: the intent to confirm a token, written
before the confirm's first byte is sent, and its outcome, written before it
is reported. It holds no credential: the API key id tells accounts apart,
the secret is never stored.

- `Journal`: the base class of both stores and what the Provisioner uses
  (mark, reserve, record_intent, record_outcome, release, claim_orphans,
  renew, entries) and a person's `settle`; `heartbeat_seconds` says how
  often to renew an owner.
- `SQLiteJournal`: the embedded default, one file shared by the processes
  of one host; stdlib `sqlite3`, no extra dependency.
- `PostgresJournal`: one journal for a fleet of machines (extra
  ``postgres``: asyncpg, imported when it opens); the fleet reservation is
  a transaction there.
- `JournalEntry`: one purchase as recorded; `NewSlot`: a slot reserved in
  the same transaction as an intent (`Journal.record_intent`).

Every failure of a journal is a `sendblue_lines.JournalError`.
"""

from __future__ import annotations

from ._entry import ENTRY_STATES, OUTCOME_STATES, EntryState, JournalEntry, NewSlot
from ._journal import (
    HEARTBEAT_FLOOR_SECONDS,
    HEARTBEAT_SECONDS,
    Journal,
    heartbeat_seconds,
)
from ._owner import default_owner, process_alive
from ._postgres import PostgresJournal, redact_dsn
from ._schema import SCHEMA_VERSION
from ._sqlite import SQLiteJournal

__all__ = [
    "ENTRY_STATES",
    "HEARTBEAT_FLOOR_SECONDS",
    "HEARTBEAT_SECONDS",
    "OUTCOME_STATES",
    "SCHEMA_VERSION",
    "EntryState",
    "Journal",
    "JournalEntry",
    "NewSlot",
    "PostgresJournal",
    "SQLiteJournal",
    "default_owner",
    "heartbeat_seconds",
    "process_alive",
    "redact_dsn",
]
