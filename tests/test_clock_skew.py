"""A client whose wall clock is off from the server's still judges its tokens right.

The server judges expiry. The client's own checks (the Provisioner's "an
expired token is never sent", `confirm()`'s "resend the same token while it
is valid") count the validity the server granted (`expires_at` against the
server's `Date` header) on the monotonic clock from the moment the preview
arrived, so a clock that is 15 minutes off, either way, changes nothing.

The client's wall clock is skewed through its one seam, `sendblue_lines._clock`
(the `skew` fixture of tests/conftest.py); the sandbox on 127.0.0.1 keeps the
true time and dates its answers with it. The Provisioner's side is in
tests/provisioner/test_skewed_clock.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from aiohttp import web
from foundation_support import CONFIRM, LIMITS, PREVIEW, load, respond, serve
from scripted_api import iso

import sendblue_lines._clock
from sendblue_lines import LinesClient, Preview, Provisioner, RetryPolicy
from sendblue_lines.models import TOKEN_VALIDITY_SECONDS, granted_validity
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


@pytest.fixture
async def client(
    sendblue_sandbox: Sandbox[ManualClock], skew: float
) -> AsyncIterator[LinesClient]:
    del skew  # only its patch matters, and it must be in place first
    async with LinesClient(
        sendblue_sandbox.api_key_id,
        sendblue_sandbox.api_secret_key,
        base_url=sendblue_sandbox.url,
        timeout=2.0,
        retry=FAST,
    ) as c:
        yield c


def requests(sandbox: Sandbox[Any], endpoint: str) -> int:
    return sandbox.counters[endpoint].requests


def bought(sandbox: Sandbox[Any]) -> list[str]:
    return [c.preview_token for c in sandbox.ledger if c.outcome == "provisioned"]


async def test_the_skew_is_real(client: LinesClient, skew: float) -> None:
    """The seam really moves the client's clock, by the fixture's minutes."""
    del client
    off = sendblue_lines._clock.now() - datetime.now(timezone.utc)
    assert abs(off.total_seconds() - skew) < 5


async def test_a_fresh_preview_is_not_expired_and_expires_on_time(
    client: LinesClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after preview the token is valid; 10 monotonic minutes later it is not."""
    preview = await client.preview()
    assert not preview.expired(margin=5.0)
    later = sendblue_lines._clock.monotonic() + TOKEN_VALIDITY_SECONDS + 1
    monkeypatch.setattr(sendblue_lines._clock, "monotonic", lambda: later)
    assert preview.expired()


async def test_an_unclear_confirm_is_resent_with_the_same_token(
    client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A 502 on the first send is resent with the same token and buys one line.

    With the wall clock 11 or 15 minutes ahead the old check thought the
    token dead and reported an unknown outcome instead of resending.
    """
    sendblue_sandbox.inject("confirm", Fault.proxy_502())
    preview = await client.preview()
    line = await client.confirm(preview)
    assert [c.phone_number for c in sendblue_sandbox.ledger] == [line.phone_number]
    assert bought(sendblue_sandbox) == [preview.token]
    assert requests(sendblue_sandbox, "confirm") == 2


# -- the validity, from the Date header ----------------------------------------


def _at(seconds: float) -> datetime:
    return datetime(2026, 5, 18, 14, 20, tzinfo=timezone.utc) + timedelta(
        seconds=seconds
    )


HTTP_NOW = "Mon, 18 May 2026 14:20:00 GMT"
EXPIRES = _at(600)


@pytest.mark.parametrize(
    ("date", "local_offset", "expected"),
    [
        pytest.param(HTTP_NOW, 0.4, 599.6, id="clocks-agree-millisecond-reading"),
        pytest.param(HTTP_NOW, -1.5, 601.5, id="clocks-agree-within-resolution"),
        pytest.param(HTTP_NOW, 900, 600, id="local-15min-ahead"),
        pytest.param(HTTP_NOW, -900, 600, id="local-15min-behind"),
        pytest.param(HTTP_NOW, 660, 600, id="local-11min-ahead"),
        pytest.param(None, 900, 600, id="no-date-contract-default"),
        pytest.param("", 0, 600, id="empty-date"),
        pytest.param("yesterday", 0, 600, id="unparseable-date"),
        pytest.param("Mon, 18 May 2026 12:00:00 GMT", 0, 600, id="grants-over-an-hour"),
        pytest.param(
            "Mon, 18 May 2026 14:30:05 GMT", 605, 600, id="nothing-granted-clocks-agree"
        ),
        pytest.param("Mon, 18 May 2026 14:35:00 GMT", 0, 600, id="date-from-elsewhere"),
        pytest.param("Mon, 18 May 2026 14:20:00 -0000", 300, 600, id="minus-zero-zone"),
        pytest.param("Mon, 18 May 2026 16:20:00 +0200", 300, 600, id="other-zone"),
    ],
)
def test_the_validity_granted_comes_from_the_servers_own_clock(
    date: str | None, local_offset: float, expected: float
) -> None:
    """expires_at minus the server's Date, the local reading only when clocks agree."""
    validity = granted_validity(EXPIRES, date, _at(local_offset))
    assert validity == pytest.approx(expected)


def test_a_hand_built_preview_is_judged_by_the_wall_clock() -> None:
    """Without an answer to measure from, expired() compares expires_at with now."""
    now = datetime.now(timezone.utc)
    assert Preview(token="lpv_x", expires_at=now - timedelta(seconds=1)).expired()
    assert not Preview(token="lpv_x", expires_at=now + timedelta(minutes=5)).expired()


async def test_the_sandbox_dates_its_answers_with_its_own_clock(
    sendblue_sandbox_factory: Callable[..., Any],
) -> None:
    """A sandbox whose clock was moved sends that time as Date, not the machine's."""
    start = datetime(2031, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    sandbox = await sendblue_sandbox_factory(clock=ManualClock(start))
    async with LinesClient(
        sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url
    ) as client:
        reply = await client._transport.send(
            "POST", "/accounts/lines/provision-preview"
        )
    assert reply.date is not None
    assert parsedate_to_datetime(reply.date) == start
    assert reply.data["expires_at"] == "2031-01-02T03:14:05.000Z"


async def _preview_dated_by_a_clock_11_minutes_behind(
    request: web.Request,
) -> web.StreamResponse:
    # aiohttp dates the answer with the true time; the token was dated by a
    # clock 11 minutes behind, so `expires_at` is a minute before `Date`.
    del request
    issued = datetime.now(timezone.utc) - timedelta(minutes=11)
    expires_at = iso(issued + timedelta(seconds=TOKEN_VALIDITY_SECONDS))
    return web.json_response(
        {"status": "OK", "preview_token": "lpv_behind", "expires_at": expires_at}
    )


async def test_a_preview_granting_nothing_is_sent_and_buys() -> None:
    """expires_at before a correct Date: the token is sent once and the line bought.

    The server dated its token 11 minutes behind its `Date`; judged by the
    contract's 10 minutes from its arrival, the token is confirmed on the
    first preview instead of being dropped as expired three times over. A
    real server on 127.0.0.1, since the sandbox dates both from one clock.
    """
    routes = {
        LIMITS: respond(200, load("limits_canonical")),
        PREVIEW: _preview_dated_by_a_clock_11_minutes_behind,
        CONFIRM: respond(200, load("confirm_ok")),
    }
    async with (
        serve(routes) as server,
        LinesClient("key-id", "behind-secret", base_url=server.url) as client,
    ):
        line = await Provisioner(client).provision()
    assert line.phone_number == load("confirm_ok")["phone_number"]
    assert server.paths() == [LIMITS, PREVIEW, CONFIRM]
    assert server.seen[-1].json() == {"preview_token": "lpv_behind"}
