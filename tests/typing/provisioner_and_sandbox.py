"""The Provisioner's and the sandbox's public signatures, pinned for mypy --strict.

Never run. Lines ending in `# type: ignore[...]` must stay errors.
"""

from __future__ import annotations

from datetime import datetime

from sendblue_lines import (
    Batch,
    BatchResult,
    DeclinedError,
    LinesClient,
    MaxLinesReachedError,
    Plan,
    Preview,
    ProvisionedLine,
    Provisioner,
    ProvisioningLimits,
    ProvisionOutcome,
    RetryPolicy,
    SendblueError,
)
from sendblue_lines.sandbox import (
    Charge,
    Fault,
    ManualClock,
    RealClock,
    RequestRecord,
    Sandbox,
    SandboxAccount,
)


def record(outcome: ProvisionOutcome) -> None:
    index: int = outcome.index
    line: ProvisionedLine | None = outcome.line
    error: SendblueError | None = outcome.error
    del index, line, error


async def approve(preview: Preview) -> bool:
    return not preview.expired()


async def provision(client: LinesClient) -> None:
    provisioner = Provisioner(
        client,
        on_outcome=record,
        approve=approve,
        max_lines=5,
        max_repreviews=2,
        no_lines_retry=RetryPolicy(attempts=3, base_delay=1.0, max_delay=5.0),
        expiry_margin=5.0,
    )
    Provisioner(client, record)  # type: ignore[call-arg]
    left: int | None = provisioner.lines_left
    plan: Plan = await provisioner.plan(3)
    allowed: int = plan.allowed
    requested: int = plan.requested
    binding: str | None = plan.binding
    next_at: datetime | None = plan.next_available_at
    limits: ProvisioningLimits = plan.limits
    line: ProvisionedLine = await provisioner.provision()
    result: BatchResult = await provisioner.provision_many(5, concurrency=3)
    lines: list[ProvisionedLine] = result.lines
    errors: list[SendblueError] = result.errors
    not_attempted: int = result.not_attempted
    stopped_by: SendblueError | None = result.stopped_by
    batch: Batch = provisioner.batch(5, concurrency=3)
    async with batch as outcomes:
        async for outcome in outcomes:
            settled: ProvisionOutcome = outcome
            del settled
    del left, allowed, requested, binding, next_at, limits, line, lines, errors
    del not_attempted, stopped_by
    declined: type[SendblueError] = DeclinedError
    capped: type[SendblueError] = MaxLinesReachedError
    del declined, capped


async def sandbox() -> None:
    account = SandboxAccount("key", "secret", daily_limit=3, monthly_limit=10)
    async with Sandbox(accounts=[account], inventory=5, latency=0.02) as box:
        url: str = box.url
        clock: ManualClock = box.clock
        clock.advance(hours=25)
        box.inject("confirm", Fault.drop_after_commit(), times=1)
        box.inject("preview", Fault.respond(503, {"status": "ERROR"}))
        box.inject("nowhere", Fault.hang())  # type: ignore[arg-type]
        box.set_inventory(None)
        ledger: list[Charge] = box.ledger
        requests: list[RequestRecord] = box.requests
        bought: list[Charge] = box.purchases()
        del url, ledger, requests, bought
    async with Sandbox(clock=RealClock()) as real:
        real_clock: RealClock = real.clock
        del real_clock
