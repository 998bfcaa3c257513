"""The journal's public signatures, pinned for mypy --strict.

Never run. Lines ending in `# type: ignore[...]` must stay errors.
"""

from __future__ import annotations

from datetime import datetime

from sendblue_lines import (
    Journal,
    JournalEntry,
    JournalError,
    PostgresJournal,
    ProvisionedLine,
    SQLiteJournal,
)
from sendblue_lines.journal import default_owner, heartbeat_seconds
from sendblue_lines.sandbox import HeldLine, Sandbox


async def both_are_journals(when: datetime, line: ProvisionedLine) -> None:
    journals: list[Journal] = [
        SQLiteJournal("purchases.sqlite3", account="key"),
        PostgresJournal("postgresql://u@h/db", schema="s", lease=30.0),
    ]
    for journal in journals:
        async with journal as opened:
            owner: str = default_owner()
            mark: int = await opened.mark()
            slots: list[int] = await opened.reserve("key", owner, 3, None, since=mark)
            await opened.reserve("key", owner, 3, None, mark)  # type: ignore[call-arg]
            entry: JournalEntry = await opened.record_intent(slots[0], "lpv", when)
            await opened.record_outcome(entry.preview_token, "bought", line=line)
            await opened.record_outcome("lpv", "maybe")  # type: ignore[arg-type]
            await opened.record_outcome("lpv", "not_bought", owner=owner)
            await opened.record_outcome("lpv", "unknown", owner=1)  # type: ignore[arg-type]
            every: float = heartbeat_seconds(opened)
            del every
            await opened.release(slots[1:])
            orphans: list[JournalEntry] = await opened.claim_orphans("key", owner)
            await opened.renew(owner)
            entries: list[JournalEntry] = await opened.entries()
            del orphans, entries


def leases(postgres: PostgresJournal, sqlite: SQLiteJournal) -> float:
    none: None = sqlite.lease
    del none
    return postgres.lease


def journal_errors_carry_where(error: JournalError) -> tuple[str, str, str]:
    return error.backend, error.location, error.operation


def sandbox_lines(sandbox: Sandbox[object]) -> list[HeldLine]:  # type: ignore[type-var]
    added: HeldLine = sandbox.add_line(sendblue_number="+14155550000")
    return [added, *sandbox.lines()]
