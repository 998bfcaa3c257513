"""The reservation counts against a model: a hypothesis state machine on SQLite."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import hypothesis.strategies as st
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sendblue_lines import ProvisionedLine, SQLiteJournal
from sendblue_lines.journal import default_owner

ACCOUNT = "key-id-model"
EXPIRES = datetime(2030, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=10)
LINE = ProvisionedLine(phone_number="+1", worker_id="w", subscription_id="s")


class Reservations(RuleBasedStateMachine):
    """Reserve, use, settle and release slots; open purchases match the model."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.portal_context = start_blocking_portal()
        self.portal: BlockingPortal = self.portal_context.__enter__()
        self.journal = SQLiteJournal(Path(self.directory.name) / "model.sqlite3")
        self.portal.call(self.journal.open)
        self.reserved: list[int] = []
        self.pending: list[str] = []
        self.tokens = 0

    @initialize()
    def nothing_yet(self) -> None:
        assert self.portal.call(self.journal.entries) == []

    @rule(wanted=st.integers(0, 6), room=st.none() | st.integers(0, 8))
    def reserve(self, wanted: int, room: int | None) -> None:
        open_now = len(self.reserved) + len(self.pending)
        expected = wanted if room is None else max(0, min(wanted, room - open_now))
        slots = self.portal.call(
            self.journal.reserve, ACCOUNT, default_owner(), wanted, room
        )
        assert len(slots) == expected
        assert not set(slots) & set(self.reserved)
        self.reserved.extend(slots)

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    def intent(self, data: st.DataObject) -> None:
        slot = data.draw(st.sampled_from(self.reserved))
        self.tokens += 1
        token = f"lpv_model_{self.tokens}"
        self.portal.call(self.journal.record_intent, slot, token, EXPIRES)
        self.reserved.remove(slot)
        self.pending.append(token)

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), state=st.sampled_from(["bought", "not_bought", "unknown"]))
    def outcome(self, data: st.DataObject, state: str) -> None:
        token = data.draw(st.sampled_from(self.pending))
        line = LINE if state == "bought" else None

        async def record() -> None:
            await self.journal.record_outcome(token, state, line=line)  # type: ignore[arg-type]

        self.portal.call(record)
        self.pending.remove(token)

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        some = data.draw(st.lists(st.sampled_from(self.reserved), unique=True))
        self.portal.call(self.journal.release, some)
        for slot in some:
            self.reserved.remove(slot)

    @invariant()
    def the_room_is_what_the_model_says(self) -> None:
        entries = self.portal.call(self.journal.entries, ACCOUNT)
        assert sorted(
            e.preview_token for e in entries if e.state == "pending"
        ) == sorted(self.pending)

    def teardown(self) -> None:
        self.portal.call(self.journal.aclose)
        self.portal_context.__exit__(None, None, None)
        self.directory.cleanup()


Reservations.TestCase.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None
)
TestReservations = Reservations.TestCase
