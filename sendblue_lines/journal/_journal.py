"""`Journal`: what the Provisioner needs from a durable record, written once.

Both stores subclass it. The public methods whose checks are the same on
every backend live here: they ask `_rules` and hand the checked values to
one hook per backend (`_reserve`, `_record_intent`, `_reserve_intent`,
`_record_outcome`, `_settle`), which runs the statements.

How the Provisioner uses a journal, for one purchase:

1. ``since = await journal.mark()``, then read ``GET /accounts/limits``,
   then plan, then ``slots = await journal.reserve(key_id, owner, wanted,
   room, since=since)``: one transaction that counts the open purchases of
   every process on the account, and those settled after the mark (which
   the limits read may have missed), so a fleet never exceeds the room.
2. For each slot: preview, then ``await journal.record_intent(slot, token,
   expires_at)``; only when that returned is the confirm sent. A purchase
   with no slot reserved yet (`provision()`, a re-preview) passes a
   `NewSlot` instead: the reservation and the intent are then one
   transaction, after the preview (which charges nothing).
3. ``await journal.record_outcome(token, state, ..., owner=owner)`` before
   the outcome reaches the caller.
4. ``await journal.release(unused_slots)`` when the batch ends.
5. ``reconcile()``: ``await journal.claim_orphans(key_id, owner)``, resend
   each claimed token, and record what came of it.
6. A person's verdict on an unknown outcome: ``await journal.settle(token,
   phone_number=...)`` or ``not_bought=True``.

A fleet on PostgreSQL also renews its owner (``await journal.renew(owner)``)
every `heartbeat_seconds` while a confirm is in flight.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, TypeVar, overload

from ..errors import JournalError
from ..models import ProvisionedLine
from ._entry import EntryState, JournalEntry, NewSlot
from ._rules import (
    Intent,
    Outcome,
    Refused,
    Settlement,
    SlotRequest,
    check_account,
    utc,
)

__all__ = [
    "HEARTBEAT_FLOOR_SECONDS",
    "HEARTBEAT_SECONDS",
    "Journal",
    "heartbeat_seconds",
    "journal_error",
    "refusing",
]

#: The longest wait between two heartbeats (and the one of a journal without
#: a lease): a quarter of `PostgresJournal`'s default lease of 60 s.
HEARTBEAT_SECONDS = 15.0
#: The shortest wait between two heartbeats: a lease under three of these
#: cannot be kept alive by them (such leases suit tests of dead owners only).
HEARTBEAT_FLOOR_SECONDS = 0.1

_J = TypeVar("_J", bound="Journal")


class Journal(abc.ABC):
    """A durable record of purchases, shared by every process that opens it.

    Every method is one durable commit: when it returns, what it wrote
    survives a crash of this process, a kill or a power cut (SQLite with
    ``synchronous=FULL``; PostgreSQL's commit). Every failure of the store,
    and every broken rule, is a `JournalError`. `SQLiteJournal` and
    `PostgresJournal` are the two stores; a wrapper of one (to observe or
    fail it in a test) subclasses it or is registered with
    ``Journal.register``.

    An *owner* names a process: `default_owner()` gives this process's name
    (host, pid and the process's start time). The SQLite journal judges an
    owner dead when it is a process of this host that no longer runs; the
    PostgreSQL journal when its lease, renewed by `renew`, has run out by the
    database's clock. `lease` is that lease in seconds, None for a journal
    whose owners live as long as their process.
    """

    _account: str | None

    @property
    @abc.abstractmethod
    def lease(self) -> float | None:
        """Seconds an owner stays alive without `renew`; None: as long as it runs."""

    #: ``"sqlite"`` or ``"postgresql"``: `JournalError.backend`.
    backend: ClassVar[str]

    @property
    @abc.abstractmethod
    def _named(self) -> tuple[str, str]:
        """How an error names this journal, and where it is (never a password)."""

    @property
    @abc.abstractmethod
    def _opened(self) -> bool:
        """Whether the store is open now."""

    def __repr__(self) -> str:
        name, _ = self._named
        return (
            f"<{type(self).__name__}: {name}, {'open' if self._opened else 'closed'}>"
        )

    @abc.abstractmethod
    async def open(self: _J) -> _J:
        """Open the store, creating, checking or upgrading its schema.

        Raises:
            JournalError: the store cannot be opened, is corrupt, is not a
                journal, or was written by a newer version of sendblue-lines.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the store. Idempotent."""

    async def __aenter__(self: _J) -> _J:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def mark(self) -> int:
        """Return the journal's position in its order of settled purchases.

        Read it *before* ``GET /accounts/limits`` and pass it to `reserve`:
        a purchase settled at or before the mark was answered before the
        limits request was sent, so that read counts it; one settled after
        may be missing from it, and the reservation counts it instead. An
        order of writes, not a clock: no clock of any host is compared.

        Raises:
            JournalError: the store failed or is not open.
        """

    async def reserve(
        self,
        account: str,
        owner: str,
        wanted: int,
        room: int | None,
        *,
        since: int | None = None,
        key: str | None = None,
        total: int | None = None,
    ) -> list[int]:
        """Grant up to `wanted` slots, so that what is counted stays within `room`.

        In one transaction: count the account's open purchases (slots of
        live owners, and pending intents of every owner, dead ones included,
        since they may have charged) and, with `since` (a `mark`), the
        entries that may have charged (``"bought"``,
        ``"provisioning_failed"``, ``"unknown"``) settled after it. Then add
        at most ``room - counted`` slots (``room=None``: no limit). Returns
        the new slot ids, possibly none. Without `since` only open purchases
        count, which is enough only when none can settle between the limits
        read and this call. With `key`, the slots are the key's, and the
        key's slots and purchases that bought or may have bought (every
        state but ``"not_bought"``) stay within `total` (None: no total).

        Raises:
            JournalError: the store failed, the counts are negative, the key
                is not usable, or the journal is bound to another account;
                nothing was reserved.
        """
        with refusing(self, "reserve purchase slots"):
            request = SlotRequest.of(
                account, owner, wanted, room, since, key=key, total=total
            )
            check_account(self._account, account)
        return await self._reserve(request)

    @abc.abstractmethod
    async def _reserve(self, request: SlotRequest) -> list[int]:
        """Count and grant in one transaction."""

    @abc.abstractmethod
    async def release(self, slot_ids: Iterable[int]) -> None:
        """Give back slots that never got an intent; other ids are left alone.

        Raises:
            JournalError: the store failed.
        """

    @overload
    async def record_intent(
        self,
        slot_id: int,
        preview_token: str,
        expires_at: datetime,
        *,
        first_sent_at: datetime | None = None,
    ) -> JournalEntry: ...

    @overload
    async def record_intent(
        self,
        slot_id: NewSlot,
        preview_token: str,
        expires_at: datetime,
        *,
        first_sent_at: datetime | None = None,
    ) -> JournalEntry | None: ...

    async def record_intent(
        self,
        slot_id: int | NewSlot,
        preview_token: str,
        expires_at: datetime,
        *,
        first_sent_at: datetime | None = None,
    ) -> JournalEntry | None:
        """Write that `preview_token` is about to be confirmed; return its entry.

        Must return before the first byte of the confirm is sent. The entry
        is ``"pending"``. `slot_id` is a slot `reserve` granted (with its
        key, if any), or a `NewSlot`: then, in the same transaction, count
        what takes room and fills the key's total as `reserve` does, and
        write the intent in a new slot only if one more purchase fits; None
        back means it did not (the fleet holds the room, or the key's total
        is met): nothing was written, and the confirm must not be sent.

        Raises:
            JournalError: the slot is not a reserved one, the token is
                already in the journal or cannot be stored, a `NewSlot`'s
                account is not the journal's, or the store failed. Then the
                confirm must not be sent.
        """
        with refusing(self, "record the intent to confirm"):
            request = None
            slot = None
            if isinstance(slot_id, NewSlot):
                request = SlotRequest.of(
                    slot_id.account, slot_id.owner, 1, slot_id.room, slot_id.since,
                    key=slot_id.key, total=slot_id.total,
                )  # fmt: skip
                check_account(self._account, slot_id.account)
            else:
                slot = slot_id
            intent = Intent.of(slot, preview_token, utc(expires_at), utc(first_sent_at))
        if request is not None:
            return await self._reserve_intent(request, intent)
        return await self._record_intent(intent)

    @abc.abstractmethod
    async def _record_intent(self, intent: Intent) -> JournalEntry:
        """Check the slot and the token, and write `intent`, in one transaction."""

    @abc.abstractmethod
    async def _reserve_intent(
        self, request: SlotRequest, intent: Intent
    ) -> JournalEntry | None:
        """Count as `_reserve` does and, if one slot fits, write `intent` in it.

        One transaction; None when the room is taken (nothing written).
        """

    async def record_outcome(
        self,
        preview_token: str,
        state: EntryState,
        *,
        line: ProvisionedLine | None = None,
        error_code: str | None = None,
        message: str | None = None,
        attempts: int | None = None,
        first_sent_at: datetime | None = None,
        evidence: Sequence[Mapping[str, Any]] = (),
        owner: str | None = None,
    ) -> JournalEntry:
        """Write the outcome of a pending (or unknown) purchase; return the entry.

        Recording the same final state again is allowed (a retry after a
        lost answer); changing a final state is not. `owner` is the process
        writing: when another owner holds the entry (a survivor's
        `claim_orphans` took it over), only a proof of a charge
        (``"bought"`` with its line, ``"provisioning_failed"``) is written,
        keeping the entry's owner; otherwise the entry comes back unchanged,
        its `JournalEntry.owner` not `owner`. Without `owner` nothing is
        checked against the owner. Text that a store cannot hold as it is
        (a NUL character) is written escaped, never refused.

        Raises:
            JournalError: no intent for that token, a state that is not an
                outcome, ``"bought"`` without a line, a final state changed,
                evidence that is not JSON objects, or the store failed.
        """
        with refusing(self, "record the outcome"):
            outcome = Outcome.of(
                state, line=line, error_code=error_code, message=message,
                attempts=attempts, first_sent_at=first_sent_at, evidence=evidence,
            )  # fmt: skip
        return await self._record_outcome(preview_token, outcome, owner)

    @abc.abstractmethod
    async def _record_outcome(
        self, preview_token: str, outcome: Outcome, owner: str | None
    ) -> JournalEntry:
        """Check `outcome` over the stored state and owner, write it if it applies.

        In one transaction (`Outcome.applies_over`), stamping the entry's
        place in the journal's order of settled purchases (see `mark`);
        return the entry as it now stands.
        """

    async def claim_orphans(
        self, account: str, owner: str, *, key: str | None = None
    ) -> list[JournalEntry]:
        """Take over the open purchases of the account's dead owners.

        Pending entries of owners judged dead (of one `key` only, when
        given) become `owner`'s, atomically: each is handed to exactly one
        claimer however many claim at once. Reserved slots of dead owners
        are given back. Returns the claimed entries, oldest first.

        Raises:
            JournalError: the store failed, or the journal is bound to
                another account; nothing was claimed.
        """
        with refusing(self, "claim orphaned purchases"):
            check_account(self._account, account)
        return await self._claim_orphans(account, owner, key)

    @abc.abstractmethod
    async def _claim_orphans(
        self, account: str, owner: str, key: str | None
    ) -> list[JournalEntry]:
        """Claim as `claim_orphans` says, in one transaction."""

    @abc.abstractmethod
    async def renew(self, owner: str) -> None:
        """Tell the journal that `owner` is alive (a heartbeat).

        Raises:
            JournalError: the store failed.
        """

    @abc.abstractmethod
    async def entries(
        self, account: str | None = None, *, key: str | None = None
    ) -> list[JournalEntry]:
        """Return every entry (of one account or all, of one key or all), oldest first.

        Raises:
            JournalError: the store failed.
        """

    async def settle(
        self,
        preview_token: str,
        *,
        phone_number: str | None = None,
        not_bought: bool = False,
        note: str | None = None,
    ) -> JournalEntry:
        """Record a person's verdict on an ``"unknown"`` entry; return the entry.

        `preview_token` is the entry's token, or its first 8 characters or
        more when they name one entry only. ``phone_number=`` settles it as
        ``"bought"`` (its line carries that number, with worker and
        subscription ids None); ``not_bought=True`` as ``"not_bought"``
        (certainly no charge). Recorded as settled by hand (`error_code`
        ``"settled_by_hand"``, the note in `message`), final, and frees or
        fills the key's total. A line settled by hand keeps its place in the
        order of settled purchases: it charged when its confirm was first
        sent, not now.

        Raises:
            JournalError: a prefix under 8 characters, or one that names no
                entry or several; an entry that is not ``"unknown"``; neither
                or both of `phone_number` and ``not_bought=True``; or the
                store failed. Nothing changed.
        """
        with refusing(self, "settle a purchase by hand"):
            settlement = Settlement.of(
                preview_token, phone_number=phone_number, not_bought=not_bought,
                note=note,
            )  # fmt: skip
        return await self._settle(settlement)

    @abc.abstractmethod
    async def _settle(self, settlement: Settlement) -> JournalEntry:
        """Find the entry `settlement` names, check it, write it: one transaction."""


@contextmanager
def refusing(journal: Journal, operation: str) -> Iterator[None]:
    """Raise a rule's `Refused` in the block as `journal`'s refusal of `operation`.

    A `JournalError` whose `refused` says that nothing was written.
    """
    try:
        yield
    except Refused as refused:
        raise journal_error(journal, operation, str(refused), refused=True) from None


def journal_error(
    journal: Journal, operation: str, message: str, *, refused: bool = False
) -> JournalError:
    """The `JournalError` `journal` raises for `operation`, saying `message`.

    `refused`: a rule of the journal refused it, so it wrote nothing.
    """
    name, location = journal._named
    return JournalError(
        f"{name}: cannot {operation}: {message}",
        backend=journal.backend, location=location, operation=operation,
        refused=refused,
    )  # fmt: skip


def heartbeat_seconds(journal: Journal) -> float:
    """How long a confirm in flight waits between two `Journal.renew` calls.

    A third of the journal's `lease`, so that two heartbeats may be late
    before a live owner is judged dead; never more than `HEARTBEAT_SECONDS`
    nor less than `HEARTBEAT_FLOOR_SECONDS`. A journal without a lease gets
    `HEARTBEAT_SECONDS`.
    """
    lease = journal.lease
    if lease is None or not lease > 0:  # NaN and non-positive: none to follow
        return HEARTBEAT_SECONDS
    return max(HEARTBEAT_FLOOR_SECONDS, min(HEARTBEAT_SECONDS, float(lease) / 3))
