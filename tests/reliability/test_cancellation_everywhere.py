"""Cancel the caller at every await point of provision() and of a batch.

The await points are found, not guessed: a task factory wraps every task the
flow starts (the caller, a batch's workers, the shielded confirms, aiohttp's
own) and counts each time any of them suspends. A clean run gives the count
N; then for k = 0 .. N the caller is cancelled just as the k-th suspension
happens, by each source of cancellation: an anyio cancel scope,
`task.cancel()`, and a cancellation of a task waiting in `asyncio.wait_for`.
A second sweep cancels by time instead, with `asyncio.wait_for` timeouts and
`anyio.move_on_after` deadlines spread over a clean run's duration, which
lands inside network waits at many different moments.

After every run: the caller ended cancelled (or the flow had finished), the
ledger invariants hold (every charge reached on_outcome, exactly once), no
task is left running, and the same client makes one more call. The sandbox
runs in a thread of its own so that the client's loop holds only the
client's tasks, as it would against a real server.
"""

from __future__ import annotations

import asyncio
import itertools
import types
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any

import anyio
import pytest
from reliability_support import (
    NO_LINES_RETRY,
    NO_WAIT,
    TIMEOUT,
    Recorder,
    ThreadedSandbox,
    check_ledger,
)

from sendblue_lines import (
    LinesClient,
    Preview,
    Provisioner,
    ProvisionOutcome,
)

#: A long sweep: `.ci/run` runs it every time, a plain run leaves it out.
pytestmark = pytest.mark.sweep

#: The most cancellation points tried per flow and source.
MAX_POINTS = 200
#: Deadlines tried per flow and time-based source.
TIME_POINTS = 80
BATCH = 3
CONCURRENCY = 2

#: Figures for the closing note, printed by the last test (run with -s).
FIGURES: dict[str, int] = {}


class Steps:
    """Counts suspensions of every task of a flow; cancels at the k-th one."""

    def __init__(self, k: int | None = None) -> None:
        self.k = k
        self.count = 0
        self.cancel: Callable[[], object] = lambda: None
        self.caller: asyncio.Task[Any] | None = None
        self.fired_while_running = False

    @types.coroutine
    def drive(self, coro: Any) -> Generator[Any, Any, Any]:
        """Run `coro`, passing every suspension through (and counting it)."""
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = coro.throw(error) if error is not None else coro.send(value)
            except StopIteration as stop:
                return stop.value
            if self.count == self.k:
                caller = self.caller
                self.fired_while_running = caller is not None and not caller.done()
                self.cancel()
            self.count += 1
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - handed on to coro as is
                value, error = None, exc

    def factory(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **options: Any
    ) -> asyncio.Task[Any]:
        async def counted() -> Any:
            return await self.drive(coro)

        return asyncio.Task(counted(), loop=loop, **options)

    async def run(self, awaitable: Awaitable[Any]) -> Any:
        return await self.drive(awaitable)


class AsyncRecorder(Recorder):
    """A Recorder whose callbacks also await, so they add await points of their own.

    The bookkeeping is done before returning the awaitable, in the slot's
    task: the Provisioner may run the awaitable in a task of its own.
    """

    def approve_async(self, preview: Preview) -> Awaitable[bool]:
        self.approve(preview)

        async def yes() -> bool:
            await asyncio.sleep(0)
            return True

        return yes()

    def on_outcome_async(self, outcome: ProvisionOutcome) -> Awaitable[None]:
        self.on_outcome(outcome)
        return asyncio.sleep(0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


_accounts = itertools.count()


class Trial:
    """One run of one flow on a fresh account and client, cancelled somehow."""

    def __init__(self, server: ThreadedSandbox, secret: str, flow: str) -> None:
        self.server = server
        self.key_id = f"cancel-{next(_accounts)}"
        server.add_account(self.key_id, secret)
        self.recorder = AsyncRecorder()
        self.client = LinesClient(
            self.key_id, secret, base_url=server.url, timeout=TIMEOUT, retry=NO_WAIT
        )
        provisioner = Provisioner(
            self.client,
            approve=self.recorder.approve_async,
            on_outcome=self.recorder.on_outcome_async,
            no_lines_retry=NO_LINES_RETRY,
        )
        self.flow: Callable[[], Awaitable[Any]] = (
            provisioner.provision
            if flow == "provision"
            else lambda: provisioner.provision_many(BATCH, concurrency=CONCURRENCY)
        )

    async def settle(self, ended: str) -> None:
        """Check what every run must leave behind; the client is closed in any case."""
        try:
            await self._check(ended)
        finally:
            await self.client.aclose()

    async def _check(self, ended: str) -> None:
        current = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert left == [], f"tasks left running after a {ended} run: {left}"
        for _ in range(2000):  # at most ten seconds
            if not self.server.busy():
                break
            await anyio.sleep(0.005)
        assert not self.server.busy(), "the sandbox is still handling requests"
        counts = check_ledger(self.server.charges(self.key_id), self.recorder)
        if ended == "completed":
            assert len(self.recorder.outcomes) == (
                1 if self.flow.__name__ == "provision" else BATCH
            )
            assert counts["lines"] == len(self.recorder.outcomes)
        # Still usable (or closed, which it is not: nothing here closes it).
        assert not self.client.closed
        await self.client.get_limits()


async def cancelled_at_step(
    server: ThreadedSandbox, secret: str, flow: str, source: str, k: int | None
) -> tuple[str, int]:
    """Run `flow`, cancelling its caller at suspension `k`; (how it ended, count)."""
    trial = Trial(server, secret, flow)
    steps = Steps(k)
    loop = asyncio.get_running_loop()
    loop.set_task_factory(steps.factory)
    ended = "failed"
    try:
        ended = await _run(trial, steps, source)
    finally:
        loop.set_task_factory(None)
        if ended == "failed":
            await trial.client.aclose()
    try:
        if steps.fired_while_running and source != "anyio_scope":
            # asyncio's cancellation of a running caller must never be swallowed.
            assert ended == "cancelled", f"a {source} cancellation was swallowed"
    finally:
        await trial.settle(ended)
    return ended, steps.count


async def _run(trial: Trial, steps: Steps, source: str) -> str:
    if source == "anyio_scope":
        with anyio.CancelScope() as scope:
            steps.cancel = scope.cancel
            steps.caller = asyncio.current_task()
            await steps.run(trial.flow())
        return "cancelled" if scope.cancelled_caught else "completed"
    if source == "task_cancel":
        task = asyncio.get_running_loop().create_task(steps.run(trial.flow()))
    else:  # "wait_for": the task waiting in wait_for is cancelled
        task = asyncio.get_running_loop().create_task(
            asyncio.wait_for(steps.run(trial.flow()), timeout=30)
        )
    steps.caller = task
    steps.cancel = task.cancel
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # the test itself was cancelled
        return "cancelled"
    return "completed"


async def cancelled_at_time(
    server: ThreadedSandbox, secret: str, flow: str, source: str, seconds: float
) -> str:
    """Run `flow` under a deadline of `seconds`; how it ended."""
    trial = Trial(server, secret, flow)
    ended = "completed"
    if source == "wait_for_timeout":
        try:
            await asyncio.wait_for(trial.flow(), timeout=seconds)
        except asyncio.TimeoutError:  # not the builtin one before 3.11
            ended = "cancelled"
    else:
        with anyio.move_on_after(seconds) as scope:
            await trial.flow()
        ended = "cancelled" if scope.cancelled_caught else "completed"
    await trial.settle(ended)
    return ended


def points(total: int) -> list[int]:
    """Every suspension from 0 to `total` (the clean run's end), at most MAX_POINTS."""
    stride = max(1, -(-(total + 1) // MAX_POINTS))
    return list(range(0, total + 1, stride))


@pytest.mark.parametrize("flow", ["provision", "batch"])
@pytest.mark.parametrize("source", ["anyio_scope", "task_cancel", "wait_for"])
async def test_cancel_at_every_suspension(
    server: ThreadedSandbox, secret_canary: Any, flow: str, source: str
) -> None:
    """Cancelled at each await point in turn: charges reported, nothing left over."""
    secret = secret_canary.canary
    ended, total = await cancelled_at_step(server, secret, flow, source, None)
    assert ended == "completed"
    seen = {"cancelled": 0, "completed": 0}
    with anyio.fail_after(120):
        for k in points(total):
            ended, _ = await cancelled_at_step(server, secret, flow, source, k)
            seen[ended] += 1
    # The sweep really cancelled, and went on until the flow could finish.
    assert seen["cancelled"] >= 1
    FIGURES[f"{flow}/{source}: await points"] = total
    FIGURES[f"{flow}/{source}: runs"] = sum(seen.values())
    FIGURES[f"{flow}/{source}: cancelled"] = seen["cancelled"]


@pytest.mark.parametrize("flow", ["provision", "batch"])
@pytest.mark.parametrize("source", ["wait_for_timeout", "move_on_after"])
async def test_cancel_at_every_moment(
    server: ThreadedSandbox, secret_canary: Any, flow: str, source: str
) -> None:
    """Deadlines spread over a whole run: same guarantees at every moment."""
    secret = secret_canary.canary
    durations = []
    for _ in range(3):
        started = anyio.current_time()
        assert await cancelled_at_time(server, secret, flow, source, 30) == "completed"
        durations.append(anyio.current_time() - started)
    span = sorted(durations)[1] * 1.2
    seen = {"cancelled": 0, "completed": 0}
    with anyio.fail_after(120):
        for i in range(TIME_POINTS + 1):
            seconds = span * i / TIME_POINTS
            seen[await cancelled_at_time(server, secret, flow, source, seconds)] += 1
    assert seen["cancelled"] >= 1
    FIGURES[f"{flow}/{source}: runs"] = sum(seen.values())
    FIGURES[f"{flow}/{source}: cancelled"] = seen["cancelled"]


def test_report_cancellation_figures() -> None:
    """Print how many cancellation points were tried (for the closing note)."""
    for name, value in sorted(FIGURES.items()):
        print(f"cancellation {name}: {value}")
