"""The fleet race: a reservation counts what settled after its mark, on both journals.

A purchase that charged after a process's limits read and was settled before
its reservation is in neither the read's ``used`` nor the open purchases; the
reservation counts it from the journal's mark, read before the limits. The
mark is the journal's own order of settled purchases, never a clock: what
settled before the mark was read is in the limits read, and never counted
twice, however recent.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from journal_support import Store

from sendblue_lines import JournalError, ProvisionedLine
from sendblue_lines.journal import Journal, default_owner

ACCOUNT = "key-id-since"
EXPIRES = datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc)
LINE = ProvisionedLine(
    phone_number="+14155551234", worker_id="worker_abc123", subscription_id="sub_1"
)
ME = default_owner()
OTHER = "another-host:42:1"


async def settled(journal: Journal, token: str, state: str, owner: str = ME) -> None:
    """Write a purchase of `owner` and its outcome `state`."""
    await journal.renew(owner)
    (slot,) = await journal.reserve(ACCOUNT, owner, 1, None)
    await journal.record_intent(slot, token, EXPIRES)
    line = LINE if state == "bought" else None
    await journal.record_outcome(token, state, line=line)  # type: ignore[arg-type]


async def test_a_mark_moves_with_each_settled_purchase(journal: Journal) -> None:
    """Each outcome written moves the mark on; a reservation does not."""
    first = await journal.mark()
    (slot,) = await journal.reserve(ACCOUNT, ME, 1, None)
    await journal.record_intent(slot, "lpv_moving", EXPIRES)
    assert await journal.mark() == first
    await journal.record_outcome("lpv_moving", "bought", line=LINE)
    assert await journal.mark() > first


@pytest.mark.parametrize("state", ["bought", "unknown", "provisioning_failed"])
@pytest.mark.parametrize("owner", [OTHER, ME], ids=["other-owner", "own"])
async def test_a_charge_settled_after_the_mark_takes_room(
    journal: Journal, state: str, owner: str
) -> None:
    """A purchase that may have charged, settled after the mark, counts as open."""
    mark = await journal.mark()
    await settled(journal, "lpv_race", state, owner=owner)
    assert await journal.reserve(ACCOUNT, ME, 1, 1, since=mark) == []
    assert len(await journal.reserve(ACCOUNT, ME, 3, 3, since=mark)) == 2


@pytest.mark.parametrize("owner", [OTHER, ME], ids=["other-owner", "own"])
async def test_a_charge_settled_before_the_mark_never_takes_room(
    journal: Journal, owner: str
) -> None:
    """A charge settled a moment before the mark is in the limits read: not again."""
    await settled(journal, "lpv_just_before", "bought", owner=owner)
    mark = await journal.mark()
    assert len(await journal.reserve(ACCOUNT, ME, 1, 1, since=mark)) == 1


async def test_what_bought_nothing_never_takes_room(journal: Journal) -> None:
    """A ``not_bought`` entry settled after the mark takes no room."""
    mark = await journal.mark()
    await settled(journal, "lpv_nothing", "not_bought", owner=OTHER)
    assert len(await journal.reserve(ACCOUNT, ME, 1, 1, since=mark)) == 1


async def test_without_a_mark_only_open_purchases_count(journal: Journal) -> None:
    """``since=None`` keeps the count of open purchases alone."""
    mark = await journal.mark()
    await settled(journal, "lpv_old", "bought", owner=OTHER)
    assert await journal.reserve(ACCOUNT, ME, 1, 1, since=mark) == []
    assert len(await journal.reserve(ACCOUNT, ME, 1, 1)) == 1


async def test_marks_of_two_journals_on_one_store_share_one_order(
    store: Store,
) -> None:
    """A mark read through one opening counts what another opening settled after it."""
    async with store.make() as first, store.make() as second:
        mark = await first.mark()
        await settled(second, "lpv_elsewhere", "bought", owner=OTHER)
        assert await first.reserve(ACCOUNT, ME, 1, 1, since=mark) == []
        assert (
            len(await first.reserve(ACCOUNT, ME, 1, 1, since=await first.mark())) == 1
        )


async def test_a_closed_journal_cannot_mark(store: Store) -> None:
    """`mark` on a journal that is not open is a JournalError."""
    journal = store.make()
    with pytest.raises(JournalError, match="not open"):
        await journal.mark()
