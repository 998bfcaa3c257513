"""The Provisioner's journal half: reservations, intents, outcomes, reconcile.

A `Recorder` writes one Provisioner's purchases to its `Journal` (design
invariants 7 and 8): the fleet's reservation after the Budget's, the intent
to confirm a token before its first byte is sent, the outcome before anyone
hears of it, and the settling of what dead processes left open. Each step
says what it does when the journal fails: a purchase whose intent cannot be
written is never confirmed; an outcome that cannot be written is still
reported, and stays pending in the journal for `reconcile()`.

Cleanup only ever touches what its own attempt wrote. A token this process
is confirming right now is held in `_confirming` (one process is one owner,
whatever Provisioner it runs in), so that a failed intent with the same
token, repeated by a server or a proxy, never writes over a live purchase.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import Any

import anyio

from . import _logging, _shield
from ._budget import Reservation, journal_refusal, room
from ._config import check_seconds
from ._logging import extra
from ._results import Plan, ProvisionOutcome
from .client import LinesClient
from .errors import (
    DeclinedError,
    JournalError,
    OutcomeUnknownError,
    RateLimitError,
    SendblueError,
    TransportError,
    confirm_error,
    outcome_of,
    short_token,
)
from .journal import (
    Journal,
    JournalEntry,
    NewSlot,
    default_owner,
    heartbeat_seconds,
)
from .models import Preview, ProvisionedLine

__all__ = [
    "EVIDENCE_SECONDS",
    "JOURNAL_GRACE_SECONDS",
    "Recorder",
    "Report",
    "first_sent",
    "holding",
]

logger = _logging.get_logger(_logging.PROVISIONER)

#: How long a journal write after a cancelled caller may take before it is dropped.
JOURNAL_GRACE_SECONDS = 10.0

#: The longest look at the account's lines for an unknown's evidence: it is
#: taken before the outcome is recorded, so a cancelled caller waits for it.
EVIDENCE_SECONDS = 10.0

#: Hears of each outcome that settling a dead owner's purchase reached.
Report = Callable[[ProvisionOutcome], Awaitable[None]]

#: Tokens whose intent this process wrote and whose outcome it has not yet.
_confirming: Counter[str] = Counter()


class _Grant:
    """The journal slots granted to one reservation, and what they came from.

    `since` is the journal's mark read before the plan's limits: a later
    reservation of the same reservation (a re-preview) counts from it too.
    `key` and `total`: the reason the purchases are for, and its total.
    """

    __slots__ = ("ids", "key", "plan", "since", "total")

    def __init__(
        self,
        ids: list[int],
        plan: Plan,
        since: int,
        key: str | None = None,
        total: int | None = None,
    ) -> None:
        self.ids = ids
        self.plan = plan
        self.since = since
        self.key = key
        self.total = total


def holding(entries: Sequence[JournalEntry]) -> int:
    """How many of a key's purchases bought or may have bought: its total so far."""
    return sum(1 for entry in entries if entry.state != "not_bought")


class Recorder:
    """Writes one Provisioner's purchases to `journal`, as this process's owner."""

    def __init__(self, journal: Journal, client: LinesClient) -> None:
        self.journal = journal
        self.client = client
        self.owner = default_owner()
        self._grants: dict[Reservation, _Grant] = {}

    # -- reservations ---------------------------------------------------------

    async def mark(self) -> int:
        """The journal's mark, read before the limits are.

        Raises:
            JournalError: the journal could not be read.
        """
        return await self.journal.mark()

    def hold(
        self,
        reservation: Reservation,
        plan: Plan,
        since: int,
        key: str | None = None,
        total: int | None = None,
        ids: Sequence[int] = (),
    ) -> None:
        """Keep what the intents of `reservation` reserve with: its plan, mark, key.

        With no `ids` (`provision()`), each intent reserves its own journal
        slot, in the intent's commit.
        """
        self._grants[reservation] = _Grant(list(ids), plan, since, key, total)

    async def reserve(
        self,
        reservation: Reservation,
        plan: Plan,
        since: int,
        key: str | None = None,
        total: int | None = None,
    ) -> RateLimitError | None:
        """Reserve the Budget's slots in the journal too; shrink to what it grants.

        The room is the limits' own (not the plan's): the journal counts this
        Provisioner's open purchases itself, beside the fleet's, and those
        settled after `since`; with `key`, the key's total too. Returns the
        refusal for the slots it did not grant, or None (all granted, or the
        key's total met).

        Raises:
            JournalError: the journal failed; nothing was reserved in it.
        """
        wanted = reservation.size
        ids: list[int] = []
        if wanted > 0:
            ids = await self.journal.reserve(
                self.client.api_key_id, self.owner, wanted, room(plan.limits),
                since=since, key=key, total=total,
            )  # fmt: skip
        self.hold(reservation, plan, since, key, total, ids)
        if len(ids) >= wanted:
            return None
        reservation.shrink(len(ids))
        if await self._key_met(key, total, len(ids)):
            return None
        return journal_refusal(plan, len(ids), wanted)

    async def _key_met(self, key: str | None, total: int | None, granted: int) -> bool:
        """Whether the key's purchases and the slots just granted meet its total."""
        if key is None or total is None:
            return False
        return holding(await self.entries(key)) + granted >= total

    async def entries(self, key: str) -> list[JournalEntry]:
        """The entries of this account under `key`, oldest first.

        Raises:
            JournalError: the journal could not be read.
        """
        return await self.journal.entries(self.client.api_key_id, key=key)

    async def release(self, reservation: Reservation) -> None:
        """Give back the journal slots of `reservation` left without an intent."""
        grant = self._grants.pop(reservation, None)
        if grant is None or not grant.ids:
            return
        ids, grant.ids = grant.ids, []
        try:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(JOURNAL_GRACE_SECONDS),
            ):
                await self.journal.release(ids)
        except JournalError as error:
            logger.warning(
                "the journal could not release %d unused slot(s): %s (they count as "
                "open until this process ends)", len(ids), error,
                extra=extra("journal_release_failed"),
            )  # fmt: skip

    # -- one purchase ---------------------------------------------------------

    async def intent(
        self, index: int, reservation: Reservation, preview: Preview
    ) -> None:
        """Write the intent to confirm `preview`; raise rather than confirm unrecorded.

        Raises:
            JournalError: the intent could not be written; nothing was sent.
            DailyLimitReachedError, MonthlyLimitReachedError: the purchase
                had no journal slot yet (`provision()`, or a re-preview) and
                the fleet's purchases hold all the room the limits left; the
                token was never sent.
            DeclinedError: the purchases under the key meet its total; the
                token was never sent.
        """
        grant = self._grants[reservation]
        token = preview.token
        slot: int | NewSlot = (
            grant.ids.pop(0)
            if grant.ids
            else NewSlot(
                account=self.client.api_key_id, owner=self.owner,
                room=room(grant.plan.limits), since=grant.since, key=grant.key,
                total=grant.total,
            )
        )  # fmt: skip
        try:
            entry = await self.journal.record_intent(slot, token, preview.expires_at)
        except JournalError as error:
            logger.error(
                "slot %d: the journal could not record the intent to confirm token "
                "%s; not sending the confirm: %s", index, short_token(token), error,
                extra=extra("journal_intent_failed"),
            )  # fmt: skip
            if isinstance(slot, int):
                grant.ids.append(slot)  # released with the rest if still reserved
            await self._forget_intent(token, error)
            raise
        if entry is None:
            refusal: SendblueError = journal_refusal(grant.plan, 0, 1)
            if await self._key_met(grant.key, grant.total, 0):
                refusal = DeclinedError(
                    f"the purchases under key {grant.key!r} already meet its total "
                    f"of {grant.total}; this preview was not confirmed and nothing "
                    "was bought",
                    preview_token=token,
                )
            logger.info(
                "slot %d: not sending token %s: %s", index, short_token(token),
                refusal, extra=extra("fleet_full"),
            )  # fmt: skip
            raise refusal
        _confirming[token] += 1

    @staticmethod
    def confirming(token: str) -> bool:
        """Whether this process is confirming `token` right now."""
        return bool(_confirming[token])

    async def _forget_intent(self, token: str, error: JournalError) -> None:
        """Say that a confirm was never sent, if the failed intent may have landed.

        Only this attempt's own write: not when a rule refused it (nothing
        was written; the token's entry, if any, is another purchase's), nor
        while a purchase of this process confirms the same token.
        """
        if error.refused or self.confirming(token):
            return
        with suppress(JournalError):
            await self.journal.record_outcome(
                token, "not_bought",
                message="the intent could not be recorded; the confirm was never sent",
                owner=self.owner,
            )  # fmt: skip

    async def confirm(self, preview: Preview, sent_at: datetime) -> ProvisionedLine:
        """Confirm `preview`, write its outcome to the journal, then return or raise.

        An unknown outcome is written with what the account's lines show
        (`evidence`). A refusal proves nothing was bought only if nobody
        else sent this token: when the journal shows the purchase taken over
        by another process (our lease ran out mid-confirm) or could not
        record it, the refusal may be that process's spent token, and the
        outcome is unknown.
        """
        token = preview.token
        try:
            try:
                line = await self._heartbeat_while(self.client.confirm(preview))
            except Exception as exc:  # noqa: BLE001 - every failure is judged
                error = confirm_error(exc, token, sent_at)
            else:
                await self.record(token, sent_at, line=line)
                return line
            if isinstance(error, OutcomeUnknownError):
                error = error.looked_at(await self.evidence())
            entry = await self.record(token, sent_at, error=error)
            if error.refused and (entry is None or entry.owner != self.owner):
                error = _taken_over(token, sent_at, error)
            raise error
        finally:
            _confirming[token] -= 1
            if not _confirming[token]:
                del _confirming[token]

    async def record(
        self,
        token: str,
        sent_at: datetime | None,
        *,
        line: ProvisionedLine | None = None,
        error: SendblueError | None = None,
        attempts: int | None = None,
    ) -> JournalEntry | None:
        """Write the outcome of confirming `token`; a failure is logged, never raised.

        Returns the entry as it now stands, or None when the write failed:
        the outcome is reported anyway (its error carries every fact), and
        the entry stays pending for a `reconcile()` after this process is
        gone. An entry another process took over keeps its state unless the
        outcome proves a charge (the journal's rule).
        """
        state = outcome_of(None if line is not None else error)
        evidence = getattr(error, "evidence", None) or ()
        try:
            entry = await self.journal.record_outcome(
                token, state, line=line, error_code=getattr(error, "code", None),
                message=None if error is None else str(error),
                attempts=attempts if attempts is not None else sends(error),
                first_sent_at=sent_at, evidence=evidence, owner=self.owner,
            )  # fmt: skip
        except JournalError as exc:
            logger.error(
                "the journal could not record the outcome (%s) of token %s: %s; it "
                "stays pending there, and reconcile() will settle it. The outcome: %s",
                state, short_token(token), exc, "bought" if error is None else error,
                extra=extra("journal_outcome_failed"),
            )  # fmt: skip
            return None
        if entry.owner != self.owner and entry.state != state:
            logger.warning(
                "the journal shows token %s as another process's (a reconcile "
                "took it over): its outcome %s there is that process's to record, "
                "not this one's %s", short_token(token), entry.state, state,
                extra=extra("journal_taken_over"),
            )  # fmt: skip
        return entry

    async def given_up(
        self, token: str, sent_at: datetime, error: SendblueError
    ) -> None:
        """Record the outcome of a confirm whose own task was cut off."""
        with anyio.CancelScope(shield=True):
            await self.record(token, sent_at, error=error)

    async def _heartbeat_while(
        self, confirm: Coroutine[Any, Any, ProvisionedLine]
    ) -> ProvisionedLine:
        """Await `confirm`, renewing this owner in the journal meanwhile.

        So that no survivor takes a purchase still in flight for a dead
        one's: every third of the journal's lease (`heartbeat_seconds`).
        """
        outcome: list[ProvisionedLine] = []
        failure: list[Exception] = []
        interval = heartbeat_seconds(self.journal)

        async def beat() -> None:
            while True:
                await anyio.sleep(interval)
                try:
                    await self.journal.renew(self.owner)
                except JournalError as error:
                    logger.warning(
                        "the journal could not renew this process's lease: %s",
                        error, extra=extra("journal_renew_failed"),
                    )  # fmt: skip

        async with anyio.create_task_group() as group:
            group.start_soon(beat)
            try:
                outcome.append(await confirm)
            except Exception as exc:  # noqa: BLE001 - raised as is below
                failure.append(exc)
            group.cancel_scope.cancel()
        if failure:
            raise failure[0]
        return outcome[0]

    # -- after a crash --------------------------------------------------------

    async def reconcile(
        self, report: Report, key: str | None = None
    ) -> list[ProvisionOutcome]:
        """Settle the open purchases of this account's dead owners (of `key` only).

        See `Provisioner.reconcile`. Each outcome is recorded and `report`
        hears of it even when the caller is cancelled: a resend in flight
        finishes (bounded by the confirm deadline), and what did not buy is
        recorded unknown, without evidence if there was no time to look.

        Raises:
            JournalError: the journal could not be read or claimed from.
        """
        claimed = await self.journal.claim_orphans(
            self.client.api_key_id, self.owner, key=key
        )
        settled: dict[int, ProvisionOutcome] = {}
        failed: list[tuple[int, JournalEntry, SendblueError]] = []
        evidence: tuple[dict[str, object], ...] | None = None
        try:
            for index, entry in enumerate(claimed):
                try:
                    settled[index] = await _shield.shielded(
                        self._resend(index, entry, report),
                        self.client.confirm_deadline,
                    )
                except SendblueError as resend_error:  # noqa: PERF203 - each judged
                    failed.append((index, entry, resend_error))
            if failed:
                # Looked at once every resend that bought has been recorded,
                # so that the lines they bought are not taken for evidence.
                evidence = await self.evidence()
        finally:
            with anyio.CancelScope(shield=True):
                for index, entry, failure in failed:
                    error = _left_unknown(entry, failure, evidence)
                    await self.record(
                        entry.preview_token, error.first_sent_at, error=error
                    )
                    settled[index] = ProvisionOutcome(index=index, error=error)
                    await report(settled[index])
        return [settled[index] for index in sorted(settled)]

    async def _resend(
        self, index: int, entry: JournalEntry, report: Report
    ) -> ProvisionOutcome:
        """Send a dead owner's token again; record and report the line it bought.

        Raises:
            SendblueError: the resend did not buy (see `reconcile`).
        """
        token = entry.preview_token
        line = await self._heartbeat_while(self.client.confirm(token))
        # The dead owner wrote its intent right before its send: one send.
        attempts = max(entry.attempts, 1) + 1
        await self.record(token, first_sent(entry), line=line, attempts=attempts)
        outcome = ProvisionOutcome(index=index, line=line)
        await report(outcome)
        return outcome

    @asynccontextmanager
    async def reconciling(
        self, reconcile: Callable[[], Awaitable[object]], every: float | None
    ) -> AsyncIterator[None]:
        """Run `reconcile` now and every `every` seconds while the block runs.

        Default: `heartbeat_seconds` of the journal. A failed pass is logged
        and the next one runs; leaving the block stops the passes.

        Raises:
            ConfigurationError: `every` is not finite seconds above 0.
        """
        interval = heartbeat_seconds(self.journal) if every is None else every
        check_seconds(interval, "every")

        async def passes() -> None:
            while True:
                try:
                    await reconcile()
                except SendblueError as error:
                    logger.warning(
                        "reconcile failed; trying again in %.1fs: %s", interval, error,
                        extra=extra("reconcile_failed"),
                    )  # fmt: skip
                await anyio.sleep(interval)

        async with anyio.create_task_group() as group:
            group.start_soon(passes)
            try:
                yield
            finally:
                group.cancel_scope.cancel()

    async def evidence(self) -> tuple[dict[str, object], ...] | None:
        """The account's lines that no journal entry of the account accounts for.

        None when nobody could look: the endpoint is not offered (404), or
        failed, or took longer than `EVIDENCE_SECONDS` (logged).
        """
        try:
            with anyio.fail_after(EVIDENCE_SECONDS):
                state = await self.client.get_lines_state()
                entries = await self.journal.entries(self.client.api_key_id)
        except (SendblueError, TimeoutError) as error:
            logger.warning(
                "GET /api/v2/lines/state or the journal failed, recording no "
                "evidence: %s", error, extra=extra("lines_state_failed"),
            )  # fmt: skip
            return None
        if state is None:
            return None
        known = {entry.line.worker_id for entry in entries if entry.line is not None}
        return tuple(
            {
                "worker_id": line.worker_id,
                "sendblue_number": line.sendblue_number,
                "status": line.status,
                "assignment": line.assignment,
            }
            for line in state.lines
            if line.worker_id not in known
        )


def sends(error: SendblueError | None) -> int:
    """How many times a confirm that ended in `error` (None: a line) sent its token."""
    if isinstance(error, OutcomeUnknownError):
        return error.attempts
    if isinstance(error, TransportError):
        return int(error.sent)
    return 1


def first_sent(entry: JournalEntry) -> datetime:
    """When `entry`'s token was first sent, or its intent written if not known."""
    return entry.first_sent_at or entry.created_at


def _left_unknown(
    entry: JournalEntry,
    failure: SendblueError,
    evidence: tuple[dict[str, object], ...] | None,
) -> OutcomeUnknownError:
    """The outcome of a dead owner's purchase whose resend did not buy: unknown.

    A refusal of a resend proves nothing: the first send may have bought.
    """
    error = OutcomeUnknownError.for_token(
        entry.preview_token,
        f"its owner is gone and the resend ended in {type(failure).__name__}, "
        "which proves nothing",
        first_sent_at=first_sent(entry),
        attempts=max(entry.attempts, 1) + sends(failure),
        evidence=evidence,
    )
    error.__cause__ = failure
    return error


def _taken_over(
    token: str, sent_at: datetime, refusal: SendblueError
) -> OutcomeUnknownError:
    """The error for a refused confirm that the journal does not show as ours.

    A process that took the purchase over may have sent the same token and
    bought with it: previewing again could buy a second line.
    """
    unknown = OutcomeUnknownError.for_token(
        token,
        f"the confirm ended in {type(refusal).__name__}, but the journal does not "
        "show this purchase as this process's any more (a reconcile elsewhere may "
        "have taken it over and resent its token) or could not record it; not "
        "previewing again",
        first_sent_at=sent_at, attempts=sends(refusal),
    )  # fmt: skip
    unknown.__cause__ = refusal
    return unknown
