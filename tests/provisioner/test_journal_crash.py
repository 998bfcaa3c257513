"""A real process killed with SIGKILL mid-confirm; reconcile in another one."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from provisioner_support import connect

from sendblue_lines import OutcomeUnknownError, Provisioner, SQLiteJournal
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

CHILD = Path(__file__).with_name("crash_child.py")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and /proc are POSIX")
async def test_a_purchase_killed_mid_confirm_is_settled_by_reconcile(
    sendblue_sandbox: Sandbox[ManualClock], tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite3"
    # The confirm is held long enough to kill its sender; it commits afterwards.
    sendblue_sandbox.inject("confirm", Fault.delay(0.5))
    env = dict(
        os.environ,
        CRASH_CHILD_KEY_ID=sendblue_sandbox.api_key_id,
        CRASH_CHILD_SECRET=sendblue_sandbox.api_secret_key,
    )
    child = await anyio.open_process(
        [sys.executable, str(CHILD), sendblue_sandbox.url, str(path)],
        env=env,
        stdout=None,
        stderr=None,
    )
    async with child:
        try:
            await sendblue_sandbox.wait_for_requests("confirm", within=60)
        finally:
            child.send_signal(signal.SIGKILL)
            with anyio.fail_after(30):
                await child.wait()
    assert child.returncode == -signal.SIGKILL
    await sendblue_sandbox.wait_idle()
    [charge] = sendblue_sandbox.ledger  # the killed confirm did buy

    async with SQLiteJournal(path) as journal:
        [before] = await journal.entries()
        assert (before.preview_token, before.state) == (charge.preview_token, "pending")
        async with connect(sendblue_sandbox, timeout=2.0) as client:
            [outcome] = await Provisioner(client, journal=journal).reconcile()
        [after] = await journal.entries()
    assert isinstance(outcome.error, OutcomeUnknownError)
    assert (after.preview_token, after.state) == (charge.preview_token, "unknown")
    assert [item["worker_id"] for item in after.evidence] == [charge.worker_id]
    # Settled with the same token: one preview in all, the child's.
    assert sendblue_sandbox.counters["preview"].requests == 1
    assert len(sendblue_sandbox.ledger) == 1
