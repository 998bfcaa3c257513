"""Letting work that moves money finish when its caller is cancelled.

An `anyio.CancelScope(shield=True)` stops anyio's cancellation (cancel
scopes, task groups) but not asyncio's own (`asyncio.wait_for`,
`asyncio.timeout`, `task.cancel()`): those break through it. So the work runs
as its own task, which nothing cancels but us, and hands its outcome to a
future that the caller awaits (`start_shielded`): cancelling the caller
cancels only that future. When the caller is cancelled, `wait_through`
waits for that task again inside an anyio shield (so that anyio does not
keep re-delivering its cancellation), bounded in time, and the caller
re-raises its cancellation once it has recorded what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import anyio

_T = TypeVar("_T")

#: Tasks started here, held so that the event loop cannot collect them while
#: we are not awaiting them (asyncio keeps only weak references to tasks).
_running: set[asyncio.Task[Any]] = set()

#: How long a task that outlived its bound gets to unwind once cancelled.
UNWIND_SECONDS = 1.0


def start(coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
    """Run `coro` as a task of its own, strongly referenced until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


def start_shielded(
    coro: Coroutine[Any, Any, _T],
) -> tuple[asyncio.Task[_T], asyncio.Future[_T]]:
    """Run `coro` as a task of its own; return it and a future of its outcome.

    Awaiting the future shields the task: cancelling the waiting caller
    cancels only the future, never the task. The task hands its outcome to
    the future itself, as its last step, so the caller resumes one pass of
    the event loop sooner than through `asyncio.shield`. The task's own
    outcome stays for whoever waits for it after a cancellation
    (`wait_through`), and its exception counts as retrieved.
    """
    outcome: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
    task = start(_settle_into(coro, outcome))
    task.add_done_callback(_retrieved)
    return task, outcome


async def _settle_into(
    coro: Coroutine[Any, Any, _T], outcome: asyncio.Future[_T]
) -> _T:
    try:
        result = await coro
    except BaseException as exc:
        if not outcome.done():
            if isinstance(exc, asyncio.CancelledError):
                outcome.cancel()
            else:
                outcome.set_exception(exc)
        raise
    if not outcome.done():
        outcome.set_result(result)
    return result


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # its outcome went to the future, or to `wait_through`


async def wait_through(task: asyncio.Task[Any], seconds: float) -> bool:
    """Wait up to `seconds` for `task`, whatever cancellation arrives meanwhile.

    Meant for an `except CancelledError` block that will re-raise: further
    native cancellations are folded into the one being handled. If the task
    is still running at the bound, it is cancelled and given a moment to
    unwind. Returns True when the task finished on its own.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(seconds, 0.0)
    finished = await _wait_until(task, deadline)
    if not finished:
        task.cancel()
        await _wait_until(task, loop.time() + UNWIND_SECONDS)
    return finished and not task.cancelled()


async def _wait_until(task: asyncio.Task[Any], deadline: float) -> bool:
    loop = asyncio.get_running_loop()
    # Each pass either sees the task done, reaches the deadline, or absorbs one
    # more native cancel; anyio's repeated delivery is stopped by the shield.
    with anyio.CancelScope(shield=True):
        while not task.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait((task,), timeout=remaining)
            except asyncio.CancelledError:
                # Our caller is already handling a cancellation and re-raises
                # it; this extra one changes nothing about what it must do.
                continue
    return True


async def shielded(aw: Awaitable[_T], seconds: float) -> _T:
    """Await `aw` so that a cancellation of the caller does not interrupt it.

    On cancellation, `aw` still gets up to `seconds` to finish, then the
    cancellation is re-raised (and the outcome of `aw` is dropped, so use
    this only for work whose result the caller does not need then).
    """
    task = start(_as_coroutine(aw))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await wait_through(task, seconds)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not warn about it
        raise


async def _as_coroutine(aw: Awaitable[_T]) -> _T:
    return await aw
