"""A running batch: purchase slots on an anyio task group, outcomes on a stream.

`Batch` reads the limits once when its block is entered, plans how many slots
to run, and starts `concurrency` workers that take slot numbers in order and
run each slot through the Provisioner. Each outcome is handed to
`on_outcome`, then put on a memory object stream whose buffer holds every
planned slot, so a worker never waits for the consumer: a consumer that stops
reading cannot deadlock the batch, and the stream only holds outcomes not yet
consumed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

from ._budget import Reservation
from ._logging import PROVISIONER, extra, get_logger
from ._results import Plan, ProvisionOutcome, describe
from .errors import ConfigurationError, SendblueError, outcome_of

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["Batch", "Closer", "Opener", "Settler"]

logger = get_logger(PROVISIONER)

#: Reads the limits once for `count` slots: the plan, its reservation, what stops it.
Opener = Callable[
    [int], Awaitable["tuple[Plan | None, Reservation | None, SendblueError | None]"]
]
#: Runs the next slot of a reservation, and reports it.
Settler = Callable[[Reservation], Awaitable[ProvisionOutcome]]
#: Runs once the batch has ended, with its reservation (a journal's release).
Closer = Callable[[Reservation], Awaitable[None]]


class Batch:
    """A batch of purchase slots in progress; made by `Provisioner.batch()`.

    Entering the `async with` block reads the limits (once) and starts the
    slots; iterating yields each slot's `ProvisionOutcome` as it settles,
    in completion order, and ends when every started slot has settled.
    Leaving the block cancels the slots whose confirm was not sent yet; a
    confirm already sent is waited for (bounded by the client's timeouts),
    and its outcome still goes to `on_outcome` and the log.

    `plan` is what the limits read allowed (None when the read failed),
    `planned` the slots the batch may start. After the iteration,
    `not_attempted` counts the slots never started and `stopped_by` is the
    error that kept them from starting: the limits read, or an account-level
    error from a slot (`SendblueError.account_level`: 401, 402, 403, a 429,
    `NoLinesAvailableError` after its retries), which wins over the plan's
    limit error.

    Entering never raises a `SendblueError`: a failed limits read stops the
    batch before any slot (`stopped_by`).

    Raises:
        ConfigurationError: entered twice, or iterated outside its block.
    """

    def __init__(
        self,
        count: int,
        concurrency: int,
        *,
        opener: Opener,
        settle: Settler,
        listened: bool,
        closer: Closer | None = None,
    ) -> None:
        self._open = opener
        self._closer = closer
        self._settle = settle
        self._listened = listened
        self.requested = count
        self.concurrency = concurrency
        self.plan: Plan | None = None
        self._stopped_by: SendblueError | None = None
        self._reservation: Reservation | None = None
        self._halted = False
        self._workers = 0
        self._entered = False
        self._stack: AsyncExitStack | None = None
        self._receive: MemoryObjectReceiveStream[ProvisionOutcome] | None = None

    def __repr__(self) -> str:
        return (
            f"Batch(requested={self.requested}, planned={self.planned}, "
            f"started={self.started})"
        )

    @property
    def planned(self) -> int:
        """How many slots the batch may start."""
        return 0 if self._reservation is None else self._reservation.size

    @property
    def started(self) -> int:
        """How many slots have started so far."""
        return 0 if self._reservation is None else self._reservation.started

    @property
    def not_attempted(self) -> int:
        """Slots never started (final once the iteration has ended)."""
        return self.requested - self.started

    @property
    def stopped_by(self) -> SendblueError | None:
        """The error that kept slots from starting, or None."""
        return self._stopped_by

    async def __aenter__(self) -> Batch:
        if self._entered:
            raise ConfigurationError("a batch can be entered only once")
        self._entered = True
        if self.requested > 0:
            self.plan, self._reservation, self._stopped_by = await self._open(
                self.requested
            )
        async with AsyncExitStack() as stack:
            if self._closer is not None and self._reservation is not None:
                # Pushed first, so it runs last: after every slot settled.
                stack.push_async_callback(self._closer, self._reservation)
            # Unwound in reverse on leaving: cancel what was not sent, wait for
            # the task group (a sent confirm is shielded inside its slot), then
            # give back the unstarted slots and log what nobody consumed.
            send, receive = anyio.create_memory_object_stream[ProvisionOutcome](
                self.planned
            )
            self._receive = receive
            stack.callback(self._finish, send, receive)
            if self.planned > 0:
                group = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(group.cancel_scope.cancel)
                self._workers = min(self.concurrency, self.planned)
                for _ in range(self._workers):
                    group.start_soon(self._work, send)
            else:
                send.close()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> ProvisionOutcome:
        if self._receive is None:
            raise ConfigurationError("iterate over a batch inside its `async with`")
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            # The stream also ends when a cancellation of our scope reached the
            # workers before it reached us: then the cancellation must end the
            # iteration, not a quiet StopAsyncIteration, or `provision_many`
            # would return as if every started slot had settled (a line bought
            # meanwhile missing from its result).
            await checkpoint_if_cancelled()
            raise StopAsyncIteration from None

    async def _work(self, send: MemoryObjectSendStream[ProvisionOutcome]) -> None:
        reservation = self._reservation
        assert reservation is not None  # noqa: S101 - set before the workers start
        try:
            while not self._halted and reservation.unstarted > 0:
                # A cancellation that came before this worker first ran is
                # taken here, before a slot starts.
                await checkpoint_if_cancelled()
                outcome = await self._settle(reservation)
                if outcome.error is not None and outcome.error.account_level:
                    self._halt(outcome.index, outcome.error)
                # Never blocks: the buffer holds every planned slot.
                send.send_nowait(outcome)
        finally:
            self._workers -= 1
            if self._workers == 0:
                reservation.close()
                send.close()

    def _finish(
        self,
        send: MemoryObjectSendStream[ProvisionOutcome],
        receive: MemoryObjectReceiveStream[ProvisionOutcome],
    ) -> None:
        """Give back the unstarted slots, close the stream, log the unconsumed."""
        if self._reservation is not None:
            self._reservation.close()
        send.close()
        self._drain(receive)
        receive.close()

    def _halt(self, index: int, error: SendblueError) -> None:
        """Start no more slots: `error` from slot `index` concerns the account."""
        if self._halted:
            return
        self._halted = True
        self._stopped_by = error
        logger.warning(
            "batch: slot %d hit an account-level error, starting no more slots: %s",
            index, error,
            extra=extra(
                "batch_stopped", slot=index, status=getattr(error, "status", None)
            ),
        )  # fmt: skip

    def _drain(self, receive: MemoryObjectReceiveStream[ProvisionOutcome]) -> None:
        """Log the outcomes that settled but were never consumed."""
        for _ in range(self.planned):
            try:
                outcome = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            logger.log(
                logging.WARNING
                if outcome.charged and not self._listened
                else logging.INFO,
                "batch: slot %d settled but was never consumed: %s",
                outcome.index,
                describe(outcome),
                extra=extra(
                    "outcome_unconsumed",
                    slot=outcome.index,
                    outcome=outcome_of(outcome.error),
                ),
            )
