"""A refusal names the count that took the room, and says when to retry.

Three counts can leave no room for a purchase: the server's own (its
limits read, or its 429), this Provisioner's purchases still in flight
(which that read does not count yet), and the purchases that other
processes sharing the journal hold. Each refusal says which, as
`refused_by` and in its message, with `next_available_at` where it can be
known. Over the sandbox's real sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from provisioner_support import connect

from sendblue_lines import (
    DailyLimitReachedError,
    LinesClient,
    Provisioner,
    SQLiteJournal,
)
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

#: How long each confirm takes while the room is held.
SLOW = 0.6


@pytest.fixture
async def client(sendblue_sandbox: Sandbox[ManualClock]) -> AsyncIterator[LinesClient]:
    """A client of the sandbox's default account."""
    async with connect(sendblue_sandbox, timeout=5.0) as c:
        yield c


async def test_a_full_window_is_the_servers_count_with_when_it_frees(
    client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """The window is full by the server's count: retry when its oldest leaves."""
    sendblue_sandbox.account.daily_limit = 1
    provisioner = Provisioner(client)
    await provisioner.provision()
    with pytest.raises(DailyLimitReachedError) as raised:
        await provisioner.provision()
    error = raised.value
    assert error.refused_by == "server"
    [charge] = sendblue_sandbox.ledger
    assert error.next_available_at is not None
    # The contract's timestamps have millisecond precision.
    late = error.next_available_at - (charge.charged_at + timedelta(hours=24))
    assert abs(late) < timedelta(milliseconds=1)
    assert "according to GET /accounts/limits" in str(error)


async def test_purchases_in_flight_here_refuse_until_they_settle(
    client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """Room held by this Provisioner's confirms in flight: retry when they settle.

    The limits read still shows the whole room; the refusal says that the
    purchases in flight hold it, not the limits, and gives no retry time
    since they may yet buy nothing.
    """
    sendblue_sandbox.account.daily_limit = 2
    sendblue_sandbox.inject("confirm", Fault.delay(SLOW), times=2)
    provisioner = Provisioner(client)
    flights = [asyncio.ensure_future(provisioner.provision()) for _ in range(2)]
    await sendblue_sandbox.wait_for_requests("confirm", 2)
    with pytest.raises(DailyLimitReachedError) as raised:
        await provisioner.provision()
    error = raised.value
    assert error.refused_by == "in_flight"
    assert error.next_available_at is None
    assert error.limits.daily.remaining == 2
    assert "2 purchase(s) in flight here" in str(error)
    assert "retry when the purchases in flight settle" in str(error)
    assert "according to GET /accounts/limits" not in str(error)
    await asyncio.gather(*flights)
    with pytest.raises(DailyLimitReachedError) as again:
        await provisioner.provision()
    assert again.value.refused_by == "server"
    assert again.value.next_available_at is not None


async def test_another_processes_purchases_in_the_journal_refuse(
    client: LinesClient, sendblue_sandbox: Sandbox[ManualClock], tmp_path: Path
) -> None:
    """Room held by the purchases another process has in flight: the journal says so.

    Two Provisioners with a journal each on one file stand for two
    processes; the second's limits read shows room, the journal counts the
    first's open purchases, and the refusal names the journal.
    """
    sendblue_sandbox.account.daily_limit = 2
    sendblue_sandbox.inject("confirm", Fault.delay(SLOW), times=2)
    path = tmp_path / "journal.sqlite3"
    async with SQLiteJournal(path) as theirs, SQLiteJournal(path) as mine:
        other = Provisioner(client, journal=theirs)
        flights = [asyncio.ensure_future(other.provision()) for _ in range(2)]
        await sendblue_sandbox.wait_for_requests("confirm", 2)
        me = Provisioner(client, journal=mine)
        with pytest.raises(DailyLimitReachedError) as raised:
            await me.provision()
        result = await me.provision_many(2)
        await asyncio.gather(*flights)
    error = raised.value
    assert error.refused_by == "journal"
    assert error.next_available_at is None
    assert "other processes sharing the journal" in str(error)
    assert "retry when the purchases in flight settle" in str(error)
    assert result.lines == []
    assert result.not_attempted == 2
    assert isinstance(result.stopped_by, DailyLimitReachedError)
    assert result.stopped_by.refused_by == "journal"
    assert sendblue_sandbox.counters["confirm"].requests == 2
