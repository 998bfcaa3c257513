"""One purchase order run by a process of its own, as a replica would run it.

``python purchase_worker.py URL SPEC ORDER`` (each argument JSON-encoded;
SPEC as `crash_support.open_spec` takes it), with the key id and secret in
the environment (`crash_support.child_env`). ORDER is one of:

- ``{"action": "one"}``: one ``provision()``;
- ``{"action": "many", "count": N, "concurrency": C}``: ``provision_many``;
- ``{"action": "reconcile"}``: ``reconcile()``;

``"key": K`` in an order buys under that key.

It prints one JSON line, the lines bought and the errors met (class, the
count that refused, message, token), and exits.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from crash_support import open_spec

from sendblue_lines import LinesClient, Provisioner, ProvisionOutcome, SendblueError


def described(error: SendblueError) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "refused_by": getattr(error, "refused_by", None),
        "message": str(error),
        "token": getattr(error, "preview_token", None),
    }


def report(outcomes: list[ProvisionOutcome], not_attempted: int = 0) -> dict[str, Any]:
    return {
        "lines": [o.line.phone_number for o in outcomes if o.line is not None],
        "errors": [described(o.error) for o in outcomes if o.error is not None],
        "not_attempted": not_attempted,
    }


async def run(provisioner: Provisioner, order: dict[str, Any]) -> dict[str, Any]:
    action = order["action"]
    key = order.get("key")
    if action == "many":
        result = await provisioner.provision_many(
            order["count"], concurrency=order.get("concurrency", 1), key=key
        )
        answer = report(result.outcomes, result.not_attempted)
        answer["all_lines"] = [line.phone_number for line in result.lines]
        answer["all_errors"] = [described(error) for error in result.errors]
        return answer
    if action == "reconcile":
        return report(await provisioner.reconcile())
    try:
        line = await provisioner.provision(key=key)
    except SendblueError as error:
        return report([ProvisionOutcome(index=0, error=error)])
    return report([ProvisionOutcome(index=0, line=line)])


async def main(url: str, spec: dict[str, Any], order: dict[str, Any]) -> None:
    key_id = os.environ["CRASH_CHILD_KEY_ID"]
    secret = os.environ["CRASH_CHILD_SECRET"]
    async with (
        open_spec(spec) as journal,
        LinesClient(key_id, secret, base_url=url, timeout=10) as client,
    ):
        answer = await run(Provisioner(client, journal=journal), order)
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    anyio.run(main, *(json.loads(arg) for arg in sys.argv[1:4]))
