"""What the journal's tests share: a store of either backend, and opening one.

A module of its own (not the conftest) so that tests and the worker process
import it by a name no other test directory uses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import attrs

from sendblue_lines import PostgresJournal, SQLiteJournal
from sendblue_lines.journal import Journal

WORKER = Path(__file__).with_name("journal_worker.py")


@attrs.define
class Store:
    """One journal's storage, and a way to open any number of journals on it."""

    kind: str
    spec: dict[str, Any]
    make: Callable[..., Journal]

    async def sql(self, statement: str, *args: Any) -> Any:
        """Run one statement on the store behind the journal's back; fetch its rows."""
        if self.kind == "sqlite":
            import sqlite3

            def run() -> Any:
                connection = sqlite3.connect(self.spec["path"], isolation_level=None)
                try:
                    return connection.execute(statement, args).fetchall()
                finally:
                    connection.close()

            return await anyio.to_thread.run_sync(run)
        connection = await asyncpg.connect(self.spec["dsn"])
        try:
            await connection.execute(f'SET search_path TO "{self.spec["schema"]}"')
            return await connection.fetch(statement, *args)
        finally:
            await connection.close()

    def worker_command(self, action: str, **args: Any) -> list[str]:
        """The command line of a child process that does `action` on this store."""
        return [
            sys.executable,
            str(WORKER),
            json.dumps(self.spec),
            action,
            json.dumps(args),
        ]


def open_spec(spec: dict[str, Any]) -> Journal:
    """Build a journal from a store's spec (as the worker process does)."""
    if spec["kind"] == "sqlite":
        return SQLiteJournal(spec["path"], **spec.get("options", {}))
    return PostgresJournal(
        spec["dsn"], schema=spec["schema"], **spec.get("options", {})
    )
