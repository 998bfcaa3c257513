"""Unknown limits are said to be unknown: the CLI never claims that all fits.

The limits endpoint's body is an assumption of the contract; when the
server answers a shape the SDK does not know, a 404, or a body that cannot
be read, `limits`, `plan` (text and JSON) and `provision`'s announcement
say the limits are unknown and the server decides. The same holds, window
by window, when only part of the limits is known. `main()` runs in a
worker thread while the test's loop serves the sandbox.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sendblue_lines.sandbox import Fault, Sandbox


def _shape(body: Any):
    def answer(sandbox: Sandbox[Any]) -> None:
        sandbox.limits_shape = lambda snapshot: body

    return answer


def _fault(fault: Fault):
    def answer(sandbox: Sandbox[Any]) -> None:
        sandbox.inject("limits", fault, times=20)

    return answer


UNKNOWN = [
    pytest.param(_shape({"status": "OK", "quota": 7}), id="unknown-shape"),
    pytest.param(_shape({"status": "OK", "limits": []}), id="limits-a-list"),
    pytest.param(_shape({"status": "OK", "limits": {"other": 1}}), id="other-keys"),
    pytest.param(_fault(Fault.respond(404, {"status": "ERROR"})), id="404"),
    pytest.param(_fault(Fault.respond(405, "no")), id="405"),
    pytest.param(_fault(Fault.malformed()), id="not-json"),
    pytest.param(_fault(Fault.raw(200, b"\xff\xfe")), id="not-utf8"),
    pytest.param(_fault(Fault.html()), id="html"),
]

ALL_FIT = ("All ", "can be bought now.")


def claims_all_fit(text: str) -> bool:
    return any(
        line.startswith(ALL_FIT[0]) and ALL_FIT[1] in line for line in text.splitlines()
    )


@pytest.mark.parametrize("answer", UNKNOWN)
async def test_plan_says_the_limits_are_unknown(cli, sendblue_sandbox, answer):
    """`plan 5`: the limits are unknown and the server decides; never "all fit"."""
    answer(sendblue_sandbox)
    result = await cli("plan", "5")
    assert result.code == 0
    assert not claims_all_fit(result.out)
    assert "can be bought now" not in result.out
    assert "The limits are unknown" in result.out
    assert "the server decides" in result.out
    assert sendblue_sandbox.counters["preview"].requests == 0


@pytest.mark.parametrize("answer", UNKNOWN)
async def test_plan_json_has_no_allowed_count(cli, sendblue_sandbox, answer):
    """`plan 5 --json`: `allowed` is null when the limits do not say it."""
    answer(sendblue_sandbox)
    data = json.loads((await cli("plan", "5", "--json")).out)
    assert data == {
        "requested": 5,
        "allowed": None,
        "binding": None,
        "next_available_at": None,
    }


@pytest.mark.parametrize("answer", UNKNOWN)
async def test_limits_says_unknown_and_why(cli, sendblue_sandbox, answer):
    """`limits` says the limits are unknown (exit 0), and --json says known: false."""
    answer(sendblue_sandbox)
    text = await cli("limits")
    assert text.code == 0
    assert text.out.startswith("Limits unknown: ")
    assert "the server still enforces them" in text.out
    data = json.loads((await cli("limits", "--json")).out)
    assert data == {"known": False, "daily": None, "monthly": None}


@pytest.mark.parametrize("answer", UNKNOWN)
async def test_provision_announces_unknown_limits(cli, sendblue_sandbox, answer):
    """`provision --count 2`: the announcement says the server decides; it buys."""
    answer(sendblue_sandbox)
    result = await cli("provision", "--count", "2", "--yes")
    [notice] = [x for x in result.err.splitlines() if x.startswith("About to buy")]
    assert "The limits are unknown" in notice
    assert "the server decides" in notice
    assert not claims_all_fit(result.err)
    assert result.code == 0
    assert len(sendblue_sandbox.ledger) == 2


async def test_an_account_refusal_of_the_limits_is_still_an_error(
    cli, sendblue_sandbox, monkeypatch
):
    """A 401 from the limits read is an error (exit 2), not "unknown"."""
    monkeypatch.setenv("SENDBLUE_API_SECRET_KEY", "a-wrong-secret-for-limits")
    for argv in (["limits"], ["plan", "2"]):
        result = await cli(*argv)
        assert result.code == 2
        assert "rejected the credentials" in result.err
        assert "unknown" not in result.out + result.err


PARTIAL = [
    pytest.param(
        {
            "status": "OK",
            "limits": {"api_provision_daily": 3, "api_provision_monthly": 10},
        },
        "what is left of the daily window is unknown and what is left of the "
        "monthly window is unknown",
        id="flat-without-usage",
    ),
    pytest.param(
        {
            "status": "OK",
            "limits": {
                "api_provision_daily": {"limit": 3, "used": 0, "remaining": 3},
            },
        },
        "the monthly window is unknown",
        id="daily-only",
    ),
]


@pytest.mark.parametrize(("body", "says"), PARTIAL)
async def test_partly_known_limits_give_an_upper_bound(
    cli, sendblue_sandbox, body, says
):
    """With a window or its usage unknown, `plan` gives "at most", never "all fit"."""
    sendblue_sandbox.limits_shape = lambda snapshot: body
    small = await cli("plan", "2")
    assert not claims_all_fit(small.out)
    assert "At most 2 of 2 line(s) can be bought now" in small.out
    assert says in small.out
    assert "the server decides" in small.out
    large = await cli("plan", "5")
    assert "At most 3 of 5 line(s) can be bought now: the daily limit allows 3" in (
        large.out
    )
    data = json.loads((await cli("plan", "5", "--json")).out)
    assert (data["allowed"], data["binding"]) == (None, "daily")
    bought = await cli("provision", "--count", "2", "--yes")
    assert "the server decides" in bought.err
    assert bought.code == 0


async def test_known_limits_still_say_all_fit(cli):
    """With both windows known, `plan 2` on a fresh account says all fit."""
    result = await cli("plan", "2")
    assert "All 2 requested line(s) can be bought now." in result.out
    data = json.loads((await cli("plan", "2", "--json")).out)
    assert data["allowed"] == 2


async def test_a_full_window_is_certain_even_if_the_other_is_unknown(
    cli, sendblue_sandbox
):
    """A known window with nothing left says so, whatever the other says."""
    sendblue_sandbox.limits_shape = lambda snapshot: {
        "status": "OK",
        "limits": {"api_provision_daily": {"limit": 3, "used": 3, "remaining": 0}},
    }
    result = await cli("plan", "2", "--json")
    assert json.loads(result.out)["allowed"] == 0
    text = await cli("provision", "--count", "2", "--yes")
    assert text.code == 2
    assert "No line can be bought now: the daily limit is reached" in text.err
