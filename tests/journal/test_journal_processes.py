"""Invariant 8 with real processes: one reservation for all, one claimer per orphan."""

from __future__ import annotations

import contextlib
import json
import signal
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from journal_support import Store

from sendblue_lines.journal import default_owner

ACCOUNT = "key-id-fleet"
#: Every wait on a child is bounded by this many seconds.
PATIENCE = 120


async def _line(process: Process) -> str:
    """The child's next line; if it died first, fail with what it wrote to stderr."""
    assert process.stdout is not None
    data = b""
    try:
        while not data.endswith(b"\n"):
            data += await process.stdout.receive(1)
    except anyio.EndOfStream:
        assert process.stderr is not None
        why = b""
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
            while len(why) < 65536:
                why += await process.stderr.receive()
        pytest.fail(f"the worker ended after {data!r}; its stderr:\n{why.decode()}")
    return data.decode().strip()


async def _together(store: Store, action: str, count: int, **args: Any) -> list[Any]:
    """Start `count` workers, let them act at once, and return their results.

    Every worker stays alive until all have answered, so each is a live
    owner while the others reserve or claim.
    """
    processes = [
        await anyio.open_process(store.worker_command(action, **args))
        for _ in range(count)
    ]
    try:
        with anyio.fail_after(PATIENCE):
            for process in processes:
                assert await _line(process) == "ready"
            for process in processes:
                assert process.stdin is not None
                await process.stdin.send(b"go\n")
            results = [json.loads(await _line(process)) for process in processes]
            for process in processes:
                assert process.stdin is not None
                await process.stdin.send(b"exit\n")
            for process in processes:
                assert await process.wait() == 0
        return results
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.aclose()


async def _orphans(store: Store, count: int, prefix: str) -> list[str]:
    """A worker writes `count` intents and is killed with SIGKILL; return its tokens."""
    spec_args = {}
    if store.kind == "postgres":
        # Its lease runs out a millisecond after its last write, as a dead
        # worker's lease does after the lease time.
        spec_args = {"options": {"lease": 0.001}}
    command = store.worker_command(
        "intents", account=ACCOUNT, count=count, prefix=prefix
    )
    command[2] = json.dumps({**store.spec, **spec_args})
    process = await anyio.open_process(command)
    try:
        with anyio.fail_after(PATIENCE):
            assert await _line(process) == "ready"
            assert process.stdin is not None
            await process.stdin.send(b"go\n")
            tokens: list[str] = json.loads(await _line(process))
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
        return tokens
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


@pytest.mark.parametrize("room", [5, 11])
async def test_concurrent_processes_never_reserve_more_than_the_room(
    store: Store, room: int
) -> None:
    """Six processes asking 3 slots each at once get exactly min(room, 18) in all."""
    granted = await _together(store, "reserve", 6, account=ACCOUNT, wanted=3, room=room)
    assert sum(len(slots) for slots in granted) == min(room, 18)
    every = [slot for slots in granted for slot in slots]
    assert len(set(every)) == len(every)


async def test_each_orphan_is_claimed_by_exactly_one_process(store: Store) -> None:
    """Pending purchases of a killed worker go to one claimer each, none lost."""
    tokens = await _orphans(store, 12, "lpv_orphan_")
    claims = await _together(store, "claim", 5, account=ACCOUNT)
    claimed = Counter(token for batch in claims for token in batch)
    assert sorted(claimed) == sorted(tokens)
    assert set(claimed.values()) == {1}
    async with store.make() as journal:
        entries = await journal.entries(ACCOUNT)
        # The killed worker's unused slot was given back, not handed over.
        assert len(await journal.reserve(ACCOUNT, default_owner(), 20, 13)) == 1
    assert {entry.preview_token for entry in entries} == set(tokens)
    assert all(entry.state == "pending" for entry in entries)


async def test_a_live_owner_keeps_its_purchases(store: Store) -> None:
    """Nobody claims the pending purchase of an owner that is alive."""
    async with store.make() as journal:
        (slot,) = await journal.reserve(ACCOUNT, default_owner(), 1, None)
        await journal.record_intent(slot, "lpv_mine", _expiry())
        claims = await _together(store, "claim", 3, account=ACCOUNT)
        assert claims == [[], [], []]
        (entry,) = await journal.entries()
        assert entry.owner == default_owner()


def _expiry() -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=10)
