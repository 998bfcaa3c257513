"""Invariant 8 with a fleet of real processes on the real PostgreSQL.

Four worker processes (`fleet_worker.py`) share one `PostgresJournal` and one
sandbox account and ask for twice the lines the limits leave: the confirms
sent never exceed what the limits left, and none meets a 429. Then a fifth
worker is killed with SIGKILL mid-confirm, and the four survivors reconcile
at once: exactly one of them settles its purchase, with one resend of the
same token, within the token's ten minutes.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from aiohttp import web
from crash_support import (
    PATIENCE,
    Worker,
    fleet_workers,
    open_spec,
    read_line,
    store_spec,
    tell,
    wait_lease_gone,
)
from provisioner_support import connect

from sendblue_lines import (
    JournalError,
    OutcomeUnknownError,
    Provisioner,
    SendblueError,
    TokenExpiredError,
)
from sendblue_lines.journal import Journal, JournalEntry, default_owner
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="SIGKILL and /proc are POSIX"
)

#: What the limits leave the fleet; the workers ask for 12 in all.
ROOM = 6
MODES = ["batch", "batch", "loop", "loop"]


@pytest.fixture
async def spec(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A fresh PostgreSQL journal schema; skipped without a server (crash_support)."""
    async with store_spec("postgres", tmp_path) as made:
        yield made


async def _all(workers: list[Worker], command: str) -> list[Any]:
    """Send `command` to every worker first, then read every answer: all at once."""
    for worker in workers:
        await tell(worker.process, command)
    return [json.loads(await read_line(worker.process)) for worker in workers]


def _check_every_charge_is_on_record(
    sandbox: Sandbox[Any], entries: list[JournalEntry]
) -> None:
    assert [e for e in entries if e.state == "pending"] == []
    recorded = {e.preview_token: e for e in entries}
    tokens = [charge.preview_token for charge in sandbox.ledger]
    assert len(tokens) == len(set(tokens))
    for charge in sandbox.ledger:
        assert recorded[charge.preview_token].state in ("bought", "unknown")


async def test_a_fleet_never_oversends_and_one_survivor_settles_a_dead_worker(
    sendblue_sandbox: Sandbox[ManualClock], spec: dict[str, Any]
) -> None:
    sandbox = sendblue_sandbox
    sandbox.account.daily_limit = ROOM
    confirms = sandbox.counters["confirm"]
    async with fleet_workers() as start:
        with anyio.fail_after(PATIENCE):
            fleet = [await start(sandbox, spec, mode) for mode in MODES]
            # -- four workers ask for 12 lines at once; the limits leave 6.
            bought = await _all(fleet, "buy")
            await sandbox.wait_idle(within=30)
            assert confirms.requests <= ROOM
            assert confirms.statuses[429] == 0
            lines = [worker_id for result in bought for worker_id in result["lines"]]
            assert sorted(lines) == sorted(c.worker_id for c in sandbox.ledger)
            assert 1 <= len(lines) <= ROOM
            async with open_spec(spec) as journal:
                _check_every_charge_is_on_record(sandbox, await journal.entries())

            # -- a fifth worker dies mid-confirm. The limits leave it room
            # even if its reservation counts the fleet's fresh purchases once
            # more (a journal may, for a clock margin).
            sandbox.account.daily_limit = sandbox.account.monthly_limit = 100
            victim = await start(sandbox, {**spec, "options": {"lease": 0.5}}, "one")
            sent = confirms.requests
            sandbox.inject("confirm", Fault.delay(1.0))
            await tell(victim.process, "buy")
            await sandbox.wait_for_requests("confirm", count=sent + 1, within=PATIENCE)
            victim.process.send_signal(signal.SIGKILL)
            assert await victim.process.wait() == -signal.SIGKILL
            await sandbox.wait_idle(within=30)  # its confirm committed after all
            [charge] = sandbox.ledger[len(lines) :]
            await wait_lease_gone(spec, victim.owner)

            # -- the four survivors reconcile at once.
            settled = await _all(fleet, "reconcile")
            for worker in fleet:
                await tell(worker.process, "exit")
            for worker in fleet:
                assert await worker.process.wait() == 0

    assert sorted(len(outcomes) for outcomes in settled) == [0, 0, 0, 1]
    [[outcome]] = [outcomes for outcomes in settled if outcomes]
    assert outcome == {
        "worker_id": None,
        "error": "OutcomeUnknownError",
        "token": charge.preview_token,
    }
    settler = fleet[settled.index([outcome])]
    # One settler's one resend of the same token (refused: it was spent).
    assert confirms.requests == sent + 2
    assert confirms.statuses[410] == 1
    assert confirms.statuses[429] == 0
    async with open_spec(spec) as journal:
        entries = await journal.entries()
    _check_every_charge_is_on_record(sandbox, entries)
    entry = next(e for e in entries if e.preview_token == charge.preview_token)
    assert (entry.state, entry.owner) == ("unknown", settler.owner)
    assert [item["worker_id"] for item in entry.evidence] == [charge.worker_id]
    assert entry.settled_at is not None
    assert entry.settled_at <= entry.expires_at  # within the token's ten minutes


class StalledHeartbeat:
    """A journal whose renewals never arrive: a partition from the database, a pause.

    Everything else is the real journal's, so this owner's lease runs out
    while its confirm is in flight, as a stalled worker's does.
    """

    def __init__(self, inner: Journal) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def renew(self, owner: str) -> None:
        del owner
        raise JournalError(
            "simulated: the heartbeat cannot reach the database",
            backend="postgresql", location="test", operation="renew an owner",
        )  # fmt: skip


Journal.register(StalledHeartbeat)


@pytest.mark.parametrize("resend", ["answered", "answer_lost"])
async def test_a_purchase_taken_over_while_its_confirm_is_in_flight_never_buys_twice(
    sendblue_sandbox: Sandbox[ManualClock], spec: dict[str, Any], resend: str
) -> None:
    """A lease that runs out mid-confirm: a survivor resends the live token first.

    This process's lease (0.5 s, shorter than its held confirm; its
    heartbeat stalls) runs out while the sandbox holds its confirm; a
    survivor's reconcile takes the purchase over and resends the same token,
    which buys. The held confirm then meets 410: a refusal, but not proof
    that nothing was bought, since another process sent the token. The
    purchase ends unknown, never in a second preview and a second line,
    whether the survivor recorded its line first (``answered``) or lost its
    answer and records later (``answer_lost``). The journal says what the
    survivor learnt: ``bought`` with its line, or ``unknown``; never this
    process's ``not_bought``, which came first but is not the owner's.
    """
    sandbox = sendblue_sandbox
    sandbox.inject("confirm", Fault.delay(3.0))  # this process's confirm
    if resend == "answer_lost":  # the survivor's resend commits, its answer is lost
        sandbox.inject("confirm", Fault.hang(after_commit=True, seconds=5.0))
    async with fleet_workers() as start:
        with anyio.fail_after(PATIENCE):
            survivor = await start(sandbox, spec, "one")
            async with (
                open_spec(spec, lease=0.5) as journal,
                connect(sandbox, timeout=10.0) as client,
                anyio.create_task_group() as group,
            ):
                outcome: list[Any] = []

                async def buy() -> None:
                    try:
                        stalled: Any = StalledHeartbeat(journal)
                        outcome.append(
                            await Provisioner(client, journal=stalled).provision()
                        )
                    except SendblueError as error:
                        outcome.append(error)

                group.start_soon(buy)
                await sandbox.wait_for_requests("confirm", within=PATIENCE)
                await wait_lease_gone(spec, default_owner())
                [settled] = await survivor.ask("reconcile")
            await tell(survivor.process, "exit")
            assert await survivor.process.wait() == 0
            await sandbox.wait_idle(within=30)
    [charge] = sandbox.ledger  # one line, bought by the survivor's resend
    assert sandbox.counters["preview"].requests == 1
    [error] = outcome
    assert isinstance(error, OutcomeUnknownError)
    assert error.preview_token == charge.preview_token
    assert isinstance(error.__cause__, TokenExpiredError)
    async with open_spec(spec) as journal:
        [entry] = await journal.entries()
    if resend == "answered":
        assert settled["worker_id"] == charge.worker_id
        assert (entry.state, entry.owner) == ("bought", survivor.owner)
    else:
        assert settled == {
            "worker_id": None,
            "error": "OutcomeUnknownError",
            "token": charge.preview_token,
        }
        assert (entry.state, entry.owner) == ("unknown", survivor.owner)
        assert [item["worker_id"] for item in entry.evidence] == [charge.worker_id]


def _held_until(released: anyio.Event) -> Fault:
    """A confirm that buys, then holds its answer until `released` (bounded)."""

    async def reply(context: Any) -> web.StreamResponse:
        with anyio.move_on_after(PATIENCE):
            await released.wait()
        return web.json_response(context.body)

    return Fault(kind="held", after_commit=True, reply=reply)


async def _wait_database_past(spec: dict[str, Any], moment: datetime) -> None:
    """Wait until the database's clock is past `moment` (the caller bounds it)."""
    connection = await asyncpg.connect(spec["dsn"])
    try:
        while True:
            if await connection.fetchval("SELECT now() > $1", moment):
                return
            await anyio.sleep(0.05)
    finally:
        await connection.close()


async def test_a_live_worker_with_a_short_lease_keeps_its_slow_confirm(
    sendblue_sandbox: Sandbox[ManualClock], spec: dict[str, Any]
) -> None:
    """The heartbeat follows the lease: a confirm held past three leases stays ours.

    This process's lease is 1 s; the sandbox holds its confirm's answer
    until three leases have passed by the database's clock since the intent,
    then a survivor reconciles: it claims nothing, resends nothing, and the
    line is recorded ``bought``, this process's. (A heartbeat of a fixed
    15 s let the lease run out, and the survivor claimed a live purchase.)
    """
    sandbox = sendblue_sandbox
    lease = 1.0
    released = anyio.Event()
    sandbox.inject("confirm", _held_until(released))
    async with fleet_workers() as start:
        with anyio.fail_after(PATIENCE):
            survivor = await start(sandbox, spec, "one")
            try:
                async with (
                    open_spec(spec, lease=lease) as journal,
                    connect(sandbox, timeout=PATIENCE) as client,
                    anyio.create_task_group() as group,
                ):
                    bought: list[Any] = []

                    async def buy() -> None:
                        provisioner = Provisioner(client, journal=journal)
                        bought.append(await provisioner.provision())

                    group.start_soon(buy)
                    await sandbox.wait_for_requests("confirm", within=PATIENCE)
                    [held] = await journal.entries()
                    await _wait_database_past(
                        spec, held.created_at + timedelta(seconds=3 * lease)
                    )
                    settled = await survivor.ask("reconcile")
                    released.set()
            finally:
                released.set()
            await tell(survivor.process, "exit")
            assert await survivor.process.wait() == 0
            await sandbox.wait_idle(within=30)
    assert settled == []
    [charge] = sandbox.ledger
    assert sandbox.counters["confirm"].requests == 1  # no resend
    [line] = bought
    assert line.worker_id == charge.worker_id
    async with open_spec(spec) as journal:
        [entry] = await journal.entries()
    assert (entry.state, entry.owner) == ("bought", default_owner())
