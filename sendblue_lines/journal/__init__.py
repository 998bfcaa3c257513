"""Durable purchases: the journal that survives a crash (invariants 7 and 8).

A journal records every purchase: the intent to confirm a token, written
before the confirm's first byte is sent, and its outcome, written before it
is reported. It holds no credential: the API key id tells accounts apart,
the secret is never stored.

- `Journal`: the protocol the Provisioner uses (mark, reserve,
  record_intent, record_outcome, release, claim_orphans, renew, entries);
  `JOURNAL_METHODS` names its methods and `is_journal` checks a value has
  them all (duck-typed, so a forwarding wrapper is a journal too);
  `heartbeat_seconds` says how often to renew an owner on it.
- `SQLiteJournal`: the embedded default, one file shared by the processes
  of one host; stdlib `sqlite3`, no extra dependency.
- `PostgresJournal`: one journal for a fleet of machines (extra
  ``postgres``: asyncpg); the fleet reservation is a transaction there.
- `JournalEntry`: one purchase as recorded; `NewSlot`: a slot reserved in
  the same transaction as an intent (`Journal.record_intent`).

Every failure of a journal is a `sendblue_lines.JournalError`.
"""

from __future__ import annotations

import typing

from .. import _lazy
from ._owner import default_owner, process_alive
from ._protocol import (
    HEARTBEAT_FLOOR_SECONDS,
    HEARTBEAT_SECONDS,
    JOURNAL_METHODS,
    Journal,
    heartbeat_seconds,
    is_journal,
)

# The stores and the entries load on first use (PEP 562): `import
# sendblue_lines` and a Provisioner without a journal need only the protocol,
# and the stores bring sqlite3, the SQL, its rules and their attrs classes.
# Type checkers see plain imports.
if typing.TYPE_CHECKING:
    from ._entry import ENTRY_STATES, OUTCOME_STATES, EntryState, JournalEntry, NewSlot
    from ._postgres import PostgresJournal, redact_dsn
    from ._schema import SCHEMA_VERSION
    from ._sqlite import SQLiteJournal
else:
    #: Each name loaded on first use, and the submodule it comes from.
    _LAZY = {
        "ENTRY_STATES": "._entry",
        "EntryState": "._entry",
        "JournalEntry": "._entry",
        "NewSlot": "._entry",
        "OUTCOME_STATES": "._entry",
        "PostgresJournal": "._postgres",
        "SCHEMA_VERSION": "._schema",
        "SQLiteJournal": "._sqlite",
        "redact_dsn": "._postgres",
    }
    __getattr__, __dir__ = _lazy.lazy_names(__name__, _LAZY, globals())


__all__ = [
    "ENTRY_STATES",
    "HEARTBEAT_FLOOR_SECONDS",
    "HEARTBEAT_SECONDS",
    "JOURNAL_METHODS",
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
    "is_journal",
    "process_alive",
    "redact_dsn",
]
