"""`StoreJournal`: what both journals share above their SQL.

The public methods whose checks are the same on every backend live here,
once: they ask `_rules` and hand the checked values to one hook per
backend (`_reserve`, `_record_intent`, `_reserve_intent`,
`_record_outcome`), which runs the statements.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, overload

from ..errors import JournalError
from ..models import ProvisionedLine
from ._entry import EntryState, JournalEntry, NewSlot
from ._rules import Intent, Outcome, Refused, SlotRequest, check_account, utc

__all__ = ["StoreJournal"]

_S = TypeVar("_S", bound="StoreJournal")


class StoreJournal(abc.ABC):
    """The shared half of `SQLiteJournal` and `PostgresJournal` (see `Journal`)."""

    _account: str | None

    @abc.abstractmethod
    def _error(self, operation: str, message: str) -> JournalError:
        """The `JournalError` for `operation`, saying `message`."""

    @abc.abstractmethod
    async def open(self: _S) -> _S:
        """Open the store; see `Journal.open`."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the store; see `Journal.aclose`."""

    async def __aenter__(self: _S) -> _S:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def reserve(
        self,
        account: str,
        owner: str,
        wanted: int,
        room: int | None,
        *,
        since: datetime | None = None,
    ) -> list[int]:
        """Grant up to `wanted` slots within `room`, counting what takes room.

        See `Journal.reserve`: open purchases of every owner, and with
        `since` (a `mark` read before the limits) the purchases that may
        have charged and were settled since.

        Raises:
            JournalError: the store failed, the counts are negative, or the
                journal is bound to another account; nothing was reserved.
        """
        try:
            request = SlotRequest.of(account, owner, wanted, room, since)
            check_account(self._account, account)
        except Refused as refused:
            raise self._error("reserve purchase slots", str(refused)) from None
        return await self._reserve(request)

    @abc.abstractmethod
    async def _reserve(self, request: SlotRequest) -> list[int]:
        """Count and grant in one transaction."""

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
        """Write the intent to confirm `preview_token` in a reserved slot.

        See `Journal.record_intent`: with a `NewSlot`, the slot is reserved
        in the same transaction, or nothing is written and None returned
        when the room is taken.

        Raises:
            JournalError: the slot is not reserved, the token is already in
                the journal, the account is not the journal's, or the store
                failed.
        """
        if isinstance(slot_id, NewSlot):
            try:
                request = SlotRequest.of(
                    slot_id.account, slot_id.owner, 1, slot_id.room, slot_id.since
                )
                check_account(self._account, slot_id.account)
            except Refused as refused:
                raise self._error(
                    "record the intent to confirm", str(refused)
                ) from None
            intent = Intent(
                slot_id=None, preview_token=preview_token,
                expires_at=utc(expires_at), first_sent_at=utc(first_sent_at),
            )  # fmt: skip
            return await self._reserve_intent(request, intent)
        intent = Intent(
            slot_id=slot_id, preview_token=preview_token, expires_at=utc(expires_at),
            first_sent_at=utc(first_sent_at),
        )  # fmt: skip
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
        """Write the outcome of a purchase; return the entry as it now stands.

        See `Journal.record_outcome`: with `owner`, an outcome that only the
        entry's owner may write is not applied when another owner holds it.

        Raises:
            JournalError: no intent for the token, an invalid or final-state
                change, evidence that is not JSON, or the store failed.
        """
        try:
            outcome = Outcome.of(
                state, line=line, error_code=error_code, message=message,
                attempts=attempts, first_sent_at=first_sent_at, evidence=evidence,
            )  # fmt: skip
        except Refused as refused:
            raise self._error("record the outcome", str(refused)) from None
        return await self._record_outcome(preview_token, outcome, owner)

    @abc.abstractmethod
    async def _record_outcome(
        self, preview_token: str, outcome: Outcome, owner: str | None
    ) -> JournalEntry:
        """Check `outcome` over the stored state and owner, write it if it applies.

        In one transaction (`Outcome.applies_over`); return the entry as it
        now stands.
        """
