"""The Provisioner: limits first, preview then confirm, batches that never overspend.

`Provisioner` is what most code calls: it wraps a `LinesClient` and keeps
the design's rules above the single endpoints (limits first, a bounded
re-preview after a token that bought nothing, never a new preview after
money may have moved, a sent confirm that outlives its caller). One purchase
is followed through `_budget.py`, `client.py` and `errors.py`; see
docs/architecture.md.

Decisions that the contract leaves to us, and where they show:

- The limits read is advisory, the server enforces the limits anyway. An
  answer we cannot use (an unknown shape, an unreadable body, or an error
  status the contract does not give that endpoint, such as 404) counts as
  "limits unknown": logged once at WARNING, then the purchase goes on.
  Errors about the account or the network (401, 402, 403, 429, a transport
  failure or a 5xx after the client's retries) are raised by `provision()`
  and `plan()`, and stop a batch before any slot starts.
- Callbacks cannot change what happened to money. An `approve` callback
  that raises declines (`DeclinedError`, with its exception as the cause).
  An `on_outcome` callback that raises is logged at ERROR and ignored.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio

from . import _clock, _logging, _shield, _telemetry
from ._batch import Batch
from ._budget import Budget, Reservation, Slot, limit_error
from ._config import check_callable, check_count, check_instance, check_seconds
from ._logging import extra
from ._results import BatchResult, Plan, ProvisionOutcome, describe
from ._retry import RetryPolicy
from .client import LinesClient
from .errors import (
    APIError,
    ConfigurationError,
    DailyLimitReachedError,
    DeclinedError,
    JournalError,
    MalformedResponseError,
    MaxLinesReachedError,
    MonthlyLimitReachedError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    ProvisioningFailedError,
    RateLimitError,
    SendblueError,
    TokenExpiredError,
    TransportError,
    short_token,
)
from .journal import (
    HEARTBEAT_SECONDS,
    Journal,
    default_owner,
    heartbeat_seconds,
    is_journal,
)
from .models import Preview, ProvisionedLine, ProvisioningLimits

if TYPE_CHECKING:  # the entries load with a journal (see _record_intent)
    from .journal import EntryState, JournalEntry

__all__ = [
    "DEFAULT_NO_LINES_RETRY",
    "BatchResult",
    "Plan",
    "ProvisionOutcome",
    "Provisioner",
]

logger = _logging.get_logger(_logging.PROVISIONER)

#: Retries of "no line available right now": 3 tries, about 3 s of sleep at most.
DEFAULT_NO_LINES_RETRY = RetryPolicy(attempts=3, base_delay=1.0, max_delay=5.0)
#: Purchase slots of a batch in flight at once, unless told otherwise.
DEFAULT_CONCURRENCY = 5
#: How long an async callback may still run after its caller was cancelled.
CALLBACK_GRACE_SECONDS = 10.0
#: How long a journal write after a cancelled caller may take before it is dropped.
JOURNAL_GRACE_SECONDS = 10.0
#: The longest wait between two renewals of this owner while a confirm is in
#: flight; the heartbeat follows the journal's lease (`heartbeat_seconds`: a
#: third of it, 0.1 s at least), so a live owner is never judged dead.
JOURNAL_HEARTBEAT_SECONDS = HEARTBEAT_SECONDS
#: The most re-previews one purchase may make after expired tokens.
_MAX_REPREVIEWS_LIMIT = 10
#: Bounds past which an option is a mistake, not a plan (a day's limit is 3).
_MAX_LINES_LIMIT = 1_000_000
_MAX_CONCURRENCY = 1_000

#: Called with every `ProvisionOutcome`; may return an awaitable.
OutcomeCallback = Callable[[ProvisionOutcome], object]
#: Sees each `Preview` before its confirm; True (or an awaitable of True) buys.
ApproveCallback = Callable[[Preview], "bool | Awaitable[bool]"]


class Provisioner:
    """Buys lines through a `LinesClient`, one or many, by the contract's rules.

    `on_outcome` is called with every `ProvisionOutcome` as it settles (index
    0 for `provision()`), sync or async, even after the caller was cancelled;
    an exception it raises is logged and ignored. `approve` sees each
    `Preview` before its confirm and buys only if it returns True (sync or
    async); anything else, or raising, declines the slot (`DeclinedError`).
    `max_lines` caps the purchases that may have charged (lines,
    `ProvisioningFailedError`s, `OutcomeUnknownError`s and confirms in
    flight) over this Provisioner's lifetime, whatever the server allows.
    `max_repreviews` bounds how many times one purchase previews again after
    an expired token. `no_lines_retry` is the backoff for
    `NoLinesAvailableError`; None disables it (0 is still accepted as an
    older spelling of None). `expiry_margin` is the
    number of seconds before `expires_at` at which a token counts as expired
    and is not sent.

    `journal` (a `Journal`, opened by the caller) makes every purchase
    durable (design invariants 7 and 8): each reservation is also taken in
    the journal, which counts the open purchases of every process sharing it
    on this API key id, and those settled since this purchase's limits read
    began (which that read may have missed), so slots the fleet holds are
    not started (they end as a `DailyLimitReachedError` or
    `MonthlyLimitReachedError` naming the journal: not_attempted in a
    batch). `provision()` reserves its journal slot with the intent, after
    the preview, in one commit: when the fleet holds the room it ends there
    with the same error, its token never sent. The intent to confirm a
    token is written before the confirm is sent; a `JournalError` there
    stops that purchase with nothing sent. The outcome (``"bought"``, ``"not_bought"``,
    ``"provisioning_failed"`` or ``"unknown"``) is written before it is
    reported, also after the caller was cancelled; if that write fails, the
    outcome is still reported, logged at ERROR, and the entry stays pending
    for `reconcile()`, which settles the purchases dead processes left open.
    Without a journal nothing is written, as before.

    Raises:
        ConfigurationError: from the constructor, for an option of the wrong
            type or out of range: `max_lines` an int from 0 to 1,000,000,
            `max_repreviews` an int from 0 to 10, `expiry_margin` finite
            seconds from 0 to 599, `no_lines_retry` a `RetryPolicy`, 0 or None,
            `journal` a `Journal` or None.
    """

    def __init__(
        self,
        client: LinesClient,
        *,
        on_outcome: OutcomeCallback | None = None,
        approve: ApproveCallback | None = None,
        max_lines: int | None = None,
        max_repreviews: int = 2,
        no_lines_retry: RetryPolicy | Literal[0] | None = DEFAULT_NO_LINES_RETRY,
        expiry_margin: float = 5.0,
        journal: Journal | None = None,
    ) -> None:
        if not isinstance(client, LinesClient):
            raise ConfigurationError("Provisioner needs a LinesClient")
        check_callable(on_outcome, "on_outcome")
        check_callable(approve, "approve")
        if max_lines is not None:
            check_count(max_lines, "max_lines", low=0, high=_MAX_LINES_LIMIT)
        check_count(max_repreviews, "max_repreviews", low=0, high=_MAX_REPREVIEWS_LIMIT)
        # None is "off"; the int 0 is its older spelling, still accepted.
        given: object = no_lines_retry
        if not (type(given) is int and given == 0):
            check_instance(given, RetryPolicy, "no_lines_retry")
        # A token lives 10 minutes: a margin of that much would never send one.
        check_seconds(expiry_margin, "expiry_margin", allow_zero=True, high=599.0)
        if journal is not None and not is_journal(journal):
            raise ConfigurationError("journal must be a Journal (or None)")
        self._journal = journal
        self._owner = default_owner()
        # The journal slots granted to each reservation of this Provisioner.
        self._grants: dict[Reservation, _Grant] = {}
        self._client = client
        self._on_outcome = on_outcome
        self._approve = approve
        self._max_lines = max_lines
        self._max_repreviews = max_repreviews
        self._no_lines = (
            no_lines_retry if isinstance(no_lines_retry, RetryPolicy) else None
        )
        self._margin = float(expiry_margin)
        self._limits_warned = False
        # max_lines and the purchases in flight, shared by every flow of this
        # Provisioner (design invariant 3: one shared reservation).
        self._budget = Budget(max_lines)

    def __repr__(self) -> str:
        return f"Provisioner({self._client!r}, max_lines={self._max_lines!r})"

    @property
    def client(self) -> LinesClient:
        """The `LinesClient` this Provisioner buys through."""
        return self._client

    @property
    def journal(self) -> Journal | None:
        """The `Journal` purchases are recorded in, or None."""
        return self._journal

    @property
    def max_lines(self) -> int | None:
        """The lifetime cap on purchases, or None."""
        return self._max_lines

    @property
    def lines_left(self) -> int | None:
        """How many more purchases `max_lines` allows now (None without a cap).

        Confirms in flight count as spent until they certainly bought nothing.
        """
        return self._budget.lines_left

    async def plan(self, count: int) -> Plan:
        """Read the limits and say how many of `count` lines can be bought now.

        Sends no preview and no confirm. `max_lines` is taken into account,
        and so are the purchases of this Provisioner's other flows still in
        flight, which the limits read does not count yet.

        Raises:
            ConfigurationError: `count` is not a non-negative integer.
            APIError: the server refused the limits read (an
                `AuthenticationError`, `NoCardOnFileError`,
                `PermissionDeniedError` or `RateLimitError`), or a
                `ServerError` outlasted the retries.
            TransportError: the limits read failed on every try.
        """
        check_count(count, "count", low=0)
        limits = await self._read_limits()
        return self._budget.plan(count, limits)

    async def provision(self) -> ProvisionedLine:
        """Buy one line: limits, preview, (approve), confirm.

        The outcome goes to `on_outcome` (index 0) before this returns or
        raises. If the caller is cancelled once the confirm was sent, the
        confirm still finishes (bounded by the client's timeouts), its
        outcome is reported, and then the cancellation propagates.

        Raises:
            DailyLimitReachedError, MonthlyLimitReachedError: a window is
                full, either by the limits read (no preview was sent; the
                error has `limits` and `next_available_at`), by the journal
                (the fleet's open purchases hold the room: the preview's
                token was never sent) or by the server.
            MaxLinesReachedError: `max_lines` is used up; nothing was sent.
            TokenExpiredError: the tokens kept expiring after
                `max_repreviews` new previews; nothing was bought.
            NoLinesAvailableError: still none after the `no_lines_retry` tries.
            OutcomeUnknownError: the confirm's result could not be learned;
                most likely bought. Never followed by a new preview.
            ProvisioningFailedError: a subscription exists but no line.
            DeclinedError: the `approve` callback declined; nothing was bought.
            APIError: the purchase failed before any charge (an
                `AuthenticationError`, `NoCardOnFileError`,
                `PermissionDeniedError`, `BadRequestError` or `ServerError`).
            TransportError: the network failed before any charge.
            MalformedResponseError: a preview could not be read; nothing
                was charged.
            JournalError: with a journal, it could not mark the time, reserve
                or record the intent; no confirm was sent.
        """
        # The purchase's scope (and span) is opened here rather than by a
        # decorator: one coroutine less to resume at every wake-up.
        with _telemetry.purchase(0):
            try:
                line = await self._provision()
            except SendblueError as error:
                await self._report(
                    ProvisionOutcome(index=0, error=error), listening=True
                )
                raise
            if self._on_outcome is None and not logger.isEnabledFor(logging.INFO):
                # Nobody to tell: only the purchase's own scope learns the outcome.
                _telemetry.settle(None)
                return line
            await self._report(ProvisionOutcome(index=0, line=line), listening=True)
            return line

    def batch(self, count: int, *, concurrency: int = DEFAULT_CONCURRENCY) -> Batch:
        """Buy up to `count` lines, `concurrency` at a time, as they settle.

        Use it as `async with provisioner.batch(n) as outcomes:` then
        `async for outcome in outcomes:`; see `Batch`. The limits are read
        once, on entering the block.

        Raises:
            ConfigurationError: `count` is not a non-negative int, or
                `concurrency` not an int from 1 to 1000, before any await.
        """
        check_count(count, "count", low=0)
        check_count(concurrency, "concurrency", low=1, high=_MAX_CONCURRENCY)
        return Batch(
            count,
            concurrency,
            opener=self._open,
            settle=self._settle,
            listened=self._on_outcome is not None,
            closer=None if self._journal is None else self._release,
        )

    async def provision_many(
        self, count: int, *, concurrency: int = DEFAULT_CONCURRENCY
    ) -> BatchResult:
        """Buy up to `count` lines, `concurrency` at a time, and collect the result.

        Runs a `batch()` to its end. Per-slot failures are in
        `BatchResult.errors`, never raised; so is an account-level error,
        which also becomes `stopped_by`.

        Raises:
            ConfigurationError: `count` is negative or `concurrency` below 1.
        """
        found: dict[int, ProvisionOutcome] = {}
        async with self.batch(count, concurrency=concurrency) as outcomes:
            # All of them are needed: read once every slot has settled, with
            # one wake-up for the batch instead of one per outcome.
            await outcomes.settled()
            async for outcome in outcomes:
                found[outcome.index] = outcome
        ordered = [found[index] for index in sorted(found)]
        return BatchResult(
            requested=count,
            lines=[o.line for o in ordered if o.line is not None],
            errors=[o.error for o in ordered if o.error is not None],
            not_attempted=outcomes.not_attempted,
            stopped_by=outcomes.stopped_by,
            outcomes=ordered,
        )

    # -- one purchase ---------------------------------------------------------

    async def _open(
        self, count: int
    ) -> tuple[Plan | None, Reservation | None, SendblueError | None]:
        """A batch's one limits read: its plan, its reservation, what stops it."""
        try:
            since = await self._mark()
        except JournalError as error:
            logger.error(
                "batch: the journal could not be read, starting no slot: %s", error,
                extra=extra("batch_journal_failed"),
            )  # fmt: skip
            return None, None, error
        try:
            limits = await self._read_limits()
        except SendblueError as error:
            logger.warning(
                "batch: the limits read failed, starting no slot: %s", error,
                extra=extra(
                    "batch_limits_failed", status=getattr(error, "status", None)
                ),
            )  # fmt: skip
            return None, None, error
        plan = self._budget.plan(count, limits)
        reservation = self._budget.reserve(plan)  # no await since the plan
        stop: SendblueError | None = limit_error(plan, self._max_lines)
        if self._journal is not None:
            try:
                fleet_stop = await self._grant(reservation, limits, since)
            except JournalError as error:
                logger.error(
                    "batch: the journal could not reserve slots, starting none: %s",
                    error, extra=extra("batch_journal_failed"),
                )  # fmt: skip
                reservation.shrink(0)
                return plan, reservation, error
            if fleet_stop is not None and (stop is None or reservation.size == 0):
                stop = fleet_stop
        if stop is not None:
            logger.info(
                "batch: planning %d of %d slot(s): %s", reservation.size, count, stop,
                extra=extra("batch_planned"),
            )  # fmt: skip
        return plan, reservation, stop

    async def _provision(self) -> ProvisionedLine:
        if self._budget.lines_left == 0:
            logger.info(
                "slot 0: not previewing: max_lines=%s is used up", self._max_lines,
                extra=extra("not_previewing"),
            )  # fmt: skip
            raise MaxLinesReachedError(
                f"this Provisioner's max_lines={self._max_lines} is used up; "
                "nothing was sent",
                max_lines=self._max_lines or 0,
            )
        since = await self._mark()
        limits = await self._read_limits()
        plan = self._budget.plan(1, limits)
        reservation = self._budget.reserve(plan)  # no await since the plan
        try:
            refusal = limit_error(plan, self._max_lines)
            if refusal is None and self._journal is not None:
                # No journal slot yet: it is reserved with the intent, after
                # the preview, in one commit (`_record_intent`).
                self._grants[reservation] = _Grant(
                    [], _fleet_room(limits), limits, since
                )
            if refusal is not None:  # a plan of one falls short only to 0
                logger.info(
                    "slot 0: not previewing: %s", refusal,
                    extra=extra(
                        "not_previewing", status=getattr(refusal, "status", None)
                    ),
                )  # fmt: skip
                raise refusal
            try:
                grant = None if self._journal is None else self._grants.get(reservation)
                with reservation.slot() as slot:
                    return await self._buy(slot, grant)
            finally:
                if self._journal is not None:
                    with anyio.CancelScope(shield=True):
                        await self._release(reservation)
        finally:
            reservation.close()

    async def _settle(
        self, reservation: Reservation, guard: anyio.CancelScope
    ) -> ProvisionOutcome:
        """Run the next slot of a batch's `reservation` and report it.

        `guard` is the calling worker's own cancel scope (see `_confirm`).
        """
        with _telemetry.purchase(reservation.started):
            with reservation.slot() as slot:
                try:
                    line = await self._buy(
                        slot, self._grants.get(reservation), guard=guard
                    )
                    outcome = ProvisionOutcome(index=slot.index, line=line)
                except SendblueError as error:
                    outcome = ProvisionOutcome(index=slot.index, error=error)
            await self._report(outcome, listening=True)
            return outcome

    async def _buy(
        self,
        slot: Slot,
        grant: _Grant | None = None,
        *,
        guard: anyio.CancelScope | None = None,
    ) -> ProvisionedLine:
        """Preview, approve and confirm until a line or an error that ends it.

        Each pass previews once and either ends or uses up one of the bounded
        re-previews or no-lines retries, so the loop is bounded. `guard`: the
        cancel scope of the batch worker this runs in (see `_confirm`).
        """
        repreviews = 0
        no_lines = 0
        while True:
            _telemetry.note_attempt()
            try:
                preview = await self._client.preview()
            except NoLinesAvailableError as exc:
                no_lines += 1
                await self._pause_for_lines(slot, exc, no_lines)
                continue
            _telemetry.note_token(preview.token)
            if self._approve is not None:
                await self._ask(slot, preview)
            if preview.expired(margin=self._margin):
                repreviews += 1
                if repreviews > self._max_repreviews:
                    raise TokenExpiredError(
                        f"the preview token expired (by the validity the server "
                        f"granted, with a {self._margin:g}s margin) before it could "
                        f"be sent, "
                        f"{repreviews} time(s); nothing was sent or bought"
                    )
                logger.info(
                    "slot %d: token %s expires at %s, too soon to send; previewing "
                    "again",
                    slot.index, short_token(preview.token),
                    preview.expires_at.isoformat(),
                    extra=extra("token_expiring"),
                )  # fmt: skip
                continue
            if grant is not None:
                await self._record_intent(slot, grant, preview)
            try:
                return await self._confirm(
                    slot, preview, recording=grant is not None, guard=guard
                )
            except TokenExpiredError as expired:
                repreviews += 1
                if repreviews > self._max_repreviews:
                    raise
                logger.info(
                    "slot %d: token expired at confirm, nothing bought; previewing "
                    "again (%d of %d)",
                    slot.index, repreviews, self._max_repreviews,
                    extra=extra("repreview", status=expired.status),
                )  # fmt: skip
            except NoLinesAvailableError as exc:
                no_lines += 1
                await self._pause_for_lines(slot, exc, no_lines)

    async def _pause_for_lines(
        self, slot: Slot, error: NoLinesAvailableError, failures: int
    ) -> None:
        """Sleep before the try after `failures` of them; raise when out of tries."""
        policy = self._no_lines
        if policy is None or failures >= policy.attempts:
            raise error
        delay = policy.delay(failures)
        logger.info(
            "slot %d: no line available; trying again in %.2fs (try %d of %d)",
            slot.index, delay, failures + 1, policy.attempts,
            extra=extra("no_lines_retry", status=error.status),
        )  # fmt: skip
        await anyio.sleep(delay)

    async def _ask(self, slot: Slot, preview: Preview) -> None:
        """Ask the `approve` callback; raise `DeclinedError` unless it says True."""
        approve = self._approve
        assert approve is not None  # noqa: S101 - only called when set
        try:
            answer = approve(preview)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            logger.exception(
                "slot %d: the approve callback raised; declining", slot.index,
                extra=extra("declined"),
            )  # fmt: skip
            raise DeclinedError(
                f"the approve callback raised {type(exc).__name__}; the preview "
                "was declined and nothing was bought",
                preview_token=preview.token,
            ) from exc
        if answer is not True:
            logger.info(
                "slot %d: the approve callback declined", slot.index,
                extra=extra("declined"),
            )  # fmt: skip
            raise DeclinedError(
                "the approve callback declined the preview; nothing was bought",
                preview_token=preview.token,
            )

    async def _confirm(
        self,
        slot: Slot,
        preview: Preview,
        *,
        recording: bool = False,
        guard: anyio.CancelScope | None = None,
    ) -> ProvisionedLine:
        """Confirm `preview` so that cancelling the caller cannot lose the answer.

        `recording`: the outcome is written to the journal inside the
        shielded confirm, before anyone hears of it. `guard`: the caller is
        a batch's worker task, which only its task group's cancel scope
        cancels, and this its own scope (see `_confirm_in_worker`); any
        other caller may be cancelled natively, so the confirm runs as a
        task of its own.
        """
        # From here until we learn otherwise, money may move for this slot.
        slot.charged = True
        sent_at = _clock.now()
        confirm = (
            self._confirm_recorded(preview, sent_at)
            if recording
            else self._client.confirm(preview)
        )
        if guard is not None:
            return await self._confirm_in_worker(
                slot, preview, confirm, sent_at, recording, guard
            )
        task, outcome = _shield.start_shielded(confirm)
        try:
            return await outcome
        except asyncio.CancelledError:
            if outcome.done() and not outcome.cancelled():
                outcome.exception()  # the task's outcome is judged below
            await self._confirm_cancelled(slot, preview, task, sent_at, recording)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is judged below
            error = _settled_error(exc, preview, sent_at)
        # Raised outside the except block: an exception from outside our
        # hierarchy is described, never chained (it may hold the headers).
        if _bought_nothing(error):
            slot.charged = False
        raise error

    async def _confirm_in_worker(
        self,
        slot: Slot,
        preview: Preview,
        confirm: Coroutine[Any, Any, ProvisionedLine],
        sent_at: datetime,
        recording: bool,
        guard: anyio.CancelScope,
    ) -> ProvisionedLine:
        """Confirm with the batch worker's own cancel scope, `guard`, shielded.

        Nobody else holds a worker task: the batch cancels it through its
        task group's cancel scope, which a shielded scope holds off, so the
        confirm runs to its answer (bounded by the client's own timeouts,
        `LinesClient.confirm_deadline`) in the worker itself, without a task
        of its own. Its outcome then goes the usual way (`on_outcome`, the
        log, the batch's stream), and a cancellation that arrived meanwhile
        is taken at the worker's next wait; the batch logs at WARNING every
        outcome its consumer did not take. Only a native cancel of the worker
        (an event loop cancelling every task as it shuts down, which would
        cancel a confirm's own task as well) breaks through: that outcome is
        reported unknown.
        """
        # The worker's one scope, shielded only meanwhile: cheaper than a
        # scope of its own per confirm. Unshielded again, a cancellation that
        # arrived meanwhile is delivered at the worker's next wait.
        guard.shield = True
        try:
            return await confirm
        except asyncio.CancelledError:
            reason = "the batch's worker task was cancelled while confirming"
            await self._given_up(slot, preview, sent_at, reason, recording)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is judged below
            error = _settled_error(exc, preview, sent_at)
        finally:
            guard.shield = False
        if _bought_nothing(error):
            slot.charged = False
        raise error

    async def _settled_late(
        self, slot: Slot, line: ProvisionedLine | None, error: SendblueError | None
    ) -> None:
        """Report a confirm that settled after its caller was cancelled."""
        outcome = ProvisionOutcome(index=slot.index, line=line, error=error)
        # A unit of max_lines comes back only when the error proves that
        # nothing was bought.
        slot.charged = error is None or not _bought_nothing(error)
        with anyio.CancelScope(shield=True):
            await self._report(outcome, listening=False)

    async def _confirm_cancelled(
        self,
        slot: Slot,
        preview: Preview,
        task: asyncio.Task[ProvisionedLine],
        sent_at: datetime,
        recording: bool = False,
    ) -> None:
        """Our caller was cancelled mid-confirm: wait for its answer, report it."""
        deadline = self._client.confirm_deadline
        logger.info(
            "slot %d: cancelled while confirming token %s; waiting up to %.1fs for "
            "the answer",
            slot.index, short_token(preview.token), deadline,
            extra=extra("cancelled_while_confirming"),
        )  # fmt: skip
        finished = await _shield.wait_through(task, deadline)
        if not finished:
            reason = (
                "the caller was cancelled and the confirm had no answer within "
                f"{deadline:.1f}s"
            )
            await self._given_up(slot, preview, sent_at, reason, recording)
        elif task.exception() is None:
            await self._settled_late(slot, task.result(), None)
        else:
            failure = task.exception()
            assert failure is not None  # noqa: S101 - narrowed above
            await self._settled_late(
                slot, None, _settled_error(failure, preview, sent_at)
            )

    async def _given_up(
        self,
        slot: Slot,
        preview: Preview,
        sent_at: datetime,
        reason: str,
        recording: bool,
    ) -> None:
        """Report (and record) a confirm cut off before its answer: unknown."""
        unknown = _unknown(preview, sent_at, reason)
        if recording:  # what would have written its outcome was cancelled
            with anyio.CancelScope(shield=True):
                await self._record_outcome(preview.token, sent_at, error=unknown)
        await self._settled_late(slot, None, unknown)

    # -- the journal (design invariants 7 and 8) ----------------------------------

    async def _mark(self) -> datetime | None:
        """The journal's clock, read before the limits are (None without a journal).

        Raises:
            JournalError: the journal could not be read.
        """
        journal = self._journal
        return None if journal is None else await journal.mark()

    async def _grant(
        self,
        reservation: Reservation,
        limits: ProvisioningLimits,
        since: datetime | None,
    ) -> RateLimitError | None:
        """Reserve the Budget's slots in the journal too; shrink to what it grants.

        The room is the limits' own (not the plan's): the journal counts this
        Provisioner's open purchases itself, beside the fleet's, and those
        settled since `since` (the mark read before `limits`), which the
        limits read may have missed (the fleet race of invariant 8). Returns
        the error that says why fewer slots were granted, or None.

        Raises:
            JournalError: the journal failed; nothing was reserved in it.
        """
        journal = self._journal
        assert journal is not None  # noqa: S101 - only called with a journal
        room = _fleet_room(limits)
        wanted = reservation.size
        ids: list[int] = []
        if wanted > 0:
            ids = await journal.reserve(
                self._client.api_key_id, self._owner, wanted, room, since=since
            )
        self._grants[reservation] = _Grant(ids, room, limits, since)
        if len(ids) >= wanted:
            return None
        reservation.shrink(len(ids))
        return _fleet_error(limits, len(ids), wanted)

    async def _release(self, reservation: Reservation) -> None:
        """Give back the journal slots of `reservation` left without an intent."""
        grant = self._grants.pop(reservation, None)
        journal = self._journal
        if grant is None or journal is None or not grant.ids:
            return
        ids, grant.ids = grant.ids, []
        try:
            with anyio.move_on_after(JOURNAL_GRACE_SECONDS):
                await journal.release(ids)
        except JournalError as error:
            logger.warning(
                "the journal could not release %d unused slot(s): %s (they count as "
                "open until this process ends)", len(ids), error,
                extra=extra("journal_release_failed"),
            )  # fmt: skip

    async def _record_intent(self, slot: Slot, grant: _Grant, preview: Preview) -> None:
        """Write the intent to confirm `preview`; raise rather than confirm unrecorded.

        Raises:
            JournalError: the intent could not be written; nothing was sent.
            DailyLimitReachedError, MonthlyLimitReachedError: the purchase
                had no journal slot yet (`provision()`, or a re-preview) and
                the fleet's open purchases hold all the room the limits left;
                the token was never sent, nothing was bought.
        """
        journal = self._journal
        assert journal is not None  # noqa: S101 - only called with a journal
        slot_id: int | None = grant.ids.pop(0) if grant.ids else None
        try:
            if slot_id is not None:
                await journal.record_intent(slot_id, preview.token, preview.expires_at)
                return
            # No slot reserved yet (provision(), or a re-preview after a token
            # that bought nothing): the slot and the intent, one commit.
            from .journal import NewSlot  # loaded with the journal's stores

            wanted = NewSlot(
                account=self._client.api_key_id, owner=self._owner,
                room=grant.room, since=grant.since,
            )  # fmt: skip
            entry = await journal.record_intent(
                wanted, preview.token, preview.expires_at
            )
        except JournalError as error:
            logger.error(
                "slot %d: the journal could not record the intent to confirm token "
                "%s; not sending the confirm: %s",
                slot.index, short_token(preview.token), error,
                extra=extra("journal_intent_failed"),
            )  # fmt: skip
            if slot_id is not None:
                grant.ids.append(slot_id)  # released with the rest if still reserved
            # If the write did land after all, say that this confirm never left,
            # or a reconcile would send it.
            with suppress(JournalError):
                await journal.record_outcome(
                    preview.token, "not_bought",
                    message="the intent could not be recorded; the confirm was "
                    "never sent", owner=self._owner,
                )  # fmt: skip
            raise
        if entry is None:
            refusal = _fleet_error(grant.limits, 0, 1)
            logger.info(
                "slot %d: not sending token %s: %s", slot.index,
                short_token(preview.token), refusal,
                extra=extra("fleet_full"),
            )  # fmt: skip
            raise refusal

    async def _confirm_recorded(
        self, preview: Preview, sent_at: datetime
    ) -> ProvisionedLine:
        """Confirm `preview`, then write its outcome to the journal, then return."""
        try:
            line = await self._heartbeat_while(self._client.confirm(preview))
        except Exception as exc:  # noqa: BLE001 - every failure is judged below
            error = _settled_error(exc, preview, sent_at)
        else:
            await self._record_outcome(preview.token, sent_at, line=line)
            return line
        entry = await self._record_outcome(preview.token, sent_at, error=error)
        if _bought_nothing(error) and (entry is None or entry.owner != self._owner):
            # A refusal proves nothing was bought only if nobody else sent
            # this token: a survivor's reconcile may have taken the purchase
            # over (our lease ran out mid-confirm) and resent it, and then our
            # 410 is its spent token. Previewing again could buy a second line.
            error = _taken_over(preview, sent_at, error)
        # Raised outside the except block (see `_confirm`).
        raise error

    async def _heartbeat_while(
        self, confirm: Coroutine[Any, Any, ProvisionedLine]
    ) -> ProvisionedLine:
        """Await `confirm`, renewing this owner in the journal meanwhile.

        So that no survivor takes a purchase still in flight for a dead one's:
        every third of the journal's lease (`heartbeat_seconds`), at most
        every `JOURNAL_HEARTBEAT_SECONDS`.
        """
        journal = self._journal
        assert journal is not None  # noqa: S101 - only called with a journal
        outcome: list[ProvisionedLine] = []
        failure: list[Exception] = []
        interval = min(heartbeat_seconds(journal), JOURNAL_HEARTBEAT_SECONDS)

        async def beat() -> None:
            while True:
                await anyio.sleep(interval)
                try:
                    await journal.renew(self._owner)
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

    async def _record_outcome(
        self,
        token: str,
        sent_at: datetime | None,
        *,
        line: ProvisionedLine | None = None,
        error: SendblueError | None = None,
        evidence: tuple[dict[str, object], ...] = (),
    ) -> JournalEntry | None:
        """Write the outcome of confirming `token`; a failure is logged, never raised.

        Returns the entry as it now stands, or None when the write failed.
        The outcome is reported anyway: the entry stays as it was (pending,
        for a `reconcile()` after this process is gone to settle). Written
        as this owner's: an entry another process took over keeps its state
        unless the outcome proves a charge (the journal's rule), and comes
        back with that process as its owner.
        """
        journal = self._journal
        assert journal is not None  # noqa: S101 - only called with a journal
        state = _entry_state(line, error)
        try:
            entry = await journal.record_outcome(
                token, state, line=line,
                error_code=None if error is None else getattr(error, "code", None),
                message=None if error is None else str(error),
                attempts=getattr(error, "attempts", None) or 1,
                first_sent_at=sent_at, evidence=evidence, owner=self._owner,
            )  # fmt: skip
        except JournalError as exc:
            logger.error(
                "the journal could not record the outcome (%s) of token %s: %s; it "
                "stays pending there, and reconcile() will settle it",
                state, short_token(token), exc,
                extra=extra("journal_outcome_failed"),
            )  # fmt: skip
            return None
        if entry.owner != self._owner and entry.state != state:
            logger.warning(
                "the journal shows token %s as another process's (a reconcile "
                "took it over): its outcome %s there is that process's to record, "
                "not this one's %s",
                short_token(token), entry.state, state,
                extra=extra("journal_taken_over"),
            )  # fmt: skip
        return entry

    async def reconcile(self) -> list[ProvisionOutcome]:
        """Settle the purchases that dead processes left open in the journal.

        Claims (`Journal.claim_orphans`) the pending entries of this
        account's owners that are gone, each one by exactly one claimer, and
        resends each one's **same** token, never a new preview: a line is
        recorded ``"bought"``; any other answer (a refusal of a resend
        proves nothing: the first send may have bought) is recorded
        ``"unknown"`` with evidence, the lines `get_lines_state()` lists that
        no entry of this account accounts for. Entries that are settled,
        ``"not_bought"`` included, are never touched. Each outcome (index:
        its position) is reported like a purchase's, and returned.

        Raises:
            ConfigurationError: this Provisioner has no journal.
            JournalError: the journal could not be read or claimed from.
        """
        journal = self._journal
        if journal is None:
            raise ConfigurationError("reconcile() needs a Provisioner with a journal")
        account = self._client.api_key_id
        claimed = await journal.claim_orphans(account, self._owner)
        settled: dict[int, ProvisionOutcome] = {}
        unknown: list[tuple[int, JournalEntry, SendblueError]] = []
        for index, entry in enumerate(claimed):
            token = entry.preview_token
            try:
                line = await _shield.shielded(
                    self._heartbeat_while(self._client.confirm(token)),
                    self._client.confirm_deadline,
                )
            except SendblueError as resend_error:
                unknown.append((index, entry, resend_error))
                continue
            await self._record_outcome(token, entry.first_sent_at, line=line)
            settled[index] = ProvisionOutcome(index=index, line=line)
        if unknown:
            evidence = await self._evidence(journal, account)
            for index, entry, failure in unknown:
                sent = entry.first_sent_at or entry.created_at
                reason = (
                    "its owner is gone and the resend ended in "
                    f"{type(failure).__name__}, which proves nothing"
                )
                outcome_error = OutcomeUnknownError.for_token(
                    entry.preview_token, reason, first_sent_at=sent,
                    attempts=entry.attempts + 1,
                )  # fmt: skip
                outcome_error.__cause__ = failure
                await self._record_outcome(
                    entry.preview_token, sent, error=outcome_error, evidence=evidence
                )
                settled[index] = ProvisionOutcome(index=index, error=outcome_error)
        outcomes = [settled[index] for index in sorted(settled)]
        for outcome in outcomes:
            await self._report(outcome, listening=True)
        return outcomes

    async def _evidence(
        self, journal: Journal, account: str
    ) -> tuple[dict[str, object], ...]:
        """The account's lines that no journal entry of `account` accounts for."""
        try:
            state = await self._client.get_lines_state()
        except SendblueError as error:
            logger.warning(
                "reconcile: GET /api/v2/lines/state failed, recording no evidence: %s",
                error, extra=extra("lines_state_failed"),
            )  # fmt: skip
            return ()
        if state is None:
            return ()
        known = {
            entry.line.worker_id
            for entry in await journal.entries(account)
            if entry.line is not None
        }
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

    # -- limits and reporting -----------------------------------------------------

    async def _read_limits(self) -> ProvisioningLimits:
        """Read the limits; an answer we cannot use means "unknown", never an error."""
        limits, why = await read_limits(self._client)
        if why is not None:
            self._limits_unknown(why)
        return limits

    def _limits_unknown(self, why: str) -> None:
        level = logging.DEBUG if self._limits_warned else logging.WARNING
        self._limits_warned = True
        logger.log(
            level,
            "GET /accounts/limits: %s; going on with the limits unknown (the server "
            "still enforces them at preview and confirm)",
            why,
            extra=extra("limits_unknown"),
        )

    async def _report(self, outcome: ProvisionOutcome, *, listening: bool) -> None:
        """Log `outcome` and hand it to `on_outcome`; never lose it, never raise."""
        callback = self._on_outcome
        _telemetry.settle(outcome.error)
        if not listening:  # nobody may hear of it but the log
            level = logging.INFO if callback is not None else logging.WARNING
            text = "slot %d settled after its caller was cancelled: %s"
        elif outcome.ok or outcome.charged:  # a line, or money may have moved
            level = logging.INFO if outcome.ok else logging.WARNING
            text = "slot %d: %s"
        else:
            level, text = logging.INFO, "slot %d: failed: %s"
        if logger.isEnabledFor(level):  # the record's keys only for a record made
            logger.log(
                level, text, outcome.index, describe(outcome),
                extra=_outcome_keys(outcome, listening),
            )  # fmt: skip
        if callback is None:
            return
        try:
            result = callback(outcome)
            if inspect.isawaitable(result):
                await _shield.shielded(result, CALLBACK_GRACE_SECONDS)
        except Exception:
            logger.exception(
                "slot %d: the on_outcome callback raised; the outcome stands",
                outcome.index,
                extra=_outcome_keys(outcome, listening),
            )


def _outcome_keys(outcome: ProvisionOutcome, listening: bool) -> dict[str, object]:
    """The structured keys of the log records about `outcome`."""
    return extra(
        "outcome" if listening else "outcome_after_cancel",
        slot=outcome.index, outcome=_telemetry.outcome_of(outcome.error),
        status=getattr(outcome.error, "status", None),
    )  # fmt: skip


class _Grant:
    """The journal slots granted to one reservation, and the room they came from.

    `since` is the journal's mark read before `limits`: a later reservation
    of the same reservation (a re-preview) counts from it too.
    """

    __slots__ = ("ids", "limits", "room", "since")

    def __init__(
        self,
        ids: list[int],
        room: int | None,
        limits: ProvisioningLimits,
        since: datetime | None,
    ) -> None:
        self.ids = ids
        self.room = room
        self.limits = limits
        self.since = since


def _fleet_room(limits: ProvisioningLimits) -> int | None:
    """The room the tighter window leaves for every open purchase; None if unknown."""
    rooms = [
        w.remaining if w.remaining is not None else w.limit
        for w in limits.windows().values()
    ]
    known = [r for r in rooms if r is not None]
    return max(min(known), 0) if known else None


def _fleet_error(
    limits: ProvisioningLimits, granted: int, wanted: int
) -> DailyLimitReachedError | MonthlyLimitReachedError:
    """The error for slots the journal did not grant: the fleet holds the room.

    The same fact as the Budget's own limit errors (the room
    ``GET /accounts/limits`` showed, less the purchases already open), counted
    over every process that shares the journal: so the same classes, which
    callers already handle (`next_available_at`, a batch's stop).
    """
    windows = {
        name: (w.remaining if w.remaining is not None else w.limit, w)
        for name, w in limits.windows().items()
    }
    known = {n: v for n, v in windows.items() if v[0] is not None}
    name = min(known, key=lambda n: (known[n][0], n != "monthly")) if known else "daily"
    window = limits.windows().get(name)
    next_at = None if window is None else window.next_available_at
    message = (
        f"the {name} provisioning limit leaves room for {granted} of {wanted} "
        "line(s) once the purchases that other processes sharing the journal "
        "hold open are counted (GET /accounts/limits and the journal); no "
        "confirm was sent for the rest"
    )
    if name == "monthly":
        return MonthlyLimitReachedError(
            message, code="monthly_limit_reached", limits=limits,
            next_available_at=next_at,
        )  # fmt: skip
    return DailyLimitReachedError(
        message, code="daily_limit_reached", limits=limits, next_available_at=next_at
    )


def _entry_state(
    line: ProvisionedLine | None, error: SendblueError | None
) -> EntryState:
    """The journal state of a settled confirm: what the error class proves."""
    if line is not None or error is None:
        return "bought"
    if isinstance(error, ProvisioningFailedError):
        return "provisioning_failed"
    if _bought_nothing(error):
        return "not_bought"
    return "unknown"


#: Why the limits are unknown when the answer has a shape we do not know.
UNKNOWN_SHAPE = "the server answered in a shape we do not know"


async def read_limits(client: LinesClient) -> tuple[ProvisioningLimits, str | None]:
    """Read the limits: an answer we cannot use gives unknown limits, and why.

    The limits read is advisory (the server enforces the limits anyway), so
    an unreadable body, a shape we do not know, or a refusal the contract
    does not give this endpoint (400, 404, 405, 410, ...) gives unknown
    limits and a reason, never an error: the endpoint's shape is an
    assumption, and it must not block a purchase that preview and confirm
    may well allow. The Provisioner and the CLI read the limits this way.

    Raises:
        APIError: a refusal about the account (`SendblueError.account_level`:
            401, 402, 403, 429), or an answer that is not a refusal (a
            `ServerError` after the retries, `NoLinesAvailableError`).
        TransportError: the read failed on every try.
    """
    try:
        limits = await client.get_limits()
    except MalformedResponseError as error:
        return ProvisioningLimits(), f"its answer could not be read ({error.message})"
    except APIError as error:
        if error.account_level or not error.refused:
            raise
        return ProvisioningLimits(), f"GET /accounts/limits answered {error}"
    return limits, None if limits.known else UNKNOWN_SHAPE


def _bought_nothing(error: SendblueError) -> bool:
    """True only when the spec's client rules prove that a confirm bought nothing.

    `LinesClient.confirm` raises a refusal (`SendblueError.refused`: a 4xx
    such as `TokenExpiredError`, the documented 503 `NoLinesAvailableError`,
    a `ConfigurationError` before the first send) only then, and a
    `TransportError` only when every send certainly never left. Anything
    else after a confirm may have left counts as money moved.
    """
    if isinstance(error, TransportError):
        return not error.sent
    return error.refused


def _unknown(preview: Preview, sent_at: datetime, reason: str) -> OutcomeUnknownError:
    # attempts=1 at least: the client's own count went with its task.
    return OutcomeUnknownError.for_token(
        preview.token, reason, first_sent_at=sent_at, attempts=1
    )


def _taken_over(
    preview: Preview, sent_at: datetime, refusal: SendblueError
) -> OutcomeUnknownError:
    """The error for a refused confirm that the journal does not show as ours.

    The journal either would not record that it bought nothing or shows it
    held by another process: one that took the purchase over may have sent
    the same token and bought with it.
    """
    unknown = _unknown(
        preview, sent_at,
        f"the confirm ended in {type(refusal).__name__}, but the journal does "
        "not show this purchase as this process's any more (a reconcile elsewhere "
        "may have taken it over and resent its token) or could not record it; "
        "not previewing again",
    )  # fmt: skip
    unknown.__cause__ = refusal
    return unknown


def _settled_error(
    failure: BaseException, preview: Preview, sent_at: datetime
) -> SendblueError:
    """The error a confirm that failed with `failure` ends in.

    Our own errors that prove nothing was bought, or that money moved,
    stand; every other one, and anything from outside our hierarchy, is an
    `OutcomeUnknownError`: the confirm may have left. A foreign exception is
    described by its type only and never chained, since it may hold the
    request's headers.
    """
    ours = isinstance(failure, SendblueError)
    if isinstance(failure, SendblueError) and (
        _bought_nothing(failure) or failure.charged
    ):
        return failure
    why = f"the confirm failed with {type(failure).__name__}"
    unknown = _unknown(preview, sent_at, why)
    if ours:
        unknown.__cause__ = failure
    return unknown
