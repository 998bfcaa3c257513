"""The `Journal` protocol: what the Provisioner needs from a durable record.

How the Provisioner uses it:

1. ``since = await journal.mark()``, then read ``GET /accounts/limits``,
   then plan, then ``slots = await journal.reserve(key_id, owner, wanted,
   room, since=since)``: one transaction that counts the open purchases of
   every process on the account, and those settled since the mark (which
   the limits read may have missed), so a fleet never exceeds the room.
2. For each slot: preview, then ``await journal.record_intent(slot, token,
   expires_at)``; only when that returned is the confirm sent. A
   `JournalError` here stops that purchase before its confirm. A purchase
   with no slot reserved yet (`provision()`, a re-preview) passes a
   `NewSlot` instead of a slot id: the reservation and the intent are then
   one transaction, after the preview (which charges nothing); None back
   means the fleet holds the room, and the token is never sent.
3. ``await journal.record_outcome(token, state, ..., owner=owner)`` before
   the outcome reaches the caller or ``on_outcome``; ``"not_bought"`` when
   the confirm certainly never left or was refused on its first send. An
   entry that another process took over meanwhile comes back unchanged (its
   owner is not ours): the refusal proves nothing then.
4. ``await journal.release(unused_slots)`` when the batch ends.
5. ``reconcile()``: ``await journal.claim_orphans(key_id, owner)``, resend
   each claimed token, and record what came of it (``"unknown"`` with
   evidence from ``GET /api/v2/lines/state`` when nothing is proved).

A fleet on PostgreSQL also runs a heartbeat, ``await journal.renew(owner)``,
more often than the lease: every `heartbeat_seconds` of the journal, a
third of its ``lease`` attribute (seconds; a journal without one, or with
None, as `SQLiteJournal`, is not judged by a lease).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload, runtime_checkable

from ..models import ProvisionedLine

if TYPE_CHECKING:  # for annotations: the entries' attrs classes load with a store
    from ._entry import EntryState, JournalEntry, NewSlot

__all__ = [
    "HEARTBEAT_FLOOR_SECONDS",
    "HEARTBEAT_SECONDS",
    "JOURNAL_METHODS",
    "Journal",
    "heartbeat_seconds",
    "is_journal",
]

#: The longest wait between two heartbeats (and the one of a journal without
#: a lease): a quarter of `PostgresJournal`'s default lease of 60 s.
HEARTBEAT_SECONDS = 15.0
#: The shortest wait between two heartbeats: a lease under three of these
#: cannot be kept alive by them (such leases suit tests of dead owners only).
HEARTBEAT_FLOOR_SECONDS = 0.1

_J = TypeVar("_J", bound="Journal")


@runtime_checkable
class Journal(Protocol):
    """A durable record of purchases, shared by every process that opens it.

    Every method is one durable commit: when it returns, what it wrote
    survives a crash of this process, a kill or a power cut (SQLite with
    ``synchronous=FULL``; PostgreSQL's commit). Every failure of the store is
    a `JournalError`. The order of use for one purchase:

    1. `mark` is read before ``GET /accounts/limits``; `reserve` then grants
       purchase slots, counting every open purchase of the account in the
       whole journal and those settled since the mark (invariant 8);
    2. `record_intent` is written before the first byte of the confirm is
       sent (the write-ahead rule of invariant 7); given a `NewSlot` instead
       of a slot id, it reserves (as `reserve` does) and writes the intent
       in one transaction, so a purchase costs two durable commits;
    3. `record_outcome` is written before the outcome is reported;
    4. `release` gives back the slots that never got an intent.

    After a crash, `claim_orphans` hands each open purchase of a dead owner
    to exactly one survivor, which settles it with `record_outcome`.

    An *owner* names a process: `default_owner()` gives this process's name
    (host, pid and the process's start time). The SQLite journal judges an
    owner dead when it is a process of this host that no longer runs; the
    PostgreSQL journal when its lease, renewed by `renew`, has run out by the
    database's clock.
    """

    async def open(self: _J) -> _J:
        """Open the store, creating or checking its schema; return the journal.

        Raises:
            JournalError: the store cannot be opened, is corrupt, or was
                written by a newer version of sendblue-lines.
        """
        ...

    async def aclose(self) -> None:
        """Close the store. Idempotent."""
        ...

    async def __aenter__(self: _J) -> _J: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    async def mark(self) -> datetime:
        """Return now, by the journal's clock: the `since` of a reservation.

        Read it *before* ``GET /accounts/limits``, and pass it to `reserve`.
        The clock is the one that stamps `JournalEntry.settled_at` (the
        database's ``now()`` for PostgreSQL, the host's for SQLite), so the
        two stamps are compared on one clock, never two hosts'.

        Raises:
            JournalError: the store failed or is not open.
        """
        ...

    async def reserve(
        self,
        account: str,
        owner: str,
        wanted: int,
        room: int | None,
        *,
        since: datetime | None = None,
    ) -> list[int]:
        """Grant up to `wanted` slots, so that what is counted stays within `room`.

        In one transaction: count the account's open purchases (slots of
        live owners, and pending intents of every owner, dead ones included,
        since they may have charged) and, with `since`, the entries that may
        have charged (``"bought"``, ``"provisioning_failed"``, ``"unknown"``)
        settled at or after `since` (less a margin for other owners' entries,
        in case the clock stepped back): the limits read after the mark may
        not count them yet. Then add at most ``room - counted`` slots
        (``room=None``: no limit). Returns the new slot ids, possibly none.

        `since` is a `mark` taken before the limits that gave `room` were
        read; None counts open purchases only, which is enough only when no
        purchase of the account can settle between that read and this call.

        Raises:
            JournalError: the store failed; nothing was reserved.
        """
        ...

    async def release(self, slot_ids: Iterable[int]) -> None:
        """Give back slots that never got an intent; other ids are left alone.

        Raises:
            JournalError: the store failed.
        """
        ...

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
        """Write that `preview_token` is about to be confirmed in slot `slot_id`.

        Must return before the first byte of the confirm is sent. The entry
        is ``"pending"``.

        `slot_id` is a slot `reserve` granted, or a `NewSlot`: then, in the
        same transaction, count what takes room as `reserve` does and write
        the intent in a new slot only if one more purchase fits; None back
        means it did not (the fleet holds the room): nothing was written,
        and the confirm must not be sent.

        Raises:
            JournalError: the slot is not a reserved one, the token is
                already in the journal, a `NewSlot`'s account is not the
                journal's, or the store failed. Then the confirm must not be
                sent.
        """
        ...

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
        lost answer); changing a final state is not.

        `owner` is the process writing. When given, and another owner holds
        the entry (a survivor's `claim_orphans` took it over), only a proof
        of a charge (``"bought"`` with its line, ``"provisioning_failed"``)
        is written, keeping the entry's owner; ``"not_bought"`` and
        ``"unknown"`` are not applied, and the entry comes back unchanged,
        its `JournalEntry.owner` not `owner`: the purchase was taken over,
        and its outcome is the new owner's to record. The check and the
        write are one transaction. Without `owner` nothing is checked
        against the owner (as before owners were checked).

        Raises:
            JournalError: no intent for that token, a state that is not an
                outcome, ``"bought"`` without a line, a final state changed,
                or the store failed.
        """
        ...

    async def claim_orphans(self, account: str, owner: str) -> list[JournalEntry]:
        """Take over the open purchases of the account's dead owners.

        Pending entries of owners judged dead become `owner`'s, atomically:
        each is handed to exactly one claimer however many claim at once.
        Reserved slots of dead owners are given back. Returns the claimed
        entries, oldest first.

        Raises:
            JournalError: the store failed; nothing was claimed.
        """
        ...

    async def renew(self, owner: str) -> None:
        """Tell the journal that `owner` is alive (a heartbeat).

        Raises:
            JournalError: the store failed.
        """
        ...

    async def entries(self, account: str | None = None) -> list[JournalEntry]:
        """Return every entry (of one account, or all), oldest first.

        Raises:
            JournalError: the store failed.
        """
        ...


#: The methods a journal has: every public one of the `Journal` protocol.
JOURNAL_METHODS: tuple[str, ...] = tuple(
    sorted(
        name
        for name, value in vars(Journal).items()
        if not name.startswith("_") and callable(value)
    )
)


def is_journal(value: object) -> bool:
    """Tell whether `value` has every method of `Journal` (duck-typed).

    Not ``isinstance(value, Journal)``: on a runtime-checkable protocol that
    looks the methods up statically from Python 3.12 on, so a wrapper that
    forwards through ``__getattr__`` passed on 3.11 and failed on 3.13;
    `getattr` sees both, the same on every Python.
    """
    return all(callable(getattr(value, name, None)) for name in JOURNAL_METHODS)


def heartbeat_seconds(journal: object) -> float:
    """How long a confirm in flight waits between two `Journal.renew` calls.

    A third of the journal's lease, so that two heartbeats may be late
    before a live owner is judged dead; never more than `HEARTBEAT_SECONDS`
    nor less than `HEARTBEAT_FLOOR_SECONDS`. The lease is the journal's
    ``lease`` attribute in seconds (`PostgresJournal.lease`); a journal
    without one, or whose ``lease`` is None (`SQLiteJournal`: its owners
    live as long as their process), gets `HEARTBEAT_SECONDS`. Never raises.
    """
    lease = getattr(journal, "lease", None)
    if isinstance(lease, bool) or not isinstance(lease, (int, float)):
        return HEARTBEAT_SECONDS
    if not lease > 0:  # NaN and non-positive: not a lease we can follow
        return HEARTBEAT_SECONDS
    return max(HEARTBEAT_FLOOR_SECONDS, min(HEARTBEAT_SECONDS, float(lease) / 3))
