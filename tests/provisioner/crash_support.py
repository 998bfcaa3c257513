"""What the crash and fleet tests share: journal stores, child processes, lines.

A journal store is described by a JSON-able *spec* (``{"kind": "sqlite",
"path": ...}`` or ``{"kind": "postgres", "dsn": ..., "schema": ...}``), so
that a child process opens the same store as the test. A PostgreSQL store
gets a schema of its own, dropped afterwards; without a server the test is
skipped with a reason that says how to get one, unless
``SENDBLUE_LINES_REQUIRE_POSTGRES=1`` (then it fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from anyio.abc import Process
from postgres_support import fresh_schema, need_postgres

from sendblue_lines import PostgresJournal, SQLiteJournal
from sendblue_lines.journal import Journal
from sendblue_lines.sandbox import Sandbox

HERE = Path(__file__).parent
#: Every wait on a child process is bounded by this many seconds.
PATIENCE = 60


def open_spec(spec: dict[str, Any], **options: Any) -> Journal:
    """A journal on the store `spec` describes; `options` override the spec's."""
    merged = {**spec.get("options", {}), **options}
    if spec["kind"] == "sqlite":
        return SQLiteJournal(spec["path"], **merged)
    return PostgresJournal(spec["dsn"], schema=spec["schema"], **merged)


@contextlib.asynccontextmanager
async def store_spec(kind: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A fresh, empty store of `kind` ("sqlite" or "postgres"), as a spec."""
    if kind == "sqlite":
        yield {"kind": "sqlite", "path": str(tmp_path / "journal.sqlite3")}
        return
    dsn = await need_postgres()
    async with fresh_schema(dsn) as schema:
        yield {"kind": "postgres", "dsn": dsn, "schema": schema}


async def wait_lease_gone(spec: dict[str, Any], owner: str) -> None:
    """Wait until `owner`'s lease ran out by the database's clock (caller bounds it)."""
    connection = await asyncpg.connect(spec["dsn"])
    try:
        statement = (
            f'SELECT count(*) FROM "{spec["schema"]}".owners '  # noqa: S608
            "WHERE owner = $1 AND lease_until > now()"
        )
        while True:
            if not await connection.fetchval(statement, owner):
                return
            await anyio.sleep(0.05)
    finally:
        await connection.close()


def child_env(sandbox: Sandbox[Any], **more: str) -> dict[str, str]:
    """A child's environment: the sandbox's credentials, never on the command line."""
    return credentials_env(sandbox.api_key_id, sandbox.api_secret_key, **more)


def credentials_env(key_id: str, secret: str, **more: str) -> dict[str, str]:
    """A child's environment with these credentials, and this test folder importable."""
    # The child imports this module, which imports tests/postgres_support.py.
    tests = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    return dict(
        os.environ,
        PYTHONPATH=path,
        CRASH_CHILD_KEY_ID=key_id,
        CRASH_CHILD_SECRET=secret,
        **more,
    )


def child_command(script: str, *args: Any) -> list[str]:
    """Run `script` (beside this module) with JSON-encoded `args`."""
    return [sys.executable, str(HERE / script), *(json.dumps(arg) for arg in args)]


async def read_line(process: Process) -> str:
    """One line the child printed (the caller bounds the wait)."""
    assert process.stdout is not None
    data = b""
    while not data.endswith(b"\n"):
        data += await process.stdout.receive(1)
    return data.decode().strip()


async def tell(process: Process, line: str) -> None:
    """Send the child one line on its stdin."""
    assert process.stdin is not None
    await process.stdin.send(line.encode() + b"\n")


async def run_purchase(
    url: str, spec: dict[str, Any], order: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    """Run one order (see purchase_worker.py) in a process of its own; its report."""
    with anyio.fail_after(PATIENCE):
        done = await anyio.run_process(
            child_command("purchase_worker.py", url, spec, order), env=env
        )
    report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return report


async def run_purchases_together(
    url: str, spec: dict[str, Any], order: dict[str, Any], env: dict[str, str]
) -> list[dict[str, Any]]:
    """Run the same order in two processes at once; their reports."""
    reports: list[dict[str, Any]] = []

    async def run() -> None:
        reports.append(await run_purchase(url, spec, order, env))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        group.start_soon(run)
    return reports


class Worker:
    """One fleet worker process (`fleet_worker.py`) and its owner name."""

    def __init__(self, process: Process, owner: str) -> None:
        self.process = process
        self.owner = owner

    async def ask(self, command: str) -> Any:
        await tell(self.process, command)
        return json.loads(await read_line(self.process))


Start = Callable[[Sandbox[Any], dict[str, Any], str], Awaitable[Worker]]


@contextlib.asynccontextmanager
async def fleet_workers() -> AsyncIterator[Start]:
    """Yield a way to start fleet workers; every process it started is reaped."""
    started: list[Process] = []

    async def start(sandbox: Sandbox[Any], spec: dict[str, Any], mode: str) -> Worker:
        process = await anyio.open_process(
            child_command("fleet_worker.py", sandbox.url, spec, mode),
            env=child_env(sandbox),
            stderr=None,
        )
        started.append(process)
        return Worker(process, json.loads(await read_line(process)))

    try:
        yield start
    finally:
        with anyio.CancelScope(shield=True):
            for process in started:
                if process.returncode is None:
                    process.kill()
                with anyio.move_on_after(30):
                    await process.wait()
                await process.aclose()
