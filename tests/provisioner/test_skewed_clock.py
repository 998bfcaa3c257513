"""A Provisioner whose wall clock is off from the server's still buys exactly one line.

The server judges expiry; the client counts the validity it granted on the
monotonic clock (see `tests/test_clock_skew.py` for the client's side). The
`skew` fixture (tests/conftest.py) moves the client's wall clock by -15 to
+15 minutes; the sandbox on 127.0.0.1 keeps the true time.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate

import pytest
from foundation_support import OutrunFirst
from provisioner_support import requests
from scripted_api import ScriptedApi

from sendblue_lines import (
    LinesClient,
    OutcomeUnknownError,
    Provisioner,
    ProvisionOutcome,
)
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox


def bought(sandbox: Sandbox[ManualClock]) -> list[str]:
    return [c.preview_token for c in sandbox.ledger if c.outcome == "provisioned"]


async def test_one_provision_buys_exactly_one_line(
    skew: float, sandbox_client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """provision() previews once, confirms once and buys one line, whatever the skew."""
    del skew
    outcomes: list[ProvisionOutcome] = []
    line = await Provisioner(sandbox_client, on_outcome=outcomes.append).provision()
    assert [c.phone_number for c in sendblue_sandbox.ledger] == [line.phone_number]
    assert requests(sendblue_sandbox, "preview") == 1
    assert requests(sendblue_sandbox, "confirm") == 1
    assert [o.ok for o in outcomes] == [True]


async def test_a_batch_buys_one_line_per_slot(
    skew: float, sandbox_client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """A batch of 3 makes 3 previews, 3 confirms and 3 charges, no unknown outcome."""
    del skew
    result = await Provisioner(sandbox_client).provision_many(3, concurrency=2)
    assert len(result.lines) == 3
    assert result.errors == []
    assert len(sendblue_sandbox.ledger) == 3
    assert requests(sendblue_sandbox, "preview") == 3
    assert requests(sendblue_sandbox, "confirm") == 3


async def test_provision_resends_after_an_unclear_confirm(
    skew: float, sandbox_client: LinesClient, sendblue_sandbox: Sandbox[ManualClock]
) -> None:
    """One preview, two sends of its token after a 502, one line.

    With the wall clock 11 or 15 minutes ahead an old check thought the
    token dead and reported an unknown outcome instead of resending.
    """
    del skew
    sendblue_sandbox.inject("confirm", Fault.proxy_502())
    try:
        await Provisioner(sandbox_client).provision()
    except OutcomeUnknownError:  # pragma: no cover - the failure this test catches
        pytest.fail("a skewed clock turned a resendable token into an unknown")
    assert len(bought(sendblue_sandbox)) == 1
    assert requests(sendblue_sandbox, "preview") == 1
    assert requests(sendblue_sandbox, "confirm") == 2


async def test_a_real_410_re_previews_once(
    skew: float,
    sandbox_client: LinesClient,
    outrun_first: OutrunFirst,
    sendblue_sandbox: Sandbox[ManualClock],
) -> None:
    """Only a token the server found expired is replaced: one more preview, one line."""
    del skew
    line = await Provisioner(sandbox_client, approve=outrun_first).provision()
    assert len(outrun_first.asked) == 2
    assert bought(sendblue_sandbox) == [outrun_first.asked[1]]
    assert [c.phone_number for c in sendblue_sandbox.ledger] == [line.phone_number]
    assert sendblue_sandbox.counters["confirm"].statuses[410] == 1
    assert requests(sendblue_sandbox, "preview") == 2


@pytest.mark.parametrize(
    "date",
    [
        pytest.param(lambda: None, id="no-date-header"),
        pytest.param(lambda: formatdate(usegmt=True), id="date-header"),
        pytest.param(lambda: "not a date", id="garbage-date-header"),
    ],
)
async def test_skewed_client_sends_the_token_with_or_without_a_date_header(
    skew: float, client: LinesClient, api: ScriptedApi, date: Callable[[], str | None]
) -> None:
    """Whatever the server's Date header, a fresh token is sent once and buys a line."""
    del skew
    api.date = date
    api.fail("limits", "404")
    [token] = api.preview()
    api.confirm()
    line = await Provisioner(client).provision()
    assert line.phone_number == "+14155550001"
    assert api.names() == ["limits", "preview", "confirm"]
    assert api.confirmed_tokens() == [token]
