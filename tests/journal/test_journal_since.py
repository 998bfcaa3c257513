"""The fleet race: a reservation counts what settled since its mark, on both journals.

A purchase that charged after a process's limits read and was settled before
its reservation is in neither the read's ``used`` nor the open purchases; the
reservation counts it from the journal's mark, read before the limits.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from journal_support import Store

from sendblue_lines import JournalError, ProvisionedLine
from sendblue_lines.journal import JOURNAL_METHODS, Journal, default_owner, is_journal

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


async def settle_at(store: Store, token: str, moment: datetime) -> None:
    """Move an entry's `settled_at` to `moment`, behind the journal's back."""
    if store.kind == "sqlite":
        text = moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
        await store.sql(
            "UPDATE purchases SET settled_at = ? WHERE preview_token = ?", text, token
        )
    else:
        await store.sql(
            "UPDATE purchases SET settled_at = $1 WHERE preview_token = $2",
            moment,
            token,
        )


async def test_the_mark_is_on_the_clock_that_stamps_outcomes(journal: Journal) -> None:
    """An outcome written after a mark is stamped at or after it."""
    mark = await journal.mark()
    assert mark.tzinfo is not None
    await settled(journal, "lpv_after", "bought")
    (entry,) = await journal.entries(ACCOUNT)
    assert entry.settled_at is not None
    assert entry.settled_at >= mark


@pytest.mark.parametrize("state", ["bought", "unknown", "provisioning_failed"])
async def test_a_charge_settled_after_the_mark_takes_room(
    journal: Journal, state: str
) -> None:
    """A purchase that may have charged, settled after the mark, counts as open."""
    mark = await journal.mark()
    await settled(journal, "lpv_race", state, owner=OTHER)
    assert await journal.reserve(ACCOUNT, ME, 1, 1, since=mark) == []
    # Its own purchases count too: two Provisioners of one process race alike.
    await settled(journal, "lpv_mine", state)
    assert len(await journal.reserve(ACCOUNT, ME, 3, 3, since=mark)) == 1


async def test_what_bought_nothing_never_takes_room(journal: Journal) -> None:
    """A ``not_bought`` entry settled after the mark takes no room."""
    mark = await journal.mark()
    await settled(journal, "lpv_nothing", "not_bought", owner=OTHER)
    assert len(await journal.reserve(ACCOUNT, ME, 1, 1, since=mark)) == 1


async def test_without_a_mark_only_open_purchases_count(journal: Journal) -> None:
    """``since=None`` keeps the count of open purchases alone."""
    await settled(journal, "lpv_old", "bought", owner=OTHER)
    assert len(await journal.reserve(ACCOUNT, ME, 1, 1)) == 1


async def test_the_margin_counts_other_owners_just_before_the_mark(
    store: Store,
) -> None:
    """Other owners' charges settled just before the mark count; ours, older not.

    The margin covers a clock that stepped back between two processes' stamps.
    """
    async with store.make() as journal:
        await settled(journal, "lpv_theirs_recent", "bought", owner=OTHER)
        await settled(journal, "lpv_theirs_old", "bought", owner=OTHER)
        await settled(journal, "lpv_mine_recent", "bought")
        mark = await journal.mark()
        await settle_at(store, "lpv_theirs_recent", mark - timedelta(seconds=1))
        await settle_at(store, "lpv_theirs_old", mark - timedelta(minutes=5))
        await settle_at(store, "lpv_mine_recent", mark - timedelta(seconds=1))
        # Room 2: only the other owner's recent charge takes one.
        assert len(await journal.reserve(ACCOUNT, ME, 5, 2, since=mark)) == 1


async def test_a_closed_journal_cannot_mark(store: Store) -> None:
    """`mark` on a journal that is not open is a JournalError."""
    journal = store.make()
    with pytest.raises(JournalError, match="not open"):
        await journal.mark()


class Forwarding:
    """A wrapper that forwards every attribute to a journal."""

    def __init__(self, inner: Journal) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


async def test_a_forwarding_wrapper_is_a_journal(journal: Journal) -> None:
    """`is_journal` sees methods found through ``__getattr__``; a half journal not."""
    assert "mark" in JOURNAL_METHODS
    assert "reserve" in JOURNAL_METHODS
    assert is_journal(journal)
    assert is_journal(Forwarding(journal))
    assert not is_journal(object())
