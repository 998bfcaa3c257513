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
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from ._logging import PROVISIONER, extra, get_logger
from ._results import Plan, ProvisionOutcome
from ._telemetry import outcome_of
from .errors import (
    AuthenticationError,
    ConfigurationError,
    MaxLinesReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    PermissionDeniedError,
    RateLimitError,
    SendblueError,
)

if TYPE_CHECKING:
    # Annotations only: importing these at run time loads anyio's streams and
    # synchronization modules, about a third of our import time (benchmarks/).
    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from .provisioner import Provisioner

__all__ = ["Batch", "stops_batch"]

logger = get_logger(PROVISIONER)

#: Errors about the account, not the slot: every next slot would meet them too.
_ACCOUNT_LEVEL = (
    AuthenticationError,
    NoCardOnFileError,
    PermissionDeniedError,
    RateLimitError,
    NoLinesAvailableError,
    ConfigurationError,
    MaxLinesReachedError,
)


def stops_batch(error: SendblueError) -> bool:
    """True for an account-level error, which stops a batch from starting slots."""
    return isinstance(error, _ACCOUNT_LEVEL)


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
    error from a slot (401, 402, 403, a 429, `NoLinesAvailableError` after
    its retries), which wins over the plan's limit error.

    Entering never raises a `SendblueError`: a failed limits read stops the
    batch before any slot (`stopped_by`).

    Raises:
        ConfigurationError: entered twice, or iterated outside its block.
    """

    def __init__(self, provisioner: Provisioner, count: int, concurrency: int) -> None:
        self._provisioner = provisioner
        self.requested = count
        self.concurrency = concurrency
        self.plan: Plan | None = None
        self.planned = 0
        self._stopped_by: SendblueError | None = None
        self._halted = False
        self._next = 0
        self._workers = 0
        self._entered = False
        self._released = False
        self._group: TaskGroup | None = None
        self._send: MemoryObjectSendStream[ProvisionOutcome] | None = None
        self._receive: MemoryObjectReceiveStream[ProvisionOutcome] | None = None

    def __repr__(self) -> str:
        return (
            f"Batch(requested={self.requested}, planned={self.planned}, "
            f"started={self._next})"
        )

    @property
    def started(self) -> int:
        """How many slots have started so far."""
        return self._next

    @property
    def not_attempted(self) -> int:
        """Slots never started (final once the iteration has ended)."""
        return self.requested - self._next

    @property
    def stopped_by(self) -> SendblueError | None:
        """The error that kept slots from starting, or None."""
        return self._stopped_by

    async def __aenter__(self) -> Batch:
        if self._entered:
            raise ConfigurationError("a batch can be entered only once")
        self._entered = True
        if self.requested > 0:
            self.plan, self.planned, self._stopped_by = await self._provisioner._open(
                self.requested
            )
        send, receive = anyio.create_memory_object_stream[ProvisionOutcome](
            self.planned
        )
        self._send, self._receive = send, receive
        if self.planned == 0:
            send.close()
            return self
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        self._workers = min(self.concurrency, self.planned)
        for _ in range(self._workers):
            group.start_soon(self._work)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._group = self._group, None
        try:
            if group is not None:
                # Leaving the block ends the batch: what was not sent is cancelled,
                # a sent confirm is shielded inside the slot.
                group.cancel_scope.cancel()
                return await group.__aexit__(exc_type, exc, tb)
            return None
        finally:
            self._release_unstarted()
            if self._send is not None:
                self._send.close()
            if self._receive is not None:
                self._drain(self._receive)
                self._receive.close()

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
            # Imported here, on this rare path: anyio.lowlevel is a sizeable
            # part of what `import sendblue_lines` costs.
            from anyio.lowlevel import checkpoint_if_cancelled

            await checkpoint_if_cancelled()
            raise StopAsyncIteration from None

    async def _work(self) -> None:
        send = self._send
        assert send is not None  # noqa: S101 - set before the workers start
        try:
            while not self._halted and self._next < self.planned:
                index = self._next
                self._next += 1
                outcome = await self._provisioner._settle(index)
                if outcome.error is not None and stops_batch(outcome.error):
                    self._halt(index, outcome.error)
                # Never blocks: the buffer holds every planned slot.
                send.send_nowait(outcome)
        finally:
            self._workers -= 1
            if self._workers == 0:
                self._release_unstarted()
                send.close()

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

    def _release_unstarted(self) -> None:
        """Give back the cap units of planned slots that never started, once."""
        if not self._released:
            self._released = True
            self._provisioner._unplan(self.planned - self._next)

    def _drain(self, receive: MemoryObjectReceiveStream[ProvisionOutcome]) -> None:
        """Log the outcomes that settled but were never consumed."""
        listened = self._provisioner._on_outcome is not None
        for _ in range(self.planned):
            try:
                outcome = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            logger.log(
                logging.WARNING if outcome.charged and not listened else logging.INFO,
                "batch: slot %d settled but was never consumed: %s",
                outcome.index,
                f"bought {outcome.line.phone_number}"
                if outcome.line is not None
                else f"{type(outcome.error).__name__}: {outcome.error}",
                extra=extra(
                    "outcome_unconsumed",
                    slot=outcome.index,
                    outcome=outcome_of(outcome.error),
                ),
            )
