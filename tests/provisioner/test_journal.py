"""The journaled Provisioner: intent before confirm, outcome before report, reconcile.

Over the sandbox's real sockets, with a `SQLiteJournal` in `tmp_path` and,
where a PostgreSQL server answers, a `PostgresJournal` in a schema of its own.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from postgres_support import POSTGRES_DSN, fresh_schema, need_postgres
from provisioner_support import connect

from sendblue_lines import (
    ConfigurationError,
    DailyLimitReachedError,
    JournalError,
    LinesClient,
    OutcomeUnknownError,
    PostgresJournal,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    SQLiteJournal,
    TokenExpiredError,
)
from sendblue_lines.journal import Journal, JournalEntry, NewSlot
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

MakeJournal = Callable[[], Journal]
#: Makes an owner's lease run out (PostgreSQL); SQLite judges by the pid alone.
Expire = Callable[[str], Awaitable[None]]


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[MakeJournal, Expire]]:
    """Opens journals on one fresh store (SQLite file, or a PostgreSQL schema)."""
    if request.param == "sqlite":
        path = tmp_path / "journal.sqlite3"

        async def nothing(owner: str) -> None:
            del owner

        yield (lambda: SQLiteJournal(path)), nothing
        return

    async with fresh_schema(await need_postgres()) as schema:

        async def expire(owner: str) -> None:
            connection = await asyncpg.connect(POSTGRES_DSN)
            try:
                statement = (
                    f'UPDATE "{schema}".owners SET '  # noqa: S608 - our own schema name
                    "lease_until = now() - interval '1 hour' WHERE owner = $1"
                )
                await connection.execute(statement, owner)
            finally:
                await connection.close()

        yield (lambda: PostgresJournal(POSTGRES_DSN, schema=schema)), expire


@pytest.fixture
def make_journal(backend: tuple[MakeJournal, Expire]) -> MakeJournal:
    """Opens a journal on the test's store."""
    return backend[0]


@pytest.fixture
def expire(backend: tuple[MakeJournal, Expire]) -> Expire:
    """Makes an owner count as gone on the test's store."""
    return backend[1]


@pytest.fixture
async def journal(make_journal: MakeJournal) -> AsyncIterator[Journal]:
    """An open journal on a fresh store."""
    async with make_journal() as opened:
        yield opened


@pytest.fixture
async def client(sendblue_sandbox: Sandbox[ManualClock]) -> AsyncIterator[LinesClient]:
    """A client of the sandbox's default account."""
    async with connect(sendblue_sandbox, timeout=2.0) as c:
        yield c


def dead_owner() -> str:
    """An owner name of this host whose process has exited (and been reaped)."""
    probe = subprocess.Popen([sys.executable, "-c", "pass"])
    probe.wait(timeout=30)
    return f"{socket.gethostname()}:{probe.pid}:-"


def by_token(entries: list[JournalEntry]) -> dict[str, JournalEntry]:
    return {entry.preview_token: entry for entry in entries}


class FailingIntent:
    """A journal whose `record_intent` fails; everything else is the real one."""

    def __init__(self, inner: Journal) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def record_intent(self, *args: Any, **kwargs: Any) -> JournalEntry:
        raise JournalError(
            "simulated full disk", backend="sqlite", location="x", operation="intent"
        )


Journal.register(FailingIntent)


# -- the write-ahead rule -----------------------------------------------------


async def test_a_journal_that_cannot_write_the_intent_sends_no_confirm(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    seen: list[ProvisionOutcome] = []
    failing: Any = FailingIntent(journal)
    # The protocol is runtime-checkable: the wrapper passes for a Journal.
    provisioner = Provisioner(client, journal=failing, on_outcome=seen.append)
    with pytest.raises(JournalError):
        await provisioner.provision()
    assert sendblue_sandbox.counters["preview"].requests == 1
    assert sendblue_sandbox.counters["confirm"].requests == 0
    assert sendblue_sandbox.ledger == []
    assert [type(o.error) for o in seen] == [JournalError]
    # The slot it reserved was given back: all of a room of 3 can be had.
    held = await journal.reserve(client.api_key_id, "someone", 100, 3)
    assert len(held) == 3
    await journal.release(held)
    result = await Provisioner(client, journal=failing).provision_many(2)
    assert sendblue_sandbox.counters["confirm"].requests == 0
    assert [type(e) for e in result.errors] == [JournalError, JournalError]


async def test_every_outcome_is_recorded_before_it_is_reported(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    sendblue_sandbox.account.daily_limit = 10
    states_at_report: list[str] = []

    async def on_outcome(outcome: ProvisionOutcome) -> None:
        entries = await journal.entries(client.api_key_id)
        states_at_report.append(entries[-1].state)

    provisioner = Provisioner(client, journal=journal, on_outcome=on_outcome)
    line = await provisioner.provision()

    sendblue_sandbox.inject("confirm", Fault.provisioning_failed())
    with pytest.raises(ProvisioningFailedError):
        await provisioner.provision()

    # Every send of the same token loses its answer after the purchase commits.
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit(), times=10)
    with pytest.raises(OutcomeUnknownError) as unknown:
        await provisioner.provision()
    sendblue_sandbox.faults.clear()

    entries = await journal.entries(client.api_key_id)
    assert [e.state for e in entries] == ["bought", "provisioning_failed", "unknown"]
    assert states_at_report == ["bought", "provisioning_failed", "unknown"]
    assert entries[0].line == line
    assert entries[2].preview_token == unknown.value.preview_token
    assert all(e.first_sent_at is not None and e.settled_at for e in entries)
    # Every charge of the ledger names a token that the journal holds.
    charged = {charge.preview_token for charge in sendblue_sandbox.ledger}
    assert charged == {e.preview_token for e in entries}


async def test_a_first_send_refused_as_expired_is_recorded_not_bought(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    def expire_it(preview: Any) -> bool:
        sendblue_sandbox.clock.advance(seconds=601)
        return True

    provisioner = Provisioner(
        client, journal=journal, approve=expire_it, max_repreviews=1
    )
    with pytest.raises(TokenExpiredError):
        await provisioner.provision()
    entries = await journal.entries(client.api_key_id)
    # Two tokens, each in a slot of its own, both certainly bought nothing.
    assert [e.state for e in entries] == ["not_bought", "not_bought"]
    assert [e.error_code for e in entries] == ["token_expired"] * 2
    assert sendblue_sandbox.ledger == []
    assert sendblue_sandbox.counters["confirm"].requests == 2


# -- reconcile ----------------------------------------------------------------


async def orphan(journal: Journal, client: LinesClient, expire: Expire) -> str:
    """A pending intent of a dead owner, for a fresh real preview; its token."""
    owner = dead_owner()
    preview = await client.preview()
    [slot] = await journal.reserve(client.api_key_id, owner, 1, None)
    await journal.record_intent(slot, preview.token, preview.expires_at)
    await expire(owner)
    return preview.token


async def test_reconcile_buys_with_the_same_token_when_the_confirm_never_arrived(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    expire: Expire,
) -> None:
    token = await orphan(journal, client, expire)
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, journal=journal, on_outcome=seen.append)
    outcomes = await provisioner.reconcile()

    assert sendblue_sandbox.counters["preview"].requests == 1  # the orphan's own
    assert len(outcomes) == 1
    assert outcomes[0].line is not None
    assert seen == outcomes
    [entry] = await journal.entries(client.api_key_id)
    assert (entry.preview_token, entry.state) == (token, "bought")
    assert entry.line == outcomes[0].line
    assert [c.preview_token for c in sendblue_sandbox.ledger] == [token]
    # Settled: a second reconcile finds nothing.
    assert await provisioner.reconcile() == []


async def test_reconcile_of_a_confirm_that_committed_records_unknown_naming_its_line(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    expire: Expire,
) -> None:
    token = await orphan(journal, client, expire)
    first = await client.confirm(token)  # the dead process's confirm landed
    # The resend of a spent token is refused, which proves nothing: unknown.
    [outcome] = await Provisioner(client, journal=journal).reconcile()
    assert isinstance(outcome.error, OutcomeUnknownError)
    assert outcome.error.preview_token == token
    [entry] = await journal.entries(client.api_key_id)
    assert (entry.preview_token, entry.state) == (token, "unknown")
    assert [item["worker_id"] for item in entry.evidence] == [first.worker_id]
    assert sendblue_sandbox.counters["preview"].requests == 1
    assert [c.preview_token for c in sendblue_sandbox.ledger] == [token]


async def test_reconcile_leaves_what_it_cannot_prove_unknown_with_evidence(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    expire: Expire,
) -> None:
    token = await orphan(journal, client, expire)
    stray = sendblue_sandbox.add_line()  # a line no entry accounts for
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit(), times=10)
    provisioner = Provisioner(client, journal=journal)
    [outcome] = await provisioner.reconcile()
    sendblue_sandbox.faults.clear()

    assert isinstance(outcome.error, OutcomeUnknownError)
    assert outcome.error.preview_token == token
    [entry] = await journal.entries(client.api_key_id)
    assert entry.state == "unknown"
    worker_ids = {item["worker_id"] for item in entry.evidence}
    # The line the resend bought, and the stray one: neither in the journal.
    bought = {c.worker_id for c in sendblue_sandbox.ledger}
    assert worker_ids == bought | {stray.worker_id}
    assert sendblue_sandbox.counters["preview"].requests == 1


async def test_reconcile_never_touches_a_settled_entry_or_a_live_owner(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    expire: Expire,
) -> None:
    token = await orphan(journal, client, expire)
    await journal.record_outcome(token, "not_bought", message="never sent")
    live = await client.preview()
    await journal.renew("elsewhere:1:1")
    [slot] = await journal.reserve(client.api_key_id, "elsewhere:1:1", 1, None)
    await journal.record_intent(slot, live.token, live.expires_at)

    assert await Provisioner(client, journal=journal).reconcile() == []
    assert sendblue_sandbox.counters["confirm"].requests == 0
    states = {e.preview_token: e.state for e in await journal.entries()}
    assert states == {token: "not_bought", live.token: "pending"}


async def test_reconcile_without_a_journal_is_a_configuration_error(
    client: LinesClient,
) -> None:
    with pytest.raises(ConfigurationError):
        await Provisioner(client).reconcile()


# -- the fleet ----------------------------------------------------------------


async def test_two_provisioners_sharing_a_journal_stay_within_the_room(
    make_journal: MakeJournal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
) -> None:
    sendblue_sandbox.account.daily_limit = 3
    # Confirms are slow, so both batches plan while the other's are open.
    sendblue_sandbox.inject("confirm", Fault.delay(0.3), times=10)
    async with make_journal() as one, make_journal() as two:
        first = Provisioner(client, journal=one)
        second = Provisioner(client, journal=two)
        results = await asyncio.gather(
            first.provision_many(3), second.provision_many(3)
        )
        entries = await one.entries(client.api_key_id)
    confirms = sendblue_sandbox.counters["confirm"]
    assert confirms.requests <= 3
    assert 429 not in confirms.statuses
    assert sum(len(r.lines) for r in results) == len(sendblue_sandbox.ledger) == 3
    assert sum(r.not_attempted for r in results) == 3
    stops = [r.stopped_by for r in results if r.stopped_by is not None]
    assert stops
    assert all(isinstance(s, DailyLimitReachedError) for s in stops)
    assert any("journal" in str(s) for s in stops)
    assert sorted(e.state for e in entries) == ["bought"] * 3


async def test_a_caller_cancelled_mid_confirm_still_has_its_outcome_recorded(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    sendblue_sandbox.inject("confirm", Fault.delay(0.3))
    provisioner = Provisioner(client, journal=journal)
    task = asyncio.ensure_future(provisioner.provision())
    await sendblue_sandbox.wait_for_requests("confirm")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Once the cancellation went on, the outcome was already durable.
    [entry] = await journal.entries(client.api_key_id)
    assert entry.state == "bought"
    [charge] = sendblue_sandbox.ledger
    assert entry.preview_token == charge.preview_token
    assert entry.line is not None
    assert entry.line.worker_id == charge.worker_id


class FailingOutcome(FailingIntent):
    """A journal whose `record_outcome` fails; the intent is written for real."""

    async def record_intent(self, *args: Any, **kwargs: Any) -> JournalEntry:
        return await self._inner.record_intent(*args, **kwargs)

    async def record_outcome(self, *args: Any, **kwargs: Any) -> JournalEntry:
        raise JournalError(
            "simulated lost connection", backend="x", location="x", operation="y"
        )


async def test_an_outcome_the_journal_cannot_write_is_still_reported(
    journal: Journal,
    client: LinesClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[ProvisionOutcome] = []
    failing: Any = FailingOutcome(journal)
    provisioner = Provisioner(client, journal=failing, on_outcome=seen.append)
    line = await provisioner.provision()
    assert [o.line for o in seen] == [line]
    [entry] = await journal.entries(client.api_key_id)
    assert entry.state == "pending"  # left for reconcile()
    assert any(
        r.levelname == "ERROR" and "could not record the outcome" in r.getMessage()
        for r in caplog.records
    )


async def test_provision_meets_the_fleets_open_purchases_before_any_confirm(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # provision() reserves its journal slot with the intent, after the
    # preview (one commit): the fleet's refusal comes there, the token unsent.
    sendblue_sandbox.account.daily_limit = 2
    await journal.renew("elsewhere:1:1")
    held = await journal.reserve(client.api_key_id, "elsewhere:1:1", 2, None)
    assert len(held) == 2
    provisioner = Provisioner(client, journal=journal, max_lines=5)
    caplog.set_level(logging.INFO, logger="sendblue_lines")
    with pytest.raises(DailyLimitReachedError, match="journal"):
        await provisioner.provision()
    assert sendblue_sandbox.counters["preview"].requests == 1
    assert sendblue_sandbox.counters["confirm"].requests == 0
    assert await journal.entries(client.api_key_id) == []  # nothing written
    assert any("not sending token" in r.getMessage() for r in caplog.records)
    assert provisioner.lines_left == 5  # the Budget's unit came back at once
    # Once the other process gives its slots back, the purchase goes ahead.
    await journal.release(held)
    await provisioner.provision()
    assert len(sendblue_sandbox.ledger) == 1
    assert provisioner.lines_left == 4


class CountingRenew(FailingOutcome):
    """The real journal, noting whether a confirm was in flight at each renew."""

    def __init__(self, inner: Journal, sandbox: Sandbox[ManualClock]) -> None:
        super().__init__(inner)
        self.in_flight_at_renew: list[int] = []
        self._sandbox = sandbox

    async def record_outcome(self, *args: Any, **kwargs: Any) -> JournalEntry:
        return await self._inner.record_outcome(*args, **kwargs)

    async def renew(self, owner: str) -> None:
        self.in_flight_at_renew.append(self._sandbox.in_flight("confirm"))
        await self._inner.renew(owner)

    @property
    def lease(self) -> float:
        """A lease so short that a confirm of half a second renews several times."""
        return 0.03


async def test_a_confirm_in_flight_keeps_renewing_its_owner(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
) -> None:
    sendblue_sandbox.inject("confirm", Fault.delay(0.5))
    counting: Any = CountingRenew(journal, sendblue_sandbox)
    await Provisioner(client, journal=counting).provision()
    assert any(n > 0 for n in counting.in_flight_at_renew)
    [entry] = await journal.entries(client.api_key_id)
    assert entry.state == "bought"


class ReserveAfter(FailingOutcome):
    """The real journal; just before its first `reserve`, `before` runs to its end.

    So another purchase is confirmed and settled after this Provisioner read
    the limits and before it reserves: the fleet race of invariant 8.
    """

    def __init__(self, inner: Journal, before: Callable[[], Awaitable[object]]) -> None:
        super().__init__(inner)
        self._before: Callable[[], Awaitable[object]] | None = before

    async def record_outcome(self, *args: Any, **kwargs: Any) -> JournalEntry:
        return await self._inner.record_outcome(*args, **kwargs)

    async def _race(self) -> None:
        before, self._before = self._before, None
        if before is not None:
            await before()

    async def reserve(self, *args: Any, **kwargs: Any) -> list[int]:
        await self._race()
        return await self._inner.reserve(*args, **kwargs)

    async def record_intent(self, slot: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(slot, NewSlot):  # provision(): the slot comes with the intent
            await self._race()
        return await self._inner.record_intent(slot, *args, **kwargs)


@pytest.mark.parametrize("batch", [False, True], ids=["provision", "batch"])
async def test_a_purchase_settled_between_the_limits_read_and_the_reservation_counts(
    make_journal: MakeJournal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    batch: bool,
) -> None:
    """A line bought after our limits read and settled before we reserve counts.

    It is in neither the read nor the open purchases: the journal counts it
    from the mark, so we send no confirm to meet a 429.
    """
    sendblue_sandbox.account.daily_limit = 1
    async with make_journal() as mine, make_journal() as theirs:
        other = Provisioner(client, journal=theirs)
        racing: Any = ReserveAfter(mine, other.provision)
        me = Provisioner(client, journal=racing)
        if batch:
            result = await me.provision_many(1)
            assert result.lines == []
            assert result.not_attempted == 1
            stop = result.stopped_by
        else:
            with pytest.raises(DailyLimitReachedError) as raised:
                await me.provision()
            stop = raised.value
        entries = await theirs.entries(client.api_key_id)
    assert isinstance(stop, DailyLimitReachedError)
    assert stop.refused_by == "journal"
    assert "journal" in str(stop)
    # Both read the limits before the one line was bought.
    assert sendblue_sandbox.counters["limits"].requests == 2
    confirms = sendblue_sandbox.counters["confirm"]
    assert confirms.requests == 1
    assert 429 not in confirms.statuses
    # provision() reserves after its preview (its token is never sent).
    previews = 1 if batch else 2
    assert sendblue_sandbox.counters["preview"].requests == previews
    [charge] = sendblue_sandbox.ledger
    assert [(e.preview_token, e.state) for e in entries] == [
        (charge.preview_token, "bought")
    ]


async def test_one_process_buying_line_after_line_reaches_the_limit(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """One after another, every line the limit allows is bought.

    Its own purchases settled before each mark are in that limits read and
    are not counted a second time by the journal.
    """
    sendblue_sandbox.account.daily_limit = 3
    provisioner = Provisioner(client, journal=journal)
    lines = [await provisioner.provision() for _ in range(3)]
    assert len({line.worker_id for line in lines}) == 3
    with pytest.raises(DailyLimitReachedError):
        await provisioner.provision()
    assert sendblue_sandbox.counters["confirm"].requests == 3


# -- what an unknown says, and how often its token was sent ----------------------


async def test_a_live_unknown_outcome_is_recorded_with_evidence(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A provision() that ends unknown looks at the account's lines, as reconcile does.

    The confirm bought and its answer was lost; the resend of the spent
    token is refused. The entry, and the caller's error, name the line that
    no recorded purchase accounts for, and count both sends.
    """
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit())
    with pytest.raises(OutcomeUnknownError) as raised:
        await Provisioner(client, journal=journal).provision()
    [charge] = sendblue_sandbox.ledger
    [entry] = await journal.entries(client.api_key_id)
    assert (entry.state, entry.attempts) == ("unknown", 2)
    assert [item["worker_id"] for item in entry.evidence] == [charge.worker_id]
    error = raised.value
    assert error.evidence is not None
    assert [item["worker_id"] for item in error.evidence] == [charge.worker_id]
    assert "1 line(s) that no recorded purchase accounts for" in str(error)
    assert entry.message == str(error)


async def test_reconcile_counts_the_dead_owners_send_and_its_own(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    expire: Expire,
) -> None:
    """A dead process's send plus the reconciler's resend are two sends."""
    token = await orphan(journal, client, expire)
    [outcome] = await Provisioner(client, journal=journal).reconcile()
    assert outcome.line is not None
    [entry] = await journal.entries(client.api_key_id)
    assert (entry.preview_token, entry.state, entry.attempts) == (token, "bought", 2)


async def test_a_cancelled_reconcile_still_records_and_reports_what_its_resend_bought(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    expire: Expire,
) -> None:
    """Leaving reconciling() mid-resend: the line it buys is on record and heard."""
    token = await orphan(journal, client, expire)
    sendblue_sandbox.inject("confirm", Fault.delay(0.5))
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, journal=journal, on_outcome=seen.append)
    with anyio.move_on_after(0.1) as scope:
        await provisioner.reconcile()
    assert scope.cancelled_caught
    [charge] = sendblue_sandbox.ledger
    [entry] = await journal.entries(client.api_key_id)
    assert (entry.preview_token, entry.state) == (token, "bought")
    assert entry.line is not None
    assert entry.line.worker_id == charge.worker_id
    assert [o.line.worker_id for o in seen if o.line] == [charge.worker_id]


class UnreadableAfter(FailingIntent):
    """A journal whose reads of a key fail after the first; the rest is real."""

    reads = 0

    async def record_intent(self, *args: Any, **kwargs: Any) -> JournalEntry:
        return await self._inner.record_intent(*args, **kwargs)

    async def entries(self, *args: Any, **kwargs: Any) -> list[JournalEntry]:
        if kwargs.get("key") is not None:
            self.reads += 1
            if self.reads > 1:
                raise JournalError(
                    "simulated lost connection", backend="x", location="x",
                    operation="entries",
                )  # fmt: skip
        return await self._inner.entries(*args, **kwargs)


@pytest.mark.parametrize("failing", [FailingOutcome, UnreadableAfter])
async def test_a_keyed_batch_lists_every_line_it_bought_whatever_the_journal_did(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    failing: Callable[[Journal], Any],
) -> None:
    """An outcome the journal could not write, or a journal unreadable after."""
    provisioner = Provisioner(client, journal=failing(journal))
    result = await provisioner.provision_many(2, key="order-7")
    bought = sorted(charge.phone_number for charge in sendblue_sandbox.ledger)
    assert len(bought) == 2
    assert sorted(line.phone_number for line in result.lines) == bought
    assert (result.requested, result.errors, result.not_attempted) == (2, [], 0)


async def test_a_key_whose_own_outcome_went_unrecorded_answers_at_once(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """Not in flight, so not waited for: unknown, and nothing sent again."""
    provisioner = Provisioner(client, journal=FailingOutcome(journal))
    await provisioner.provision(key="agent:9")
    confirms = sendblue_sandbox.counters["confirm"].requests
    with anyio.fail_after(5), pytest.raises(OutcomeUnknownError):
        await provisioner.provision(key="agent:9")
    assert sendblue_sandbox.counters["confirm"].requests == confirms
    assert len(sendblue_sandbox.ledger) == 1


async def test_an_unknown_with_no_line_to_show_says_most_likely_nothing(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    expire: Expire,
) -> None:
    """Reconciled a day later, an expired token with no unaccounted line reads so.

    The dead process died before its confirm left; by the next day the
    token has expired and the resend meets 410. The state stays unknown
    (a provisioning failure charges without a line), but the words say
    what the account's lines show and what to check.
    """
    token = await orphan(journal, client, expire)
    sendblue_sandbox.clock.advance(hours=25)
    [outcome] = await Provisioner(client, journal=journal).reconcile()
    assert isinstance(outcome.error, OutcomeUnknownError)
    assert outcome.error.evidence == ()
    [entry] = await journal.entries(client.api_key_id)
    assert (entry.preview_token, entry.state, entry.attempts) == (token, "unknown", 2)
    assert entry.evidence == ()
    assert entry.message is not None
    assert "no line that this purchase could have bought" in entry.message
    assert "most likely bought" not in entry.message
    assert "billing" in entry.message
    assert sendblue_sandbox.ledger == []


async def test_reconciling_beside_an_app_settles_a_dead_owners_purchase(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    expire: Expire,
) -> None:
    """With `reconciling()` running, a dead owner's purchase is settled unasked.

    No call of the application's: the background pass claims the purchase
    as soon as the journal judges its owner gone, and resends its token.
    """
    seen: list[ProvisionOutcome] = []
    heard = anyio.Event()

    def hear(outcome: ProvisionOutcome) -> None:
        seen.append(outcome)
        heard.set()

    provisioner = Provisioner(client, journal=journal, on_outcome=hear)
    # Left before the block: a pass between the orphan's reservation and its
    # intent would rightly give a dead owner's reserved slot back.
    token = await orphan(journal, client, expire)
    async with provisioner.reconciling(every=0.05):
        with anyio.fail_after(10):
            await heard.wait()
    [entry] = await journal.entries(client.api_key_id)
    assert (entry.preview_token, entry.state) == (token, "bought")
    assert [o.line for o in seen] == [entry.line]
    assert [c.preview_token for c in sendblue_sandbox.ledger] == [token]


async def test_reconciling_needs_a_journal_and_a_sane_interval(
    journal: Journal, client: LinesClient
) -> None:
    """`reconciling()` refuses a Provisioner without a journal, and a bad interval."""
    with pytest.raises(ConfigurationError, match="journal"):
        async with Provisioner(client).reconciling():
            pass
    with pytest.raises(ConfigurationError, match="every"):
        async with Provisioner(client, journal=journal).reconciling(every=0):
            pass


# -- keys: bad input, and a person's verdict ----------------------------------


@pytest.mark.parametrize(
    ("key", "why"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("k" * 201, "at most 200", id="too-long"),
        pytest.param("agent\n3", "control", id="newline"),
        pytest.param("agent\x1b[2J", "control", id="escape"),
        pytest.param("agent\u202e3", "control", id="bidi"),
        pytest.param(3, "string", id="not-a-string"),
    ],
)
async def test_a_bad_key_is_refused_before_anything_is_sent(
    journal: Journal,
    client: LinesClient,
    sendblue_sandbox: Sandbox[ManualClock],
    key: Any,
    why: str,
) -> None:
    """An unusable key is a ConfigurationError from provision() and provision_many()."""
    provisioner = Provisioner(client, journal=journal)
    with pytest.raises(ConfigurationError, match=why):
        await provisioner.provision(key=key)
    with pytest.raises(ConfigurationError, match=why):
        await provisioner.provision_many(2, key=key)
    assert sum(c.requests for c in sendblue_sandbox.counters.values()) == 0
    assert await journal.entries() == []


async def test_a_key_without_a_journal_is_refused(
    client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """Keys live in the journal: without one, a key is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="journal"):
        await Provisioner(client).provision(key="agent:1")
    with pytest.raises(ConfigurationError, match="journal"):
        await Provisioner(client).provision_many(1, key="agent:1")
    assert sum(c.requests for c in sendblue_sandbox.counters.values()) == 0


async def test_a_key_keeps_its_line_and_sends_nothing_again(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A second provision() for a key returns its line; on_outcome heard it once."""
    seen: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, journal=journal, on_outcome=seen.append)
    line = await provisioner.provision(key="agent:7")
    requests = sum(c.requests for c in sendblue_sandbox.counters.values())
    assert await provisioner.provision(key="agent:7") == line
    assert sum(c.requests for c in sendblue_sandbox.counters.values()) == requests
    assert seen == [ProvisionOutcome(index=0, line=line)]
    [entry] = await journal.entries(client.api_key_id, key="agent:7")
    assert (entry.key, entry.line) == ("agent:7", line)
    # Another key is another reason: it buys.
    assert await provisioner.provision(key="agent:8") != line


async def _unknown_under(
    journal: Journal, client: LinesClient, sandbox: Sandbox[ManualClock], key: str
) -> OutcomeUnknownError:
    """A purchase under `key` whose answer is lost after it bought: unknown."""
    sandbox.inject("confirm", Fault.drop_after_commit())
    with pytest.raises(OutcomeUnknownError) as raised:
        await Provisioner(client, journal=journal).provision(key=key)
    return raised.value


async def test_an_unknown_key_is_raised_again_until_a_person_settles_it_bought(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """Unknown: the key's next call raises it again; settled bought, it returns it."""
    first = await _unknown_under(journal, client, sendblue_sandbox, "agent:9")
    provisioner = Provisioner(client, journal=journal)
    with pytest.raises(OutcomeUnknownError) as again:
        await provisioner.provision(key="agent:9")
    assert again.value.preview_token == first.preview_token
    [charge] = sendblue_sandbox.ledger
    entry = await journal.settle(
        first.preview_token[:10],
        phone_number=charge.phone_number,
        note="seen on dashboard",
    )
    assert (entry.state, entry.error_code, entry.message) == (
        "bought", "settled_by_hand", "seen on dashboard",
    )  # fmt: skip
    assert entry.line is not None
    assert (entry.line.phone_number, entry.line.worker_id) == (
        charge.phone_number,
        None,
    )
    confirms = sendblue_sandbox.counters["confirm"].requests
    line = await provisioner.provision(key="agent:9")
    assert line.phone_number == charge.phone_number
    assert sendblue_sandbox.counters["confirm"].requests == confirms
    assert len(sendblue_sandbox.ledger) == 1


async def test_a_key_settled_not_bought_buys_again(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A person says the unknown bought nothing: the key's next call buys a line."""
    first = await _unknown_under(journal, client, sendblue_sandbox, "agent:10")
    entry = await journal.settle(first.preview_token, not_bought=True)
    assert (entry.state, entry.message) == ("not_bought", "settled by hand")
    line = await Provisioner(client, journal=journal).provision(key="agent:10")
    assert line.phone_number == sendblue_sandbox.ledger[-1].phone_number
    states = [e.state for e in await journal.entries(client.api_key_id, key="agent:10")]
    assert states == ["not_bought", "bought"]


async def test_settling_anything_but_one_unknown_changes_nothing(
    journal: Journal, client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A bought entry, a short or unmatched prefix, or no verdict: JournalError."""
    line = await Provisioner(client, journal=journal).provision(key="agent:11")
    [entry] = await journal.entries()
    token = entry.preview_token
    for prefix, options, why in [
        (token, {"not_bought": True}, "only an unknown outcome"),
        (token[:7], {"not_bought": True}, "8 of its first characters"),
        ("lpv_none_such", {"not_bought": True}, "no purchase"),
        (token, {}, "one of them"),
        (token, {"phone_number": "+1", "not_bought": True}, "one of them"),
    ]:
        with pytest.raises(JournalError, match=why):
            await journal.settle(prefix, **options)
    assert await journal.entries() == [entry]
    assert entry.line == line
