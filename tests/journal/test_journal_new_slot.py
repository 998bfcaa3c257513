"""`record_intent` with a `NewSlot`: the reservation and the intent, one commit."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from journal_support import Store

from sendblue_lines import JournalError, ProvisionedLine
from sendblue_lines.journal import Journal, NewSlot, default_owner

ACCOUNT = "key-id-a"
EXPIRES = datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc)
LINE = ProvisionedLine(
    phone_number="+14155551234", worker_id="worker_abc123", subscription_id="sub_1"
)
OTHER = "elsewhere:1:1"


def wanted(room: int | None, since: datetime | None = None) -> NewSlot:
    return NewSlot(account=ACCOUNT, owner=default_owner(), room=room, since=since)


async def test_a_new_slot_with_room_writes_a_pending_intent(journal: Journal) -> None:
    entry = await journal.record_intent(wanted(1), "lpv_one", EXPIRES)
    assert entry is not None
    assert (entry.preview_token, entry.state) == ("lpv_one", "pending")
    assert (entry.account, entry.owner) == (ACCOUNT, default_owner())
    assert entry.expires_at == EXPIRES
    assert await journal.entries() == [entry]
    # Its outcome is written as for any intent.
    bought = await journal.record_outcome(
        "lpv_one", "bought", line=LINE, owner=default_owner()
    )
    assert bought.state == "bought"


async def test_a_new_slot_without_room_writes_nothing(journal: Journal) -> None:
    """What the fleet holds counts: another owner's slots and pending intents."""
    await journal.renew(OTHER)
    held = await journal.reserve(ACCOUNT, OTHER, 1, None)
    assert await journal.record_intent(wanted(2), "lpv_mine", EXPIRES) is not None
    # Room 2: one slot of the other owner, one pending intent of ours.
    assert await journal.record_intent(wanted(2), "lpv_refused", EXPIRES) is None
    assert [e.preview_token for e in await journal.entries()] == ["lpv_mine"]
    # Once the slot is given back, the room is there again.
    await journal.release(held)
    assert await journal.record_intent(wanted(2), "lpv_after", EXPIRES) is not None
    assert await journal.record_intent(wanted(0), "lpv_none", EXPIRES) is None
    assert await journal.record_intent(wanted(None), "lpv_free", EXPIRES) is not None


async def test_a_new_slot_counts_what_settled_since_the_mark(journal: Journal) -> None:
    mark = await journal.mark()
    first = await journal.record_intent(wanted(1, mark), "lpv_first", EXPIRES)
    assert first is not None
    await journal.record_outcome("lpv_first", "bought", line=LINE)
    # Settled after the mark: a limits read made after the mark may miss it.
    assert await journal.record_intent(wanted(1, mark), "lpv_late", EXPIRES) is None
    # Without a mark only open purchases count.
    assert await journal.record_intent(wanted(1), "lpv_open", EXPIRES) is not None


async def test_a_new_slot_refuses_a_token_already_in_the_journal(
    journal: Journal,
) -> None:
    assert await journal.record_intent(wanted(None), "lpv_same", EXPIRES)
    with pytest.raises(JournalError, match="already in the journal"):
        await journal.record_intent(wanted(None), "lpv_same", EXPIRES)
    [entry] = await journal.entries()
    assert entry.preview_token == "lpv_same"
    # The journal still works after the refused transaction.
    assert await journal.record_intent(wanted(None), "lpv_next", EXPIRES)


async def test_a_new_slot_of_another_account_is_refused(store: Store) -> None:
    async with store.make(account="key-id-b") as bound:
        with pytest.raises(JournalError, match="bound to the account"):
            await bound.record_intent(wanted(None), "lpv_x", EXPIRES)
        assert await bound.entries() == []


async def test_a_new_slot_with_a_negative_room_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="negative"):
        await journal.record_intent(wanted(-1), "lpv_x", EXPIRES + timedelta(0))
    assert await journal.entries() == []


async def test_concurrent_writes_fail_alone(store: Store) -> None:
    """Concurrent writes succeed or fail each alone.

    One of twelve concurrent intents repeats a token: it alone is refused;
    the others are on disk for another reader when their calls return.
    """
    tokens = [f"lpv_{i:02d}" for i in range(11)] + ["lpv_03"]
    async with store.make() as writer, store.make() as reader:
        results = await asyncio.gather(
            *(writer.record_intent(wanted(None), t, EXPIRES) for t in tokens),
            return_exceptions=True,
        )
        seen = {e.preview_token for e in await reader.entries()}
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], JournalError)
    assert "already in the journal" in str(errors[0])
    assert seen == set(tokens)
