"""A child process that buys one line, journaled, and dies at a chosen point.

Run by `test_journal_crash.py`: ``python crash_child.py URL SPEC POINT
COUNT [KEY]`` (each argument JSON-encoded; SPEC as `crash_support.open_spec`
takes it), with the key id and secret in the environment (never on the
command line). COUNT 1 runs ``provision()``, more ``provision_many(COUNT,
concurrency=COUNT)``; with KEY, under that key.

POINT says where the process dies, by SIGKILL, around its one confirm:

- ``before_intent``: at the entry of ``record_intent``, nothing written yet;
- ``before_send``: when ``record_intent`` has returned (committed), before
  the Provisioner sends the confirm;
- ``before_answer``: not here: the parent holds the confirm in the sandbox
  and kills this process while it waits for the answer;
- ``before_outcome``: at the entry of ``record_outcome``, the answer in hand.

The journal is wrapped, not patched: the package has no test hooks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from crash_support import open_spec

from sendblue_lines import LinesClient, Provisioner
from sendblue_lines.journal import Journal, JournalEntry


def die() -> None:
    """SIGKILL this process: no cleanup, no flush, no finally."""
    os.kill(os.getpid(), signal.SIGKILL)


class DyingJournal:
    """Forwards everything to the real journal, and dies at `point`."""

    def __init__(self, inner: Journal, point: str) -> None:
        self._inner = inner
        self._point = point

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def record_intent(self, *args: Any, **kwargs: Any) -> JournalEntry:
        if self._point == "before_intent":
            die()
        entry = await self._inner.record_intent(*args, **kwargs)
        if self._point == "before_send":
            die()
        return entry

    async def record_outcome(self, *args: Any, **kwargs: Any) -> JournalEntry:
        if self._point == "before_outcome":
            die()
        return await self._inner.record_outcome(*args, **kwargs)


Journal.register(DyingJournal)


async def main(
    url: str, spec: dict[str, Any], point: str, count: int, key: str | None = None
) -> None:
    key_id = os.environ["CRASH_CHILD_KEY_ID"]
    secret = os.environ["CRASH_CHILD_SECRET"]
    async with (
        open_spec(spec) as journal,
        LinesClient(key_id, secret, base_url=url, timeout=30) as client,
    ):
        dying: Any = DyingJournal(journal, point)
        provisioner = Provisioner(client, journal=dying)
        if count == 1:
            await provisioner.provision(key=key)
        else:
            await provisioner.provision_many(count, concurrency=count, key=key)
    # Reaching here means the chosen point was never met.
    sys.exit(3)


if __name__ == "__main__":
    asyncio.run(main(*(json.loads(arg) for arg in sys.argv[1:6])))
