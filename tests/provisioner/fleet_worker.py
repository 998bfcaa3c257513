"""A fleet worker: a process with a journaled Provisioner that acts when told.

Run by `test_journal_fleet.py`: ``python fleet_worker.py URL SPEC MODE``
(each argument JSON-encoded; SPEC as `crash_support.open_spec` takes it),
with the key id and secret in the environment. It prints its owner name as
JSON once its journal and client are open, then reads commands on stdin,
one a line, and answers each with one JSON line:

- ``buy``: MODE ``batch`` runs ``provision_many(3, concurrency=2)``, MODE
  ``loop`` three ``provision()`` calls, MODE ``one`` one ``provision()``;
  answers the lines bought and the error classes met;
- ``reconcile``: answers the outcomes `Provisioner.reconcile` returned;
- ``exit``: ends the process.

The parent bounds every wait.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

sys.path.insert(0, str(Path(__file__).parent))

from crash_support import open_spec

from sendblue_lines import LinesClient, Provisioner, ProvisionOutcome, SendblueError
from sendblue_lines.journal import default_owner


def _outcome(outcome: ProvisionOutcome) -> dict[str, Any]:
    return {
        "worker_id": None if outcome.line is None else outcome.line.worker_id,
        "error": None if outcome.error is None else type(outcome.error).__name__,
        "token": getattr(outcome.error, "preview_token", None),
    }


async def buy(provisioner: Provisioner, mode: str) -> dict[str, Any]:
    if mode == "batch":
        result = await provisioner.provision_many(3, concurrency=2)
        return {
            "lines": [line.worker_id for line in result.lines],
            "errors": [type(error).__name__ for error in result.errors],
            "not_attempted": result.not_attempted,
        }
    lines: list[str] = []
    errors: list[str] = []
    for _ in range(3 if mode == "loop" else 1):
        worker_id, error = await _one(provisioner)
        if worker_id is not None:
            lines.append(worker_id)
        if error is not None:
            errors.append(error)
    return {"lines": lines, "errors": errors, "not_attempted": 0}


async def _one(provisioner: Provisioner) -> tuple[str | None, str | None]:
    """One `provision()`: the line's worker id, or the error's class name."""
    try:
        return (await provisioner.provision()).worker_id, None
    except SendblueError as error:
        return None, type(error).__name__


async def main(url: str, spec: dict[str, Any], mode: str) -> None:
    key_id = os.environ["CRASH_CHILD_KEY_ID"]
    secret = os.environ["CRASH_CHILD_SECRET"]
    async with (
        open_spec(spec) as journal,
        LinesClient(key_id, secret, base_url=url, timeout=30) as client,
    ):
        provisioner = Provisioner(client, journal=journal)
        print(json.dumps(default_owner()), flush=True)
        while True:
            command = (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()
            if command == "buy":
                answer: Any = await buy(provisioner, mode)
            elif command == "reconcile":
                answer = [_outcome(o) for o in await provisioner.reconcile()]
            else:
                return
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    anyio.run(main, *(json.loads(arg) for arg in sys.argv[1:4]))
