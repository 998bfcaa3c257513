"""A child process that opens a journal and does one thing when told to.

Usage: ``python journal_worker.py SPEC ACTION ARGS`` (SPEC and ARGS as JSON).
It prints ``ready`` once the journal is open, waits for a line on stdin, does
ACTION, prints its result as one JSON line, then waits for another line
before it exits (so that it stays alive, as a live owner, until told). The
parent bounds every wait.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

sys.path.insert(0, str(Path(__file__).parent))

from journal_support import open_spec

from sendblue_lines.journal import default_owner


async def act(journal: Any, action: str, args: dict[str, Any]) -> Any:
    owner = default_owner()
    if action == "reserve":
        return await journal.reserve(
            args["account"], owner, args["wanted"], args["room"]
        )
    if action == "claim":
        claimed = await journal.claim_orphans(args["account"], owner)
        return [entry.preview_token for entry in claimed]
    if action == "intents":
        # Reserve, then write intents and never an outcome: once killed, this
        # process leaves pending purchases (and one bare slot) behind.
        slots = await journal.reserve(args["account"], owner, args["count"] + 1, None)
        expires = datetime.now(timezone.utc) + timedelta(minutes=10)
        tokens = []
        for index, slot in enumerate(slots[:-1]):
            token = f"{args['prefix']}{index}"
            await journal.record_intent(slot, token, expires)
            tokens.append(token)
        return tokens
    msg = f"unknown action {action!r}"
    raise SystemExit(msg)


async def main() -> None:
    spec, action, args = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    async with open_spec(spec) as journal:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        result = await act(journal, action, args)
        print(json.dumps(result), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)


if __name__ == "__main__":
    anyio.run(main)
