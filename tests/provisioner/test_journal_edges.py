"""Money on record at the journal's edges, in real processes on both real stores.

Each purchase here runs in a process of its own (`purchase_worker.py`), as
a replica would, against a server on 127.0.0.1, and the test reads the
journal the process left: a token a server repeats, a NUL in a server's
message, and a replica that buys right after another one did.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from crash_support import (
    child_env,
    credentials_env,
    fleet_workers,
    open_spec,
    run_purchase,
)

from sendblue_lines import JournalError, LinesClient, Provisioner
from sendblue_lines.journal import default_owner
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the journal's owners are POSIX processes"
)

KEY_ID = "key-id-edges"
SECRET = "edges-secret-0123456789"
REPEATED = "lpv_repeated_token_0123456789"


@contextlib.asynccontextmanager
async def repeating_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A server whose every preview hands out the same token.

    The first confirm of it buys after half a second; any later one is
    refused with 410, as a spent token is. Yields its URL and the statuses
    its confirms were answered with.
    """
    answered: list[str] = []

    async def limits(request: web.Request) -> web.Response:
        window = {"limit": 10, "used": 0, "remaining": 10, "next_available_at": None}
        return web.json_response(
            {"status": "OK", "limits": {"api_provision_daily": window}}
        )

    async def preview(request: web.Request) -> web.Response:
        now = datetime.now(timezone.utc)
        expires = (now + timedelta(minutes=10)).isoformat(timespec="milliseconds")
        return web.json_response(
            {"status": "OK", "preview_token": REPEATED, "expires_at": expires},
            headers={"Date": format_datetime(now, usegmt=True)},
        )

    async def confirm(request: web.Request) -> web.Response:
        if answered:
            answered.append("410")
            return web.json_response(
                {"status": "ERROR", "error": "token_expired", "message": "used"},
                status=410,
            )
        answered.append("200")
        await asyncio.sleep(0.5)
        return web.json_response(
            {
                "status": "OK",
                "phone_number": "+14155550001",
                "worker_id": "worker_repeat",
                "subscription_id": "sub_repeat",
            }
        )

    app = web.Application()
    app.router.add_get("/accounts/limits", limits)
    app.router.add_post("/accounts/lines/provision-preview", preview)
    app.router.add_post("/accounts/lines/provision-confirm", confirm)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}", answered
    finally:
        await runner.cleanup()


async def entries_of(spec: dict[str, Any], account: str) -> list[Any]:
    async with open_spec(spec) as journal:
        return await journal.entries(account)


async def test_a_repeated_token_never_overwrites_the_live_purchase(
    spec: dict[str, Any],
) -> None:
    """A token repeated while its first purchase confirms: refused, and the first kept.

    The second slot's intent is refused (the token is in the journal), its
    confirm never sent, and its cleanup leaves the first purchase's entry
    alone: that purchase bought, and its entry says so.
    """
    async with repeating_server() as (url, answered):
        order = {"action": "many", "count": 2, "concurrency": 2}
        report = await run_purchase(url, spec, order, credentials_env(KEY_ID, SECRET))
    assert report["lines"] == ["+14155550001"]
    [refused] = report["errors"]
    assert refused["type"] == "JournalError"
    assert "already in the journal" in refused["message"]
    assert answered == ["200"]  # the repeated token was never sent again
    [entry] = await entries_of(spec, KEY_ID)
    assert (entry.preview_token, entry.state) == (REPEATED, "bought")
    assert entry.line is not None
    assert entry.line.worker_id == "worker_repeat"


async def test_a_nul_in_a_servers_message_is_on_record_and_in_the_error(
    spec: dict[str, Any], sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A provisioning failure whose message holds a NUL is recorded, facts and all.

    PostgreSQL cannot store a NUL: the journal writes it escaped rather than
    failing the write, so the charge is on record as provisioning_failed
    (never pending, later unknown), naming its subscription.
    """
    message = "subscription sub_nul\u0000 created, line not provisioned"
    body = {"status": "ERROR", "error": "provisioning_failed", "message": message}
    sendblue_sandbox.inject("confirm", Fault.respond(500, body))
    env = child_env(sendblue_sandbox)
    report = await run_purchase(sendblue_sandbox.url, spec, {"action": "one"}, env)
    [error] = report["errors"]
    assert error["type"] == "ProvisioningFailedError"
    assert "sub_nul\u0000" in error["message"]  # the caller's error is untouched
    [entry] = await entries_of(spec, sendblue_sandbox.api_key_id)
    assert entry.state == "provisioning_failed"
    assert entry.error_code == "provisioning_failed"
    assert entry.message is not None
    assert "sub_nul\\u0000 created" in entry.message
    assert "\u0000" not in entry.message


async def test_a_second_replica_buys_at_once_after_another_bought(
    spec: dict[str, Any], sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A replica's purchase settled before another's limits read is not counted twice.

    Two replicas run, each a process with its journal open; the account
    allows 2 a day. One buys a line, and the other, told the moment that
    answer comes, buys the second at once: its limits read counts the first
    line, and the journal does not count it again (no wall-clock margin). A
    third purchase is refused by the server's own count.
    """
    sendblue_sandbox.account.daily_limit = 2
    async with fleet_workers() as start:
        first = await start(sendblue_sandbox, spec, "one")
        second = await start(sendblue_sandbox, spec, "one")
        bought = [await first.ask("buy"), await second.ask("buy")]
        refused = await first.ask("buy")
    assert [len(report["lines"]) for report in bought] == [1, 1], bought
    assert refused["errors"] == ["DailyLimitReachedError"]
    assert sendblue_sandbox.counters["confirm"].requests == 2
    states = [e.state for e in await entries_of(spec, sendblue_sandbox.api_key_id)]
    assert states == ["bought", "bought"]


async def test_a_repeated_token_never_clears_an_earlier_unknown(
    spec: dict[str, Any],
) -> None:
    """A token repeated after its purchase ended unknown: the unknown stays unknown.

    The refused intent wrote nothing; its cleanup must not record "certainly
    no charge" over this process's own earlier unknown, which may have
    charged (the same owner, so the owner check alone would let it).
    """
    async with open_spec(spec) as journal:
        [slot] = await journal.reserve(KEY_ID, default_owner(), 1, None)
        await journal.record_intent(slot, REPEATED, datetime.now(timezone.utc))
        await journal.record_outcome(REPEATED, "unknown", message="answer lost")
        async with (
            repeating_server() as (url, answered),
            LinesClient(KEY_ID, SECRET, base_url=url) as client,
        ):
            with pytest.raises(JournalError) as raised:
                await Provisioner(client, journal=journal).provision()
        [entry] = await journal.entries(KEY_ID)
    assert (entry.state, entry.message) == ("unknown", "answer lost")
    assert answered == []  # the repeated token was never sent
    assert "already in the journal" in str(raised.value)
    assert raised.value.refused
