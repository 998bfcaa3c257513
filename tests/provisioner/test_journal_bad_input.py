"""Bad input to a journaled Provisioner: another account's journal, a dropped database.

Issue 12's list of bad input, where the storage-level tests
(`tests/journal/test_journal_failures.py`) stop short of a purchase: a
journal holding another account's purchases, and a PostgreSQL that drops
the connection when the intent is written. Typed errors, nothing bought
unrecorded, nothing of one account touched by another.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from crash_support import open_spec, store_spec
from provisioner_support import NO_WAIT

from sendblue_lines import (
    JournalError,
    LinesClient,
    Provisioner,
    SQLiteJournal,
)
from sendblue_lines.journal import Journal, JournalEntry, NewSlot, default_owner
from sendblue_lines.sandbox import Sandbox, SandboxAccount

A = "key-id-account-a"
B = "key-id-account-b"


@pytest.fixture
async def sandbox(sendblue_sandbox_factory: Any) -> Sandbox[Any]:
    """A sandbox with two accounts, A and B, three lines a day each."""
    accounts = [
        SandboxAccount(key, "sandbox-secret-" + secrets.token_urlsafe(16))
        for key in (A, B)
    ]
    made: Sandbox[Any] = await sendblue_sandbox_factory(accounts=accounts)
    return made


def _client(sandbox: Sandbox[Any], key_id: str) -> LinesClient:
    account = next(a for a in sandbox.accounts if a.api_key_id == key_id)
    return LinesClient(
        key_id, account.api_secret_key, base_url=sandbox.url, timeout=5, retry=NO_WAIT
    )


def _dead_owner() -> str:
    """An owner of this host whose process has exited and been reaped."""
    probe = subprocess.Popen([sys.executable, "-c", "pass"])
    probe.wait(timeout=30)
    return f"{socket.gethostname()}:{probe.pid}:-"


async def _intent(
    journal: Journal, account: str, owner: str, token: str, expires: datetime
) -> JournalEntry:
    (slot,) = await journal.reserve(account, owner, 1, None)
    return await journal.record_intent(slot, token, expires)


# -- a journal from another account ------------------------------------------------


async def test_another_accounts_purchases_are_never_resent_nor_counted(
    sandbox: Sandbox[Any], spec: dict[str, Any]
) -> None:
    """B's Provisioner on a journal full of A's purchases leaves them all alone.

    A holds a purchase left open by a dead process (a live token of A's) and
    three open purchases of a live process, all its daily room. B's
    reconcile resends none of A's tokens, B's reservation does not count
    A's intents, and `entries(account)` keeps the two apart. A's own
    reconcile then settles A's orphan with its same token.
    """
    dead = _dead_owner() if spec["kind"] == "sqlite" else "gone-worker"
    async with _client(sandbox, A) as a_client:
        orphan = await a_client.preview()
        held = [await a_client.preview() for _ in range(3)]
    # PostgreSQL judges an owner by its lease: the dead one's is 1 ms long.
    options = {"lease": 0.001} if spec["kind"] == "postgres" else {}
    async with open_spec(spec, **options) as writer:
        await _intent(writer, A, dead, orphan.token, orphan.expires_at)
    async with open_spec(spec) as journal:
        for preview in held:
            await _intent(
                journal, A, default_owner(), preview.token, preview.expires_at
            )
        async with _client(sandbox, B) as b_client:
            b = Provisioner(b_client, journal=journal)
            assert await b.reconcile() == []
            result = await b.provision_many(3)
            assert await b.reconcile() == []
        a_entries = await journal.entries(A)
        b_entries = await journal.entries(B)
        every = await journal.entries()

        # Nothing of A's was sent by B: its four tokens are unused, its
        # entries pending and still A's.
        confirms = [r for r in sandbox.requests if r.endpoint == "confirm"]
        assert {r.api_key_id for r in confirms} == {B}
        assert {sandbox.token_status(p.token) for p in [orphan, *held]} == {"unused"}
        assert [e.preview_token for e in a_entries] == [
            p.token for p in [orphan, *held]
        ]
        assert {(e.account, e.state) for e in a_entries} == {(A, "pending")}
        # A's open purchases did not take B's room.
        assert (len(result.lines), result.errors, result.not_attempted) == (3, [], 0)
        assert {(e.account, e.state) for e in b_entries} == {(B, "bought")}
        assert sorted(c.preview_token for c in sandbox.purchases(B)) == sorted(
            e.preview_token for e in b_entries
        )
        assert sorted(e.preview_token for e in every) == sorted(
            e.preview_token for e in a_entries + b_entries
        )

        # A's own reconcile settles A's orphan, and only it, with its token.
        async with _client(sandbox, A) as a_client:
            [outcome] = await Provisioner(a_client, journal=journal).reconcile()
        assert outcome.line is not None
        [charge] = sandbox.purchases(A)
        assert charge.preview_token == orphan.token
        assert sandbox.counters["preview"].requests == 4 + 3


async def test_a_journal_bound_to_another_account_stops_before_any_confirm(
    sandbox: Sandbox[Any], tmp_path: Path
) -> None:
    """A journal bound to A refuses B's reservation: a JournalError, nothing sent.

    `provision()` reserves its slot with the intent, after its preview (which
    charges nothing): that one preview is all it sends; a batch sends none.
    """
    async with (
        SQLiteJournal(tmp_path / "a.sqlite3", account=A) as journal,
        _client(sandbox, B) as b_client,
    ):
        b = Provisioner(b_client, journal=journal)
        with pytest.raises(JournalError, match="bound to the account"):
            await b.provision()
        result = await b.provision_many(2)
        with pytest.raises(JournalError, match="bound to the account"):
            await b.reconcile()
        assert await journal.entries() == []
    assert isinstance(result.stopped_by, JournalError)
    assert (result.lines, result.errors, result.not_attempted) == ([], [], 2)
    assert sandbox.counters["preview"].requests == 1  # provision()'s, never sent
    assert sandbox.counters["confirm"].requests == 0


# -- PostgreSQL drops the journal's connection ----------------------------------------


class DroppingIntent:
    """The real journal, but the first intent's connection dies mid-transaction.

    Another connection holds the slot's row, so the intent's transaction
    waits on it; the database then terminates the intent's backend.
    """

    def __init__(self, inner: Journal, spec: dict[str, Any], application: str) -> None:
        self._inner = inner
        self._spec = spec
        self._application = application
        self.dropped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def record_intent(self, slot_id: Any, *args: Any, **kw: Any) -> Any:
        if self.dropped:
            return await self._inner.record_intent(slot_id, *args, **kw)
        blocker = await asyncpg.connect(self._spec["dsn"])
        # Polled on a connection of its own: a transaction sees one snapshot
        # of pg_stat_activity.
        admin = await asyncpg.connect(self._spec["dsn"])
        failure: list[JournalError] = []
        try:
            async with blocker.transaction():
                await self._hold(blocker, slot_id)

                async def intent() -> None:
                    try:
                        await self._inner.record_intent(slot_id, *args, **kw)
                    except JournalError as error:
                        failure.append(error)

                async with anyio.create_task_group() as group:
                    group.start_soon(intent)
                    with anyio.fail_after(30):
                        self.dropped = await self._terminate_waiting(admin)
        finally:
            await blocker.close()
            await admin.close()
        if not failure:
            pytest.fail("the intent's transaction survived its connection")
        raise failure[0]

    async def _hold(self, blocker: Any, slot: Any) -> None:
        """Lock the row the intent's transaction needs: its slot, or its account.

        A `NewSlot` (`provision()`) reserves in the intent's transaction,
        which first locks the account's row.
        """
        schema = self._spec["schema"]
        if isinstance(slot, NewSlot):
            await blocker.execute(
                f'INSERT INTO "{schema}".accounts (account) VALUES ($1) '  # noqa: S608
                "ON CONFLICT (account) DO NOTHING",
                slot.account,
            )
            await blocker.execute(
                f'SELECT 1 FROM "{schema}".accounts '  # noqa: S608
                "WHERE account = $1 FOR UPDATE",
                slot.account,
            )
            return
        await blocker.execute(
            f'SELECT 1 FROM "{schema}".purchases WHERE id = $1 FOR UPDATE',  # noqa: S608
            slot,
        )

    async def _terminate_waiting(self, admin: Any) -> int:
        """Terminate the journal's backend once it waits on the row lock."""
        while True:
            pids = await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
                "AND wait_event_type = 'Lock'",
                self._application,
            )
            if pids:
                for row in pids:
                    await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
                return len(pids)
            await anyio.sleep(0.02)


Journal.register(DroppingIntent)


async def test_a_dropped_postgres_connection_at_the_intent_sends_no_confirm(
    sandbox: Sandbox[Any], tmp_path: Path
) -> None:
    """The database drops the intent's connection in the middle of its transaction.

    `provision()` raises a `JournalError` and no confirm leaves; the next
    `provision()` goes on on fresh connections and buys with one confirm,
    on record.
    """
    async with store_spec("postgres", tmp_path) as spec:
        # The journal's connections carry a name of their own, so that only
        # they are cut (other tests may share the server).
        application = "crash_" + uuid.uuid4().hex[:12]
        named = {**spec, "dsn": f"{spec['dsn']}?application_name={application}"}
        async with open_spec(named) as journal, _client(sandbox, A) as client:
            dropping = DroppingIntent(journal, spec, application)
            wrapped: Any = dropping
            provisioner = Provisioner(client, journal=wrapped)
            with pytest.raises(JournalError) as caught:
                await provisioner.provision()
            assert dropping.dropped >= 1
            assert caught.value.operation == "record the intent to confirm"
            assert sandbox.counters["confirm"].requests == 0
            assert await journal.entries() == []
            line = await provisioner.provision()
            [entry] = await journal.entries()
    assert sandbox.counters["confirm"].requests == 1
    [charge] = sandbox.ledger
    assert (entry.state, entry.preview_token) == ("bought", charge.preview_token)
    assert entry.line == line
