"""A child process that buys one line, journaled, and waits to be killed.

Run by `test_journal_crash.py`: ``python crash_child.py URL JOURNAL_PATH``,
with the key id and secret in the environment (never on the command line).
"""

from __future__ import annotations

import asyncio
import os
import sys

from sendblue_lines import LinesClient, Provisioner, SQLiteJournal


async def main(url: str, path: str) -> None:
    key_id = os.environ["CRASH_CHILD_KEY_ID"]
    secret = os.environ["CRASH_CHILD_SECRET"]
    async with (
        SQLiteJournal(path) as journal,
        LinesClient(key_id, secret, base_url=url, timeout=30) as client,
    ):
        await Provisioner(client, journal=journal).provision()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
