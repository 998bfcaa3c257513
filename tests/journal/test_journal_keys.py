"""Keys in the journal, on both stores: totals, lookups, claims, settling by hand."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from sendblue_lines import JournalError, ProvisionedLine
from sendblue_lines.journal import Journal, NewSlot, default_owner

ACCOUNT = "key-id-keys"
EXPIRES = datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc)
LINE = ProvisionedLine(
    phone_number="+14155550123", worker_id="w1", subscription_id="s1"
)
ME = default_owner()


async def bought(journal: Journal, token: str, key: str | None, state: str) -> None:
    """One purchase under `key`, settled in `state`."""
    [slot] = await journal.reserve(ACCOUNT, ME, 1, None, key=key, total=None)
    await journal.record_intent(slot, token, EXPIRES)
    if state != "pending":
        line = LINE if state == "bought" else None
        await journal.record_outcome(token, state, line=line)  # type: ignore[arg-type]


async def test_a_keys_total_counts_what_bought_or_may_have(journal: Journal) -> None:
    """Bought, pending, unknown, provisioning_failed fill the total, not_bought not."""
    for token, state in [
        ("lpv_k_bought", "bought"),
        ("lpv_k_pending", "pending"),
        ("lpv_k_unknown", "unknown"),
        ("lpv_k_failed", "provisioning_failed"),
        ("lpv_k_nothing", "not_bought"),
    ]:
        await bought(journal, token, "order:1", state)
    assert await journal.reserve(ACCOUNT, ME, 3, None, key="order:1", total=4) == []
    assert len(await journal.reserve(ACCOUNT, ME, 3, None, key="order:1", total=6)) == 2
    # The two slots just reserved fill the total too; another key is untouched.
    assert await journal.reserve(ACCOUNT, ME, 1, None, key="order:1", total=6) == []
    assert len(await journal.reserve(ACCOUNT, ME, 2, None, key="order:2", total=2)) == 2


async def test_a_new_slot_under_a_met_key_writes_nothing(journal: Journal) -> None:
    """The intent's own reservation counts the key's total: None, nothing written."""
    await bought(journal, "lpv_first", "agent:1", "pending")
    wanted = NewSlot(account=ACCOUNT, owner=ME, room=None, key="agent:1", total=1)
    assert await journal.record_intent(wanted, "lpv_second", EXPIRES) is None
    other = NewSlot(account=ACCOUNT, owner=ME, room=None, key="agent:2", total=1)
    entry = await journal.record_intent(other, "lpv_third", EXPIRES)
    assert entry is not None
    assert entry.key == "agent:2"
    assert [e.preview_token for e in await journal.entries()] == [
        "lpv_first",
        "lpv_third",
    ]


async def test_entries_and_claims_by_key(journal: Journal) -> None:
    """entries(key=) lists one key's purchases; claim_orphans(key=) claims its own."""
    await bought(journal, "lpv_a1", "a", "bought")
    await bought(journal, "lpv_b1", "b", "pending")
    await bought(journal, "lpv_none", None, "bought")
    assert [e.preview_token for e in await journal.entries(ACCOUNT, key="a")] == [
        "lpv_a1"
    ]
    assert [e.key for e in await journal.entries(ACCOUNT)] == ["a", "b", None]
    # Nothing pending under "a"; "b"'s owner is alive (this process).
    assert await journal.claim_orphans(ACCOUNT, "survivor:1:1", key="a") == []


@pytest.mark.parametrize(
    ("key", "total"),
    [("", 1), ("k" * 201, 1), ("tab\there", 1), (None, 2), ("ok", -1)],
)
async def test_a_bad_key_or_total_is_refused_by_the_journal(
    journal: Journal, key: str | None, total: int
) -> None:
    """The journal refuses what the Provisioner would: nothing is reserved."""
    with pytest.raises(JournalError):
        await journal.reserve(ACCOUNT, ME, 1, None, key=key, total=total)
    assert await journal.reserve(ACCOUNT, ME, 1, 0) == []


async def test_an_ambiguous_prefix_settles_nothing(journal: Journal) -> None:
    """Two unknown entries whose tokens share a prefix: the prefix names neither."""
    await bought(journal, "lpv_shared_0001", "a", "unknown")
    await bought(journal, "lpv_shared_0002", "b", "unknown")
    with pytest.raises(JournalError, match="2 purchases"):
        await journal.settle("lpv_shared_", not_bought=True)
    assert {e.state for e in await journal.entries()} == {"unknown"}
    entry = await journal.settle("lpv_shared_0002", phone_number="+14155550999")
    assert (entry.state, entry.key) == ("bought", "b")
    assert entry.line == ProvisionedLine(
        phone_number="+14155550999", worker_id=None, subscription_id=None
    )
    # Final: the verdict is never changed again, by hand or by an outcome.
    with pytest.raises(JournalError, match="only an unknown"):
        await journal.settle("lpv_shared_0002", not_bought=True)
    with pytest.raises(JournalError, match="final"):
        await journal.record_outcome("lpv_shared_0002", "not_bought")


async def test_a_whole_token_settles_its_entry_when_it_begins_another(
    journal: Journal,
) -> None:
    """A token that is the start of another token still names its own entry."""
    await bought(journal, "lpv_short_0001", "a", "unknown")
    await bought(journal, "lpv_short_0001_more", "b", "unknown")
    entry = await journal.settle("lpv_short_0001", not_bought=True)
    assert (entry.preview_token, entry.state) == ("lpv_short_0001", "not_bought")
    states = {e.preview_token: e.state for e in await journal.entries()}
    assert states["lpv_short_0001_more"] == "unknown"


@pytest.mark.parametrize("note", [5, b"bytes", ["a"]])
async def test_a_note_that_is_not_text_is_refused(journal: Journal, note: Any) -> None:
    """A typed refusal, nothing changed: never a TypeError from inside."""
    await bought(journal, "lpv_noted_0001", "a", "unknown")
    with pytest.raises(JournalError, match="a note is text") as caught:
        await journal.settle("lpv_noted_0001", not_bought=True, note=note)
    assert caught.value.refused
    assert [e.state for e in await journal.entries()] == ["unknown"]


async def test_a_line_settled_by_hand_keeps_its_place_in_the_order(
    journal: Journal,
) -> None:
    """Settling by hand takes no new place: a mark read before it still counts it once.

    The unknown already counted as a charge from when it settled; the person
    only says what it was.
    """
    await bought(journal, "lpv_hand_0001", None, "unknown")
    mark = await journal.mark()
    await journal.settle("lpv_hand_0001", phone_number="+14155550100")
    assert await journal.mark() == mark
    assert len(await journal.reserve(ACCOUNT, ME, 1, 1, since=mark)) == 1
