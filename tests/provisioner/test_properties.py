"""Batches under random schedules of answers, faults and cancellations (hypothesis).

Each example runs one batch against a fresh stateful fake server on
127.0.0.1, with a scripted sequence of preview and confirm answers (410s,
confirms that are unclear before or after the server charged, 429s, 503s,
`provisioning_failed`) and a consumer that may be cancelled at a random
point. Afterwards:

- every charge the server recorded appears exactly once among the reported
  lines, `ProvisioningFailedError`s and `OutcomeUnknownError`s;
- no purchase slot previewed again after a confirm with an unclear answer;
- the charges never exceed what the batch planned;
- no task of ours is left, and the client's session is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

import anyio
import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provisioner_support import KEY_ID, SECRET, our_tasks

from sendblue_lines import (
    LinesClient,
    OutcomeUnknownError,
    Preview,
    ProvisionedLine,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    RetryPolicy,
)

TIMEOUT = 0.2


NO_WAIT = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)


FAST_NO_LINES = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)


PREVIEW_ACTIONS = ["ok", "ok", "ok", "429d", "503nl", "503", "410"]


CONFIRM_ACTIONS = [
    "ok",
    "ok",
    "410",
    "pf",
    "429d",
    "503nl",
    "drop_before",
    "drop_after",
    "502_before",
    "502_after",
    "hang_before",
    "hang_after",
    "delay",
]


@attrs.frozen
class Scenario:
    count: int
    concurrency: int
    daily: int | None
    previews: list[str]
    confirms: list[str]
    max_repreviews: int
    cancel: str
    when: float
    after: int


scenarios = st.builds(
    Scenario,
    count=st.integers(1, 6),
    concurrency=st.integers(1, 4),
    daily=st.one_of(st.none(), st.integers(0, 6)),
    previews=st.lists(st.sampled_from(PREVIEW_ACTIONS), max_size=6),
    confirms=st.lists(st.sampled_from(CONFIRM_ACTIONS), max_size=8),
    max_repreviews=st.integers(0, 2),
    cancel=st.sampled_from(["none", "none", "break", "anyio", "wait_for", "task"]),
    when=st.floats(0.0, 0.5),
    after=st.integers(0, 4),
)


class RecordingClient(LinesClient):
    """A LinesClient that notes, per task, each preview and confirm it starts."""

    def __init__(self, events: list[tuple[Any, str, Any]], **options: Any) -> None:
        super().__init__(KEY_ID, SECRET, **options)
        self.events = events

    async def preview(self) -> Preview:
        self.events.append((asyncio.current_task(), "preview", None))
        return await super().preview()

    def confirm(  # type: ignore[override]
        self, preview: Preview | str
    ) -> Coroutine[Any, Any, ProvisionedLine]:
        # Noted when called, in the slot's task; the Provisioner awaits it in
        # a task of its own.
        token = preview.token if isinstance(preview, Preview) else preview
        self.events.append((asyncio.current_task(), "confirm", token))
        return super().confirm(preview)


async def run(scenario: Scenario) -> None:
    limits = (
        limits_body(scenario.daily, 50, daily_limit=6, monthly_limit=50)
        if scenario.daily is not None
        else {"status": "OK"}
    )
    events: list[tuple[Any, str, Any]] = []
    reports: list[ProvisionOutcome] = []

    def on_outcome(outcome: ProvisionOutcome) -> None:
        events.append((asyncio.current_task(), "report", outcome.index))
        reports.append(outcome)

    async with LinesServer(limits=limits, hang_seconds=0.3) as server:
        server.queue("preview", *scenario.previews)
        server.queue("confirm", *scenario.confirms)
        client = RecordingClient(
            events,
            base_url=server.url,
            timeout=TIMEOUT,
            confirm_attempts=2,
            retry=NO_WAIT,
        )
        provisioner = Provisioner(
            client,
            on_outcome=on_outcome,
            max_repreviews=scenario.max_repreviews,
            no_lines_retry=FAST_NO_LINES,
        )
        planned: list[int] = []

        async def consume() -> None:
            async with provisioner.batch(
                scenario.count, concurrency=scenario.concurrency
            ) as outcomes:
                planned.append(outcomes.planned)
                taken = 0
                async for _ in outcomes:
                    taken += 1
                    if scenario.cancel == "break" and taken >= scenario.after:
                        break

        async with client:
            if scenario.cancel in ("none", "break"):
                await consume()
            elif scenario.cancel == "anyio":
                with anyio.move_on_after(scenario.when):
                    await consume()
            elif scenario.cancel == "wait_for":
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(consume(), scenario.when)
            else:
                task = asyncio.create_task(consume())
                await asyncio.sleep(scenario.when)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert our_tasks() == [], "a task of the Provisioner outlived the batch"
        assert client.closed
        await server.settle()
        check(scenario, server, events, reports, planned)


def check(
    scenario: Scenario,
    server: LinesServer,
    events: list[tuple[Any, str, Any]],
    reports: list[ProvisionOutcome],
    planned: list[int],
) -> None:
    # Every charge appears exactly once among the reports.
    reported: list[str] = []
    for outcome in reports:
        if outcome.line is not None:
            token = outcome.line.subscription_id.removeprefix("sub_")
            assert server.charges.get(token) == "line"
            reported.append(token)
        elif isinstance(outcome.error, ProvisioningFailedError):
            assert outcome.error.body is not None
            token = outcome.error.body["preview_token"]
            assert server.charges.get(token) == "provisioning_failed"
            reported.append(token)
        elif isinstance(outcome.error, OutcomeUnknownError):
            reported.append(outcome.error.preview_token)
    assert len(reported) == len(set(reported)), "a purchase was reported twice"
    missing = set(server.charges) - set(reported)
    assert not missing, f"charges never reported: {missing}"
    # Each slot is reported at most once.
    indexes = [o.index for o in reports]
    assert len(indexes) == len(set(indexes))
    # Never more charges than the plan allowed.
    if planned:
        assert len(server.charges) <= planned[0]
        if scenario.daily is not None:
            assert planned[0] <= scenario.daily
    else:
        assert server.charges == {}
    # No new preview in a slot after an unclear confirm: the slot's next
    # step in its task must be its report.
    by_task: dict[Any, list[tuple[str, Any]]] = defaultdict(list)
    for task, kind, value in events:
        by_task[task].append((kind, value))
    for steps in by_task.values():
        for (kind, value), following in itertools.pairwise(steps):
            if kind == "confirm" and value in server.unclear:
                assert following[0] == "report", (
                    f"after an unclear confirm of {value}, the slot went on to "
                    f"{following[0]}"
                )


@settings(
    max_examples=int(__import__("os").environ.get("PROVISIONER_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_every_charge_is_reported_once_and_never_doubled(scenario: Scenario) -> None:
    """Random answers, faults and cancellations never lose or double a purchase."""
    asyncio.run(run(scenario))
