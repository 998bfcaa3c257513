"""`JournalEntry`: one purchase as the journal remembers it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, get_args

import attrs

from ..errors import short_token
from ..models import ProvisionedLine

__all__ = ["ENTRY_STATES", "OUTCOME_STATES", "EntryState", "JournalEntry", "NewSlot"]

EntryState = Literal[
    "pending", "bought", "not_bought", "provisioning_failed", "unknown"
]
#: Every state an entry can be in.
ENTRY_STATES: tuple[EntryState, ...] = get_args(EntryState)
#: The states an outcome may record (all but ``"pending"``).
OUTCOME_STATES: tuple[EntryState, ...] = tuple(
    s for s in ENTRY_STATES if s != "pending"
)


def _evidence(value: Any) -> tuple[Mapping[str, Any], ...]:
    return tuple(dict(item) for item in value)


@attrs.frozen(kw_only=True, repr=False)
class JournalEntry:
    """One purchase in the journal: the token confirmed and what came of it.

    `state` is ``"pending"`` (the intent is written, no outcome yet),
    ``"bought"`` (`line` holds the line), ``"not_bought"`` (certainly no
    charge: the confirm never left, or was refused on its first send),
    ``"provisioning_failed"`` (a subscription exists without a line) or
    ``"unknown"`` (the confirm may have charged; `evidence` holds what
    ``GET /api/v2/lines/state`` showed, as plain JSON objects).

    `account` is the API key id the purchase was made with (never the
    secret), `owner` the process (or fleet worker) that holds the entry.
    `key` is the reason the purchase was made for (`provision(key=...)`),
    or None. Times are timezone-aware UTC; `first_sent_at` and `settled_at`
    are None until the confirm was sent and the outcome written. `created_at` and
    `settled_at` are stamped by the journal's clock (the database's for
    PostgreSQL), `first_sent_at` by the sender's. The repr shows only the
    token's prefix.
    """

    preview_token: str
    state: EntryState
    account: str
    owner: str
    expires_at: datetime
    created_at: datetime
    line: ProvisionedLine | None = None
    error_code: str | None = None
    message: str | None = None
    first_sent_at: datetime | None = None
    settled_at: datetime | None = None
    attempts: int = 0
    # Evidence holds JSON objects (dicts), which cannot be hashed: entries
    # hash by the other fields.
    evidence: tuple[Mapping[str, Any], ...] = attrs.field(
        default=(), converter=_evidence, hash=False
    )
    key: str | None = None

    @property
    def settled(self) -> bool:
        """True once an outcome is written (any state but ``"pending"``)."""
        return self.state != "pending"

    def __repr__(self) -> str:
        return (
            f"JournalEntry(preview_token={short_token(self.preview_token)!r}, "
            f"state={self.state!r}, account={self.account!r}, line={self.line!r})"
        )


@attrs.frozen(kw_only=True)
class NewSlot:
    """A slot to reserve in the same transaction as an intent (`Journal.record_intent`).

    Passed instead of a slot id, it asks `record_intent` to count what takes
    room on `account` (as `Journal.reserve` does, with `since` the `mark`
    read before the limits that gave `room`) and, if one more purchase fits
    within `room` (None: no limit), to write the intent in a new slot of
    `owner`; otherwise to write nothing. One durable commit instead of two.
    With `key`, the purchase is made for that key, and fits only while the
    key's purchases that bought or may have bought stay under `total`.
    """

    account: str
    owner: str
    room: int | None
    since: int | None = None
    key: str | None = None
    total: int | None = None
