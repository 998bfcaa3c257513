"""The Provisioner: limits first, preview then confirm, batches that never overspend.

`Provisioner` is what most code calls: it wraps a `LinesClient` and keeps
the design's rules above the single endpoints (limits first, a bounded
re-preview after a token that bought nothing, never a new preview after
money may have moved, a sent confirm that outlives its caller). One purchase
is followed through `_budget.py`, `client.py` and `errors.py`, and with a
journal through `_journaling.py`; see docs/architecture.md.

Decisions that the contract leaves to us, and where they show:

- The limits read is advisory (`_limits.read_limits`): an answer we cannot
  use is "limits unknown", logged once at WARNING, and the purchase goes
  on; errors about the account or the network are raised by `provision()`
  and `plan()`, and stop a batch before any slot starts.
- Callbacks cannot change what happened to money. An `approve` callback
  that raises declines (`DeclinedError`, with its exception as the cause).
  An `on_outcome` callback that raises is logged at ERROR and ignored.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from datetime import datetime

import anyio

from . import _clock, _keys, _logging, _shield, _telemetry
from ._batch import Batch
from ._budget import Budget, Reservation, Slot, refusal
from ._config import check_callable, check_count, check_instance, check_seconds
from ._journaling import EVIDENCE_SECONDS, Recorder
from ._limits import read_limits
from ._logging import extra
from ._results import BatchResult, Plan, ProvisionOutcome, describe
from ._retry import RetryPolicy
from .client import LinesClient
from .errors import (
    ConfigurationError,
    DeclinedError,
    JournalError,
    MaxLinesReachedError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    SendblueError,
    TokenExpiredError,
    confirm_error,
    outcome_of,
    short_token,
)
from .journal import Journal
from .models import Preview, ProvisionedLine, ProvisioningLimits

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
    `NoLinesAvailableError`; None disables it. `expiry_margin` is the number
    of seconds before `expires_at` at which a token counts as expired and is
    not sent.

    `journal` (a `Journal`, opened by the caller) makes every purchase
    durable (design invariants 7 and 8), and is what `key=` needs: every
    reservation is also taken in the journal, across the processes sharing
    it (slots the fleet holds end as a limit error whose `refused_by` is
    ``"journal"``); the intent to confirm a token is written before the
    confirm is sent (a `JournalError` there stops that purchase, nothing
    sent); the outcome is written before it is reported, also after the
    caller was cancelled (if that write fails, the outcome is still
    reported, logged at ERROR, and left pending for `reconcile()`). Without
    a journal nothing is written.

    Raises:
        ConfigurationError: from the constructor, for an option of the wrong
            type or out of range: `max_lines` an int from 0 to 1,000,000,
            `max_repreviews` an int from 0 to 10, `expiry_margin` finite
            seconds from 0 to 599, `no_lines_retry` a `RetryPolicy` or None,
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
        no_lines_retry: RetryPolicy | None = DEFAULT_NO_LINES_RETRY,
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
        check_instance(no_lines_retry, RetryPolicy, "no_lines_retry")
        # A token lives 10 minutes: a margin of that much would never send one.
        check_seconds(expiry_margin, "expiry_margin", allow_zero=True, high=599.0)
        check_instance(journal, Journal, "journal")
        self._journal = journal
        self._recorder = None if journal is None else Recorder(journal, client)
        self._client = client
        self._on_outcome = on_outcome
        self._approve = approve
        self._max_lines = max_lines
        self._max_repreviews = max_repreviews
        self._no_lines = no_lines_retry
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

    async def provision(self, *, key: str | None = None) -> ProvisionedLine:
        """Buy one line: limits, preview, (approve), confirm.

        The outcome goes to `on_outcome` (index 0) before this returns or
        raises. If the caller is cancelled once the confirm was sent, the
        confirm still finishes (bounded by the client's timeouts), its
        outcome is reported, and then the cancellation propagates.

        With `key` (a journal is needed), one line per key, ever, whatever
        process asks: a line bought under `key` is returned and nothing is
        sent; an earlier purchase under it that charged without a line or
        whose outcome is unknown is raised again (`ProvisioningFailedError`,
        `OutcomeUnknownError` with its token), nothing sent; one still in
        flight is waited for, and settled first with its own token if its
        owner is gone (what that did goes to `on_outcome`); only when every
        earlier purchase certainly bought nothing is a line bought. An
        answer from the journal is not reported again: `on_outcome` hears of
        each charge once.

        Raises:
            ConfigurationError: `key` without a journal, or a key that is
                empty, over 200 characters or holds control characters;
                nothing was sent.
            DailyLimitReachedError, MonthlyLimitReachedError: a window is
                full: by the limits read, by this Provisioner's purchases in
                flight, or by the journal's count of the fleet's (no confirm
                was sent; `refused_by` says which, `next_available_at` when
                to retry where it is known), or by the server.
            MaxLinesReachedError: `max_lines` is used up; nothing was sent.
            TokenExpiredError: the tokens kept expiring after
                `max_repreviews` new previews; nothing was bought.
            NoLinesAvailableError: still none after the `no_lines_retry` tries.
            OutcomeUnknownError: the confirm's result could not be learned;
                most likely bought. Never followed by a new preview.
            ProvisioningFailedError: a subscription exists but no line.
            DeclinedError: the `approve` callback declined, or (with `key`)
                other purchases kept taking the key; nothing was bought.
            APIError: the purchase failed before any charge (an
                `AuthenticationError`, `NoCardOnFileError`,
                `PermissionDeniedError`, `BadRequestError` or `ServerError`).
            TransportError: the network failed before any charge.
            MalformedResponseError: a preview could not be read; nothing
                was charged.
            JournalError: with a journal, it could not read the key's
                purchases, mark its place, reserve or record the intent; no
                confirm was sent.
        """
        recorder = None if key is None else _keys.keeper(key, self._recorder)
        with _telemetry.purchase(0):
            if recorder is not None and key is not None:
                return await _keys.provide(key, recorder, self._bought, self._report)
            return await self._bought(None)

    async def _bought(self, key: str | None) -> ProvisionedLine:
        """Buy one line (under `key`) and report its outcome as slot 0."""
        try:
            line = await self._provision(key)
        except SendblueError as error:
            await self._report(ProvisionOutcome(index=0, error=error))
            raise
        await self._report(ProvisionOutcome(index=0, line=line))
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
        return self._batch(count, concurrency)

    def _batch(
        self,
        count: int,
        concurrency: int,
        key: str | None = None,
        total: int | None = None,
    ) -> Batch:
        check_count(count, "count", low=0)
        check_count(concurrency, "concurrency", low=1, high=_MAX_CONCURRENCY)
        return Batch(
            count,
            concurrency,
            opener=functools.partial(self._open, key=key, total=total),
            settle=self._settle,
            listened=self._on_outcome is not None,
            closer=None if self._recorder is None else self._recorder.release,
        )

    async def provision_many(
        self,
        count: int,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        key: str | None = None,
    ) -> BatchResult:
        """Buy up to `count` lines, `concurrency` at a time, and collect the result.

        Runs a `batch()` to its end. Per-slot failures are in
        `BatchResult.errors`, never raised; so is an account-level error,
        which also becomes `stopped_by`.

        With `key` (a journal is needed), `count` is the key's total: the
        key's purchases that bought or may have bought (bought, pending,
        unknown, provisioning_failed), in any process sharing the journal,
        count against it, so that calls that overlap never together pass it
        (counted in the same transaction as the fleet's reservation), and
        this call buys at most the rest, as the limits allow. Run daily, it
        converges on `count`. `result.lines` then lists every line bought
        under `key`, earlier calls' included, oldest first; `errors` holds
        this call's failures and the unknown and provisioning_failed
        purchases of earlier calls; `not_attempted` what is still missing.

        Raises:
            ConfigurationError: `count` is not a non-negative int,
                `concurrency` not an int from 1 to 1000, or `key` is given
                without a journal or is not usable; before any await.
        """
        check_count(count, "count", low=0)
        check_count(concurrency, "concurrency", low=1, high=_MAX_CONCURRENCY)
        recorder = None if key is None else _keys.keeper(key, self._recorder)
        if recorder is None or key is None:
            return await self._collect(self._batch(count, concurrency))
        return await _keys.total(
            key, count, recorder,
            lambda missing: self._collect(
                self._batch(missing, concurrency, key=key, total=count)
            ),
        )  # fmt: skip

    @staticmethod
    async def _collect(batch: Batch) -> BatchResult:
        """Run `batch` to its end and gather its outcomes, in slot order."""
        found: dict[int, ProvisionOutcome] = {}
        async with batch as outcomes:
            async for outcome in outcomes:
                found[outcome.index] = outcome
        ordered = [found[index] for index in sorted(found)]
        return BatchResult(
            requested=batch.requested,
            lines=[o.line for o in ordered if o.line is not None],
            errors=[o.error for o in ordered if o.error is not None],
            not_attempted=batch.not_attempted,
            stopped_by=batch.stopped_by,
            outcomes=ordered,
        )

    async def reconcile(self) -> list[ProvisionOutcome]:
        """Settle the purchases that dead processes left open in the journal.

        Claims (`Journal.claim_orphans`) the pending entries of this
        account's owners that are gone, each one by exactly one claimer, and
        resends each one's **same** token, never a new preview: a line is
        recorded ``"bought"``; any other answer (a refusal of a resend
        proves nothing: the first send may have bought) is recorded
        ``"unknown"`` with evidence, the lines `get_lines_state()` lists that
        no entry of this account accounts for, and a message that says what
        they suggest. `attempts` counts the dead owner's send and the
        resends. Settled entries, ``"not_bought"`` included, are never
        touched. Each outcome (index: its position) is reported like a
        purchase's, and returned.

        Raises:
            ConfigurationError: this Provisioner has no journal.
            JournalError: the journal could not be read or claimed from.
        """
        if self._recorder is None:
            raise ConfigurationError("reconcile() needs a Provisioner with a journal")
        return await self._recorder.reconcile(self._report)

    @asynccontextmanager
    async def reconciling(self, *, every: float | None = None) -> AsyncIterator[None]:
        """Run `reconcile()` in the background while the block runs.

        Use it in an application's lifespan (entered and left by one task:
        it holds a task group): a restarted replica, or any survivor,
        settles what a dead process left open as soon as the journal judges
        its owner gone (at once on one host; once its lease ran out on
        PostgreSQL), with no timer of the application's. It reconciles at
        once, then every `every` seconds (default: `heartbeat_seconds` of
        the journal, a third of its lease and 15 s at most). A failed pass
        is logged and the next one runs; leaving the block stops it (a
        resend in flight still finishes and is recorded).

        Raises:
            ConfigurationError: no journal, or `every` not finite seconds above 0.
        """
        if self._recorder is None:
            raise ConfigurationError("reconciling() needs a Provisioner with a journal")
        async with self._recorder.reconciling(self.reconcile, every):
            yield

    # -- one purchase ---------------------------------------------------------

    async def _open(
        self, count: int, *, key: str | None, total: int | None
    ) -> tuple[Plan | None, Reservation | None, SendblueError | None]:
        """A batch's one limits read: its plan, its reservation, what stops it.

        With `key`, the journal holds the key's purchases within `total`.
        """
        recorder = self._recorder
        try:
            since = 0 if recorder is None else await recorder.mark()
            limits = await self._read_limits()
        except SendblueError as error:
            status = getattr(error, "status", None)
            logger.warning(
                "batch: the journal or the limits read failed, starting no slot: %s",
                error, extra=extra("batch_limits_failed", status=status),
            )  # fmt: skip
            return None, None, error
        plan = self._budget.plan(count, limits)
        reservation = self._budget.reserve(plan)  # no await since the plan
        stop: SendblueError | None = refusal(plan, self._max_lines)
        if recorder is not None:
            try:
                fleet_stop = await recorder.reserve(
                    reservation, plan, since, key, total
                )
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

    async def _provision(self, key: str | None) -> ProvisionedLine:
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
        recorder = self._recorder
        since = 0 if recorder is None else await recorder.mark()
        limits = await self._read_limits()
        plan = self._budget.plan(1, limits)
        with closing(self._budget.reserve(plan)) as reservation:  # no await since
            stop = refusal(plan, self._max_lines)
            if stop is not None:  # a plan of one falls short only to 0
                logger.info(
                    "slot 0: not previewing: %s", stop,
                    extra=extra("not_previewing", status=getattr(stop, "status", None)),
                )  # fmt: skip
                raise stop
            if recorder is not None:
                recorder.hold(reservation, plan, since, key, None if key is None else 1)
            try:
                with reservation.slot() as slot:
                    return await self._buy(slot, reservation)
            finally:
                if recorder is not None:
                    await recorder.release(reservation)

    async def _settle(self, reservation: Reservation) -> ProvisionOutcome:
        """Run the next slot of a batch's `reservation` and report it."""
        with _telemetry.purchase(reservation.started):
            with reservation.slot() as slot:
                try:
                    outcome = ProvisionOutcome(
                        index=slot.index, line=await self._buy(slot, reservation)
                    )
                except SendblueError as error:
                    outcome = ProvisionOutcome(index=slot.index, error=error)
            await self._report(outcome)
            return outcome

    async def _buy(self, slot: Slot, reservation: Reservation) -> ProvisionedLine:
        """Preview, approve and confirm until a line or an error that ends it.

        Each pass previews once and either ends or uses up one of the bounded
        re-previews or no-lines retries, so the loop is bounded.
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
                        "the preview token expired (by the validity the server "
                        f"granted, with a {self._margin:g}s margin) before it could "
                        f"be sent, {repreviews} time(s); nothing was sent or bought"
                    )
                logger.info(
                    "slot %d: token %s expires at %s, too soon to send; previewing "
                    "again", slot.index, short_token(preview.token),
                    preview.expires_at.isoformat(), extra=extra("token_expiring"),
                )  # fmt: skip
                continue
            if self._recorder is not None:
                await self._recorder.intent(slot.index, reservation, preview)
            try:
                return await self._confirm(slot, preview)
            except TokenExpiredError as expired:
                repreviews += 1
                if repreviews > self._max_repreviews:
                    raise
                logger.info(
                    "slot %d: token expired at confirm, nothing bought; previewing "
                    "again (%d of %d)", slot.index, repreviews, self._max_repreviews,
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

    async def _confirm(self, slot: Slot, preview: Preview) -> ProvisionedLine:
        """Confirm `preview` so that cancelling the caller cannot lose the answer.

        The one confirm path, for `provision()` and every batch slot: the
        confirm (with a journal, and its outcome's write) runs as a task of
        its own, awaited through a future it settles
        (`_shield.start_shielded`); a cancelled caller waits for it, up to
        its worst case (`_cut_off`), and reports what it did before the
        cancellation goes on. A task because a native cancellation (`task.cancel()`,
        `asyncio.timeout`) breaks through anyio's shields.
        """
        # From here until we learn otherwise, money may move for this slot.
        slot.charged = True
        sent_at = _clock.now()
        recorder = self._recorder
        task, outcome = _shield.start_shielded(
            self._client.confirm(preview)
            if recorder is None
            else recorder.confirm(preview, sent_at)
        )
        try:
            return await outcome
        except asyncio.CancelledError:
            await self._cut_off(slot, preview, task, sent_at)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is judged below
            error = confirm_error(exc, preview.token, sent_at)
        slot.charged = outcome_of(error) != "not_bought"
        # Raised outside the except block: an exception from outside our
        # hierarchy is named, never chained (it may hold the headers).
        raise error

    async def _cut_off(
        self,
        slot: Slot,
        preview: Preview,
        task: asyncio.Task[ProvisionedLine],
        sent_at: datetime,
    ) -> None:
        """Our caller was cancelled mid-confirm: wait for its answer, report it."""
        deadline = self._client.confirm_deadline
        if self._recorder is not None:  # an unknown's evidence precedes its record
            deadline += EVIDENCE_SECONDS
        logger.info(
            "slot %d: cancelled while confirming token %s; waiting up to %.1fs for "
            "the answer", slot.index, short_token(preview.token), deadline,
            extra=extra("cancelled_while_confirming"),
        )  # fmt: skip
        line: ProvisionedLine | None = None
        error: SendblueError | None = None
        if not await _shield.wait_through(task, deadline):
            error = OutcomeUnknownError.for_token(
                preview.token,
                "the caller was cancelled and the confirm had no answer within "
                f"{deadline:.1f}s", first_sent_at=sent_at, attempts=1,
            )  # fmt: skip
            if self._recorder is not None:  # what would have written it was cut off
                await self._recorder.given_up(preview.token, sent_at, error)
        elif task.exception() is None:
            line = task.result()
        else:
            failure = task.exception()
            assert failure is not None  # noqa: S101 - narrowed above
            error = confirm_error(failure, preview.token, sent_at)
        # A unit of max_lines comes back only when nothing was bought.
        slot.charged = outcome_of(error if line is None else None) != "not_bought"
        with anyio.CancelScope(shield=True):
            await self._report(
                ProvisionOutcome(index=slot.index, line=line, error=error),
                listening=False,
            )

    # -- limits and reporting -----------------------------------------------------

    async def _read_limits(self) -> ProvisioningLimits:
        """Read the limits; an answer we cannot use means "unknown", never an error."""
        limits, why = await read_limits(self._client)
        if why is not None:
            level = logging.DEBUG if self._limits_warned else logging.WARNING
            self._limits_warned = True
            logger.log(
                level,
                "GET /accounts/limits: %s; going on with the limits unknown (the "
                "server still enforces them at preview and confirm)", why,
                extra=extra("limits_unknown"),
            )  # fmt: skip
        return limits

    async def _report(
        self, outcome: ProvisionOutcome, *, listening: bool = True
    ) -> None:
        """Log `outcome` and hand it to `on_outcome`; never lose it, never raise."""
        callback = self._on_outcome
        _telemetry.settle(outcome.error)
        if not listening:  # nobody may hear of it but the log
            level = logging.INFO if callback is not None else logging.WARNING
            text = "slot %d settled after its caller was cancelled: %s"
        elif outcome.charged:  # a line, or money may have moved
            level = logging.INFO if outcome.ok else logging.WARNING
            text = "slot %d: %s"
        else:
            level, text = logging.INFO, "slot %d: failed: %s"
        keys = extra(
            "outcome" if listening else "outcome_after_cancel",
            slot=outcome.index, outcome=outcome_of(outcome.error),
            status=getattr(outcome.error, "status", None),
        )  # fmt: skip
        logger.log(level, text, outcome.index, describe(outcome), extra=keys)
        if callback is None:
            return
        try:
            result = callback(outcome)
            if inspect.isawaitable(result):
                await _shield.shielded(result, CALLBACK_GRACE_SECONDS)
        except Exception:
            logger.exception(
                "slot %d: the on_outcome callback raised; the outcome stands",
                outcome.index, extra=keys,
            )  # fmt: skip
