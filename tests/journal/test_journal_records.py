"""The write-ahead record: intents, outcomes, slots and entries, on both journals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from journal_support import Store

from sendblue_lines import (
    JournalEntry,
    JournalError,
    PostgresJournal,
    ProvisionedLine,
    SQLiteJournal,
)
from sendblue_lines.journal import (
    HEARTBEAT_SECONDS,
    Journal,
    default_owner,
    heartbeat_seconds,
)

ACCOUNT = "key-id-a"
EXPIRES = datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc)
SENT = EXPIRES - timedelta(minutes=9)
LINE = ProvisionedLine(
    phone_number="+14155551234", worker_id="worker_abc123", subscription_id="sub_1"
)
DEAD = "some-host-that-is-not-this-one:1:1"


async def pending(journal: Journal, token: str, account: str = ACCOUNT) -> JournalEntry:
    (slot,) = await journal.reserve(account, default_owner(), 1, None)
    return await journal.record_intent(slot, token, EXPIRES)


async def test_an_intent_is_committed_when_record_intent_returns(store: Store) -> None:
    """Another connection sees the pending intent before any outcome."""
    async with store.make() as writer, store.make() as reader:
        entry = await pending(writer, "lpv_first")
        seen = await reader.entries()
    assert seen == [entry]
    assert entry.state == "pending"
    assert entry.expires_at == EXPIRES
    assert entry.account == ACCOUNT
    assert entry.owner == default_owner()
    assert entry.first_sent_at is None
    assert entry.settled_at is None
    assert not entry.settled


async def test_an_outcome_is_committed_when_record_outcome_returns(
    store: Store,
) -> None:
    """The outcome, line, attempts and first send are on record for another reader."""
    async with store.make() as writer, store.make() as reader:
        await pending(writer, "lpv_bought")
        written = await writer.record_outcome(
            "lpv_bought", "bought", line=LINE, attempts=2, first_sent_at=SENT
        )
        (seen,) = await reader.entries()
    assert seen == written
    assert seen.state == "bought"
    assert seen.line == LINE
    assert seen.attempts == 2
    assert seen.first_sent_at == SENT
    assert seen.settled_at is not None


async def test_an_outcome_without_an_intent_is_refused(journal: Journal) -> None:
    """Write-ahead: no outcome may be written for a token whose intent is not there."""
    with pytest.raises(JournalError, match="no intent was recorded"):
        await journal.record_outcome("lpv_never", "not_bought")
    assert await journal.entries() == []


async def test_an_intent_needs_a_reserved_slot(journal: Journal) -> None:
    """An intent in a slot never granted or released is refused; nothing is written."""
    with pytest.raises(JournalError, match="not a reserved slot"):
        await journal.record_intent(12345, "lpv_x", EXPIRES)
    slots = await journal.reserve(ACCOUNT, default_owner(), 1, None)
    await journal.release(slots)
    with pytest.raises(JournalError, match="not a reserved slot"):
        await journal.record_intent(slots[0], "lpv_x", EXPIRES)
    assert await journal.entries() == []


async def test_a_token_is_recorded_once(journal: Journal) -> None:
    """The token column is unique: a second intent for one token is refused."""
    await pending(journal, "lpv_same")
    (slot,) = await journal.reserve(ACCOUNT, default_owner(), 1, None)
    with pytest.raises(JournalError, match="already in the journal"):
        await journal.record_intent(slot, "lpv_same", EXPIRES)
    # A slot that was used cannot take a second intent either.
    (first,) = await journal.reserve(ACCOUNT, default_owner(), 1, None)
    await journal.record_intent(first, "lpv_other", EXPIRES)
    with pytest.raises(JournalError, match="not a reserved slot"):
        await journal.record_intent(first, "lpv_third", EXPIRES)
    assert [e.preview_token for e in await journal.entries()] == [
        "lpv_same",
        "lpv_other",
    ]


@pytest.mark.parametrize(
    ("first", "then"),
    [
        pytest.param("bought", "unknown", id="bought-stays-bought"),
        pytest.param("not_bought", "bought", id="not-bought-stays"),
        pytest.param("provisioning_failed", "not_bought", id="failed-stays"),
    ],
)
async def test_a_final_outcome_cannot_change(
    journal: Journal, first: str, then: str
) -> None:
    """A final outcome is never overwritten by another one."""
    await pending(journal, "lpv_final")
    await journal.record_outcome(
        "lpv_final",
        first,
        line=LINE if first == "bought" else None,  # type: ignore[arg-type]
    )
    with pytest.raises(JournalError, match="is final"):
        await journal.record_outcome(
            "lpv_final",
            then,
            line=LINE if then == "bought" else None,  # type: ignore[arg-type]
        )
    (entry,) = await journal.entries()
    assert entry.state == first


async def test_the_same_outcome_may_be_written_again(journal: Journal) -> None:
    """A retry of an outcome whose answer was lost is accepted, not an error."""
    await pending(journal, "lpv_again")
    await journal.record_outcome("lpv_again", "provisioning_failed", error_code="x")
    again = await journal.record_outcome(
        "lpv_again", "provisioning_failed", error_code="provisioning_failed"
    )
    assert again.error_code == "provisioning_failed"


async def test_unknown_can_be_settled_later_with_evidence(journal: Journal) -> None:
    """An unknown outcome keeps its evidence, and a later proof may settle it."""
    await pending(journal, "lpv_unknown")
    evidence = [{"worker_id": "worker_9", "sendblue_number": "+14155550000"}]
    entry = await journal.record_outcome(
        "lpv_unknown", "unknown", message="timed out; then 410", evidence=evidence
    )
    assert entry.evidence == tuple(evidence)
    settled = await journal.record_outcome("lpv_unknown", "bought", line=LINE)
    assert settled.state == "bought"
    assert settled.evidence == tuple(evidence)


@pytest.mark.parametrize(
    ("state", "line", "match"),
    [
        pytest.param("pending", None, "not an outcome", id="pending"),
        pytest.param("reserved", None, "not an outcome", id="reserved"),
        pytest.param("bought", None, "a line goes with", id="bought-without-line"),
        pytest.param("unknown", LINE, "a line goes with", id="line-without-bought"),
    ],
)
async def test_bad_outcomes_are_refused(
    journal: Journal, state: str, line: ProvisionedLine | None, match: str
) -> None:
    """An outcome that is not one, or a line with the wrong state, is refused."""
    await pending(journal, "lpv_bad")
    with pytest.raises(JournalError, match=match):
        await journal.record_outcome("lpv_bad", state, line=line)  # type: ignore[arg-type]
    (entry,) = await journal.entries()
    assert entry.state == "pending"


async def test_evidence_must_be_json_objects(journal: Journal) -> None:
    """Evidence that JSON cannot carry is a JournalError; the entry stays pending."""
    await pending(journal, "lpv_ev")
    with pytest.raises(JournalError, match="not JSON"):
        await journal.record_outcome(
            "lpv_ev", "unknown", evidence=[{"at": datetime.now(timezone.utc)}]
        )
    with pytest.raises(JournalError, match="not JSON"):
        await journal.record_outcome("lpv_ev", "unknown", evidence=["text"])  # type: ignore[list-item]
    (entry,) = await journal.entries()
    assert entry.state == "pending"


async def test_entries_are_oldest_first_and_filter_by_account(journal: Journal) -> None:
    """`entries()` lists every purchase in order; `account=` keeps one account's."""
    for token, account in [("t1", "a"), ("t2", "b"), ("t3", "a")]:
        await pending(journal, token, account)
    assert [e.preview_token for e in await journal.entries()] == ["t1", "t2", "t3"]
    assert [e.preview_token for e in await journal.entries("a")] == ["t1", "t3"]
    assert await journal.entries("nobody") == []


async def test_reservation_grants_what_room_leaves(journal: Journal) -> None:
    """Open slots and pending intents count against the room; settled ones do not."""
    me = default_owner()
    assert len(await journal.reserve(ACCOUNT, me, 5, 3)) == 3
    assert await journal.reserve(ACCOUNT, me, 1, 3) == []
    assert len(await journal.reserve("another-account", me, 2, 2)) == 2
    entry = await pending(journal, "lpv_count")  # room None: always granted
    assert await journal.reserve(ACCOUNT, me, 1, 4) == []
    await journal.record_outcome(entry.preview_token, "bought", line=LINE)
    assert len(await journal.reserve(ACCOUNT, me, 2, 4)) == 1
    assert len(await journal.reserve(ACCOUNT, me, 3, None)) == 3
    assert await journal.reserve(ACCOUNT, me, 0, None) == []


async def test_released_slots_are_given_back(journal: Journal) -> None:
    """Released slots stop counting; releasing a used slot leaves its entry alone."""
    me = default_owner()
    slots = await journal.reserve(ACCOUNT, me, 2, 2)
    await journal.record_intent(slots[0], "lpv_kept", EXPIRES)
    await journal.release(slots)
    assert [e.preview_token for e in await journal.entries()] == ["lpv_kept"]
    assert len(await journal.reserve(ACCOUNT, me, 5, 2)) == 1


@pytest.mark.parametrize(("wanted", "room"), [(-1, None), (1, -1)])
async def test_negative_counts_are_refused(
    journal: Journal, wanted: int, room: int | None
) -> None:
    """A negative request or room is a JournalError, and nothing is reserved."""
    with pytest.raises(JournalError, match="negative"):
        await journal.reserve(ACCOUNT, default_owner(), wanted, room)
    assert len(await journal.reserve(ACCOUNT, default_owner(), 1, 1)) == 1


async def test_a_closed_journal_refuses_to_work(store: Store) -> None:
    """Using a journal that is not open is a JournalError, not a crash."""
    journal = store.make()
    with pytest.raises(JournalError, match="not open"):
        await journal.entries()
    async with journal:
        pass
    await journal.aclose()  # idempotent
    with pytest.raises(JournalError, match="not open"):
        await journal.reserve(ACCOUNT, default_owner(), 1, None)


async def test_a_journal_bound_to_another_account_is_refused(store: Store) -> None:
    """A journal bound to one key id refuses another on open and in every call."""
    async with store.make(account="key-one") as journal:
        with pytest.raises(JournalError, match="key-one"):
            await journal.reserve("key-two", default_owner(), 1, None)
        with pytest.raises(JournalError, match="key-one"):
            await journal.claim_orphans("key-two", default_owner())
    with pytest.raises(
        JournalError, match="belongs to the account with key id 'key-one'"
    ):
        async with store.make(account="key-two"):
            pass
    async with store.make() as unbound:  # an unbound journal reads any account
        assert await unbound.entries() == []


async def test_the_journal_is_a_journal(journal: Journal) -> None:
    """Both implementations satisfy the `Journal` protocol at run time."""
    assert isinstance(journal, Journal)


async def test_entries_never_show_a_whole_token(journal: Journal) -> None:
    """An entry's repr shows only the token's prefix."""
    entry = await pending(journal, "lpv_0123456789abcdef")
    assert "0123456789abcdef" not in repr(entry)
    assert "lpv_0123" in repr(entry)


async def test_pending_intents_of_dead_owners_still_count(store: Store) -> None:
    """A dead owner's pending purchase may have charged and counts; a bare slot not."""
    async with (
        store.make(lease=0.001) if store.kind == "postgres" else store.make() as j
    ):
        dead_slots = await j.reserve(ACCOUNT, _dead_owner(store), 2, None)
        await j.record_intent(dead_slots[0], "lpv_dead", EXPIRES)
    async with store.make() as journal:
        # Room 3: the dead owner's pending intent counts, its unused slot not.
        assert len(await journal.reserve(ACCOUNT, default_owner(), 5, 3)) == 2


def _dead_owner(store: Store) -> str:
    # SQLite: a process of this host that certainly does not run (pid 1 with
    # another start time is not that process). PostgreSQL: any name; its
    # lease of one millisecond has run out by the time anyone looks.
    if store.kind == "sqlite":
        return default_owner().rsplit(":", 2)[0] + ":1:999999999999"
    return "worker-that-died"


async def _held_by(journal: Journal, token: str, owner: str) -> JournalEntry:
    """A pending entry whose owner is `owner` (as after a claim by `owner`)."""
    (slot,) = await journal.reserve(ACCOUNT, owner, 1, None)
    return await journal.record_intent(slot, token, EXPIRES)


async def test_only_the_owner_settles_an_entry_another_process_took_over(
    journal: Journal,
) -> None:
    """A first owner's refusal after a takeover proves nothing: it is not applied.

    The entry is the survivor's; the first owner's ``not_bought`` and
    ``unknown`` leave it as it stands (and say whose it is), the survivor's
    ``unknown`` is written, and a line the first owner learnt is still a fact.
    """
    await _held_by(journal, "lpv_taken", "survivor")
    for state in ("not_bought", "unknown"):
        kept = await journal.record_outcome("lpv_taken", state, owner="first")  # type: ignore[arg-type]
        assert (kept.state, kept.owner, kept.settled_at) == (
            "pending",
            "survivor",
            None,
        )
    settled = await journal.record_outcome("lpv_taken", "unknown", owner="survivor")
    assert (settled.state, settled.owner) == ("unknown", "survivor")
    assert (await journal.record_outcome("lpv_taken", "not_bought", owner="first")) == (
        settled
    )
    bought = await journal.record_outcome(
        "lpv_taken", "bought", line=LINE, owner="first"
    )
    assert (bought.state, bought.owner, bought.line) == ("bought", "survivor", LINE)
    assert await journal.entries() == [bought]


async def test_a_charge_proved_by_another_process_is_recorded_over_a_claim(
    journal: Journal,
) -> None:
    """``provisioning_failed`` proves a charge too; a final state never changes."""
    await _held_by(journal, "lpv_failed", "survivor")
    failed = await journal.record_outcome(
        "lpv_failed", "provisioning_failed", error_code="x", owner="first"
    )
    assert (failed.state, failed.owner) == ("provisioning_failed", "survivor")
    with pytest.raises(JournalError, match="final"):
        await journal.record_outcome("lpv_failed", "bought", line=LINE, owner="first")
    with pytest.raises(JournalError, match="no intent was recorded"):
        await journal.record_outcome("lpv_none", "not_bought", owner="first")


async def test_an_outcome_without_an_owner_is_not_checked_against_the_owner(
    journal: Journal,
) -> None:
    """Callers that pass no owner write as before."""
    await _held_by(journal, "lpv_any", "survivor")
    entry = await journal.record_outcome("lpv_any", "not_bought")
    assert (entry.state, entry.owner) == ("not_bought", "survivor")


@pytest.mark.parametrize(
    ("lease", "every"), [(60.0, 15.0), (120.0, 15.0), (3.0, 1.0), (0.001, 0.1)]
)
def test_the_heartbeat_follows_the_lease(lease: float, every: float) -> None:
    """A third of the lease, between 0.1 s and 15 s; no lease: every 15 s."""
    journal = PostgresJournal("postgresql://u@127.0.0.1/db", lease=lease)
    assert journal.lease == lease
    assert heartbeat_seconds(journal) == pytest.approx(every)
    assert heartbeat_seconds(SQLiteJournal("unused.sqlite3")) == HEARTBEAT_SECONDS


async def test_a_rule_that_refuses_says_nothing_was_written(journal: Journal) -> None:
    """A refusal by the journal's rules is `refused`: it certainly wrote nothing."""
    [slot, other] = await journal.reserve("key-refused", default_owner(), 2, None)
    when = datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc)
    await journal.record_intent(slot, "lpv_once", when)
    with pytest.raises(JournalError) as repeated:
        await journal.record_intent(other, "lpv_once", when)
    await journal.record_outcome("lpv_once", "not_bought")
    with pytest.raises(JournalError) as final:
        await journal.record_outcome("lpv_once", "unknown")
    assert repeated.value.refused
    assert final.value.refused
    [entry] = await journal.entries("key-refused")
    assert entry.state == "not_bought"
