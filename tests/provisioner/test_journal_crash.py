"""A real process killed with SIGKILL at each point around a confirm; reconcile after.

Issue 12's crash proof: a child (`crash_child.py`) buys one line through a
journaled Provisioner and dies by SIGKILL (a) before the intent is
committed, (b) after it, before the send, (c) after the send, before the
answer, (d) after the answer, before the outcome is committed. Then this
process reconciles. Whatever the point: every charge in the sandbox's
ledger is in the journal as bought, provisioning_failed or unknown naming
its token, none is doubled (one preview, at most one charge), and no entry
is left pending.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import anyio
import pytest
from crash_support import PATIENCE, child_command, child_env, open_spec
from provisioner_support import connect

from sendblue_lines import OutcomeUnknownError, Provisioner, ProvisionOutcome
from sendblue_lines.journal import JournalEntry, default_owner
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="SIGKILL and /proc are POSIX"
)

#: Where the child dies, in the order a purchase meets them.
POINTS = ["before_intent", "before_send", "before_answer", "before_outcome"]
#: What the journal says of the one charge (or none) after reconcile, by point.
SETTLED = {
    # Nothing was written and nothing sent: no entry, no charge.
    "before_intent": None,
    # The intent is on record, the confirm never left and its token is still
    # valid: reconcile's resend of the same token is the purchase.
    "before_send": "bought",
    # The confirm bought a line the dead process never recorded: the resend
    # is refused (410, the token is spent), which proves nothing, so unknown
    # with the line as evidence.
    "before_answer": "unknown",
    "before_outcome": "unknown",
}


async def _kill_child_at(
    sandbox: Sandbox[Any], spec: dict[str, Any], point: str, count: int = 1
) -> None:
    """Run the child buying `count` lines until it dies at `point`; reap it."""
    child_spec = dict(spec)
    if spec["kind"] == "postgres":
        # A dead worker's lease runs out; here a millisecond after its last write.
        child_spec["options"] = {"lease": 0.001}
    if point == "before_answer":
        # The confirm is held long enough to kill its sender; it commits afterwards.
        sandbox.inject("confirm", Fault.delay(0.5), times=count)
    child = await anyio.open_process(
        child_command("crash_child.py", sandbox.url, child_spec, point, count),
        env=child_env(sandbox),
        stdout=None,
        stderr=None,
    )
    async with child:
        try:
            with anyio.fail_after(PATIENCE):
                if point == "before_answer":
                    await sandbox.wait_for_requests("confirm", count, within=PATIENCE)
                    child.send_signal(signal.SIGKILL)
                await child.wait()
        finally:
            if child.returncode is None:
                child.kill()
                with anyio.CancelScope(shield=True), anyio.fail_after(30):
                    await child.wait()
    assert child.returncode == -signal.SIGKILL
    await sandbox.wait_idle(within=30)


async def _reconcile(
    sandbox: Sandbox[Any], spec: dict[str, Any]
) -> tuple[list[JournalEntry], list[ProvisionOutcome], list[JournalEntry]]:
    """Reconcile in this process: (entries before, outcomes, entries after)."""
    async with open_spec(spec) as journal:
        before = await journal.entries()
        async with connect(sandbox, timeout=5.0) as client:
            provisioner = Provisioner(client, journal=journal)
            outcomes = await provisioner.reconcile()
            assert await provisioner.reconcile() == []  # nothing left to settle
        after = await journal.entries()
        # Nothing of the dead process holds room: the whole window is free.
        free = await journal.reserve(sandbox.api_key_id, default_owner(), 3, 3)
        assert len(free) == 3
        await journal.release(free)
    return before, outcomes, after


def _check_every_charge_is_on_record(
    sandbox: Sandbox[Any], entries: list[JournalEntry], previews: int = 1
) -> None:
    """Every charge named by its token, settled; none pending; none doubled."""
    assert [e for e in entries if e.state == "pending"] == []
    assert all(e.owner == default_owner() for e in entries)  # settled by us
    recorded = {e.preview_token: e for e in entries}
    for charge in sandbox.ledger:
        entry = recorded[charge.preview_token]
        assert entry.state in ("bought", "provisioning_failed", "unknown")
        if entry.state == "bought":
            assert entry.line is not None
            assert entry.line.worker_id == charge.worker_id
        if entry.state == "unknown":
            assert charge.worker_id in [item["worker_id"] for item in entry.evidence]
    tokens = [charge.preview_token for charge in sandbox.ledger]
    assert len(tokens) == len(set(tokens)) <= previews
    # Settled with the same tokens: no preview but the child's.
    assert sandbox.counters["preview"].requests == previews


@pytest.mark.parametrize("point", POINTS)
async def test_a_purchase_killed_at_any_point_is_settled_by_reconcile(
    sendblue_sandbox: Sandbox[ManualClock], spec: dict[str, Any], point: str
) -> None:
    sandbox = sendblue_sandbox
    await _kill_child_at(sandbox, spec, point)
    sent = sandbox.counters["confirm"].requests
    charged = list(sandbox.ledger)

    before, outcomes, after = await _reconcile(sandbox, spec)

    _check_every_charge_is_on_record(sandbox, after)
    expected = SETTLED[point]
    if expected is None:
        assert (before, outcomes, after, sent, sandbox.ledger) == ([], [], [], 0, [])
        return
    [intent] = before
    [entry] = after
    [charge] = sandbox.ledger
    assert intent.state == "pending"
    assert entry.preview_token == intent.preview_token == charge.preview_token
    assert entry.state == expected
    # Settled within the token's ten minutes.
    assert entry.settled_at is not None
    assert entry.settled_at <= entry.expires_at
    [outcome] = outcomes
    if expected == "bought":
        # The confirm never left: nothing charged until reconcile's one send.
        assert (sent, charged) == (0, [])
        assert outcome.line == entry.line
        assert sandbox.counters["confirm"].requests == 1
    else:
        # The child's confirm charged; reconcile's resend was refused.
        assert (sent, charged) == (1, [charge])
        assert isinstance(outcome.error, OutcomeUnknownError)
        assert outcome.error.preview_token == charge.preview_token
        assert sandbox.counters["confirm"].requests == 2
        assert sandbox.counters["confirm"].statuses[410] == 1


async def test_an_intent_whose_token_expired_before_reconcile_stays_unknown(
    sendblue_sandbox: Sandbox[ManualClock], spec: dict[str, Any]
) -> None:
    """Killed before the send, reconciled after the token's ten minutes.

    The journal cannot know the confirm never left, and the resend's 410
    proves nothing: the entry stays unknown, with no line as evidence; and
    no new preview is run for it.
    """
    sandbox = sendblue_sandbox
    await _kill_child_at(sandbox, spec, "before_send")
    sandbox.clock.advance(minutes=11)

    _, outcomes, after = await _reconcile(sandbox, spec)

    [entry] = after
    assert entry.state == "unknown"
    assert entry.evidence == ()
    [outcome] = outcomes
    assert isinstance(outcome.error, OutcomeUnknownError)
    assert sandbox.ledger == []
    assert sandbox.counters["preview"].requests == 1
    assert sandbox.counters["confirm"].statuses[410] == 1


async def test_a_batch_killed_with_its_confirms_in_flight_is_settled_by_reconcile(
    sendblue_sandbox: Sandbox[ManualClock], spec: dict[str, Any]
) -> None:
    """Three confirms in flight at the kill: three charges, three unknowns, no more."""
    sandbox = sendblue_sandbox
    await _kill_child_at(sandbox, spec, "before_answer", count=3)

    before, outcomes, after = await _reconcile(sandbox, spec)

    _check_every_charge_is_on_record(sandbox, after, previews=3)
    charged = sorted(charge.preview_token for charge in sandbox.ledger)
    assert len(charged) == 3
    assert sorted(e.preview_token for e in before) == charged
    assert {e.state for e in before} == {"pending"}
    assert {e.state for e in after} == {"unknown"}
    tokens = [getattr(o.error, "preview_token", None) for o in outcomes]
    assert sorted(str(token) for token in tokens) == charged
    assert sandbox.counters["confirm"].requests == 3 + 3
    assert sandbox.counters["confirm"].statuses[410] == 3
