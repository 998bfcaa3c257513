"""A nightly job that buys toward a total that the limits spread over days.

`python examples/nightly.py q1-agents 20` buys what the key ``q1-agents``
still lacks of its 20 lines, as tonight's limits allow. Run it every night:
it converges on 20 and then sends nothing; two runs that overlap never buy
past it; a run killed mid-confirm is settled by the next one, with its own
token. It exits 0 once the key holds all 20, 1 while it is short, 3 when a
purchase under the key needs a human. The journal, which remembers the key
between runs, is SENDBLUE_LINES_JOURNAL or ``purchases.sqlite3``.

The same as ``sendblue-lines provision --key q1-agents --count 20 --yes``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from sendblue_lines import (
    Journal,
    LinesClient,
    OutcomeUnknownError,
    Provisioner,
    ProvisioningFailedError,
    SQLiteJournal,
)


async def nightly(client: LinesClient, journal: Journal, key: str, total: int) -> int:
    """One night toward `key`'s `total`; the exit code (0 met, 1 short, 3 a human)."""
    provisioner = Provisioner(client, journal=journal)
    await provisioner.reconcile()  # what a killed run left open: its own token
    result = await provisioner.provision_many(total, key=key)
    tonight = sum(1 for outcome in result.outcomes if outcome.line is not None)
    print(
        f"{key}: {len(result.lines)} of {total} lines; {tonight} bought tonight, "
        f"{result.not_attempted} still to buy",
        flush=True,
    )
    human = [
        error
        for error in result.errors
        if isinstance(error, (OutcomeUnknownError, ProvisioningFailedError))
    ]
    for error in human:  # this night's, and earlier nights' not settled yet
        print(f"NEEDS A HUMAN: {error}", flush=True)
    if human:
        return 3
    return 0 if len(result.lines) >= total else 1


async def main(key: str, total: int) -> int:
    """Open the journal and a client from the environment, and run one night."""
    path = os.environ.get("SENDBLUE_LINES_JOURNAL") or "purchases.sqlite3"
    async with SQLiteJournal(path) as journal, LinesClient() as client:
        return await nightly(client, journal, key, total)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
