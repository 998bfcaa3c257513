"""Batches under random schedules of answers, faults and cancellations (hypothesis).

Each example runs one batch against a fresh sandbox on 127.0.0.1, with a
scripted sequence of preview and confirm answers (410s,
confirms that are unclear before or after the server charged, 429s, 503s,
`provisioning_failed`) and a consumer that may be cancelled at a random
point. Afterwards:

- every charge the server recorded appears exactly once among the reported
  lines, `ProvisioningFailedError`s and `OutcomeUnknownError`s;
- no purchase slot previewed again after a confirm that may have charged
  (an unclear answer, a line, `provisioning_failed`);
- the charges never exceed what the batch planned;
- no task of ours is left, and the client's session is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

import anyio
import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provisioner_support import our_tasks

from sendblue_lines import (
    LinesClient,
    OutcomeUnknownError,
    Preview,
    ProvisionedLine,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    RetryPolicy,
    SendblueError,
)
from sendblue_lines.sandbox import Fault, Sandbox, SandboxAccount

TIMEOUT = 0.2
#: How long a hanging confirm holds its connection, and a delayed one waits.
HANG_SECONDS = 0.3


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


def _refusal(status: int, code: str | None, message: str) -> Fault:
    body = {"status": "ERROR", "message": message}
    if code is not None:
        body["error"] = code
    return Fault.respond(status, body)


#: What the sandbox does for each scripted action ("ok": answer normally).
FAULTS = {
    "ok": Fault("none"),
    "410": _refusal(410, "token_expired", "Token expired or already used"),
    "429d": _refusal(429, "daily_limit_reached", "Maximum 3 lines per day via API"),
    "503nl": _refusal(503, "no_lines_available", "No lines available"),
    "503": _refusal(503, None, "Service unavailable"),
    "pf": Fault.provisioning_failed(),
    "drop_before": Fault.drop_before(),
    "drop_after": Fault.drop_after_commit(),
    "502_before": Fault.proxy_502(),
    "502_after": Fault.proxy_502(after_commit=True),
    "hang_before": Fault.hang(seconds=HANG_SECONDS),
    "hang_after": Fault.hang(after_commit=True, seconds=HANG_SECONDS),
    "delay": Fault.delay(HANG_SECONDS),
}


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
    """A LinesClient that notes, per task, each preview and confirm it starts.

    It also notes the tokens whose confirm may have charged: every confirm
    that did not end in a refusal proving that nothing was bought.
    """

    def __init__(
        self, events: list[tuple[Any, str, Any]], *credentials: str, **options: Any
    ) -> None:
        super().__init__(*credentials, **options)
        self.events = events
        self.may_have_charged: set[str] = set()

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
        return self._noted(token, super().confirm(preview))

    async def _noted(
        self, token: str, confirm: Coroutine[Any, Any, ProvisionedLine]
    ) -> ProvisionedLine:
        try:
            line = await confirm
        except SendblueError as error:
            if isinstance(error, (OutcomeUnknownError, ProvisioningFailedError)):
                self.may_have_charged.add(token)
            raise
        except BaseException:
            self.may_have_charged.add(token)
            raise
        self.may_have_charged.add(token)
        return line


async def run(scenario: Scenario) -> None:
    # With `daily`, the limits show that many left today (and the sandbox
    # enforces it); without, they show no window at all.
    account = SandboxAccount(
        "property-key-id",
        "property-secret-" + secrets.token_hex(12),
        daily_limit=50 if scenario.daily is None else scenario.daily,
        monthly_limit=50,
    )
    shape: Any = "canonical" if scenario.daily is not None else no_windows
    events: list[tuple[Any, str, Any]] = []
    reports: list[ProvisionOutcome] = []

    def on_outcome(outcome: ProvisionOutcome) -> None:
        events.append((asyncio.current_task(), "report", outcome.index))
        reports.append(outcome)

    async with Sandbox(accounts=[account], limits_shape=shape) as server:
        for action in scenario.previews:
            server.inject("preview", FAULTS[action])
        for action in scenario.confirms:
            server.inject("confirm", FAULTS[action])
        client = RecordingClient(
            events,
            server.api_key_id,
            server.api_secret_key,
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
        await server.wait_idle()
        charges = {
            c.preview_token: "line" if c.provisioned else "provisioning_failed"
            for c in server.ledger
        }
        tokens = {
            "by_number": {c.phone_number: c.preview_token for c in server.ledger},
            "by_subscription": {
                c.subscription_id: c.preview_token for c in server.ledger
            },
        }
        settled = (client.may_have_charged, events, reports, planned)
        check(scenario, charges, tokens, *settled)


def no_windows(snapshot: object) -> dict[str, Any]:
    """A limits answer that shows no window at all."""
    del snapshot
    return {"status": "OK"}


def check(
    scenario: Scenario,
    charges: dict[str, str],
    tokens: dict[str, dict[Any, str]],
    may_have_charged: set[str],
    events: list[tuple[Any, str, Any]],
    reports: list[ProvisionOutcome],
    planned: list[int],
) -> None:
    # Every charge appears exactly once among the reports.
    by_number, by_subscription = tokens["by_number"], tokens["by_subscription"]
    reported: list[str] = []
    for outcome in reports:
        if outcome.line is not None:
            token = by_number[outcome.line.phone_number]
            assert charges.get(token) == "line"
            reported.append(token)
        elif isinstance(outcome.error, ProvisioningFailedError):
            assert outcome.error.body is not None
            # The sandbox names the subscription in its message, not the token.
            [token] = [
                t
                for sub, t in by_subscription.items()
                if sub in outcome.error.body["message"]
            ]
            assert charges.get(token) == "provisioning_failed"
            reported.append(token)
        elif isinstance(outcome.error, OutcomeUnknownError):
            reported.append(outcome.error.preview_token)
    assert len(reported) == len(set(reported)), "a purchase was reported twice"
    missing = set(charges) - set(reported)
    assert not missing, f"charges never reported: {missing}"
    # Each slot is reported at most once.
    indexes = [o.index for o in reports]
    assert len(indexes) == len(set(indexes))
    # Never more charges than the plan allowed.
    if planned:
        assert len(charges) <= planned[0]
        if scenario.daily is not None:
            assert planned[0] <= scenario.daily
    else:
        assert charges == {}
    # No new preview in a slot after a confirm that may have charged (an
    # unclear answer, a line or provisioning_failed): the slot's next step
    # in its task must be its report.
    by_task: dict[Any, list[tuple[str, Any]]] = defaultdict(list)
    for task, kind, value in events:
        by_task[task].append((kind, value))
    for steps in by_task.values():
        for (kind, value), following in itertools.pairwise(steps):
            if kind == "confirm" and value in may_have_charged:
                assert following[0] == "report", (
                    f"after a confirm of {value} that may have charged, the slot "
                    "went on to "
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
