"""A batch-provisioning coroutine with progress, for a nightly job or a script.

Run it against a real account (credentials from SENDBLUE_API_KEY_ID and
SENDBLUE_API_SECRET_KEY) with `python examples/batch.py 5`, or against a local
sandbox by also setting SENDBLUE_BASE_URL to the URL that
`sendblue-lines sandbox` prints.
"""

from __future__ import annotations

import asyncio
import sys

from sendblue_lines import (
    BatchResult,
    LinesClient,
    OutcomeUnknownError,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
)


def report(outcome: ProvisionOutcome) -> None:
    """Print one settled slot; called for every outcome, even after a cancel."""
    if outcome.line is not None:
        print(f"slot {outcome.index}: bought {outcome.line.phone_number}", flush=True)
    elif isinstance(outcome.error, (OutcomeUnknownError, ProvisioningFailedError)):
        print(f"slot {outcome.index}: NEEDS A HUMAN: {outcome.error}", flush=True)
    else:
        print(f"slot {outcome.index}: not bought: {outcome.error}", flush=True)


async def buy_lines(
    client: LinesClient, count: int, concurrency: int = 3
) -> BatchResult:
    """Buy up to `count` lines, never more than the limits allow, with progress."""
    provisioner = Provisioner(client, on_outcome=report)
    plan = await provisioner.plan(count)
    print(f"the limits allow {plan.allowed} of {count} now", flush=True)
    result = await provisioner.provision_many(count, concurrency=concurrency)
    print(
        f"bought {len(result.lines)}, failed {len(result.errors)}, "
        f"not attempted {result.not_attempted}",
        flush=True,
    )
    return result


async def main(count: int) -> int:
    """Run the batch with credentials from the environment; 0 if all were bought."""
    async with LinesClient() as client:
        result = await buy_lines(client, count)
    return 0 if len(result.lines) == count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)))
