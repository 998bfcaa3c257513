"""`sendblue-lines` in-process: `main(argv)` against a `sendblue_sandbox`.

`main()` runs its own event loop (`asyncio.run`), so each call runs in a
worker thread while the test's loop keeps the sandbox serving. capsys
captures the thread's output too: it replaces `sys.stdout`/`sys.stderr` for
the whole process, and `main()` looks them up on each call.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest
from cli_support import free_the_window_before_the_batch, screen

from sendblue_lines.cli import main
from sendblue_lines.sandbox import Fault, Sandbox

LINE = re.compile(r"^\+1\d{10}\tworker_\w+\tsub_\w+$")


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def same_ms(wire: str, moment: datetime) -> bool:
    """An ISO 8601 time from the wire is `moment` at millisecond precision."""
    return abs(datetime.fromisoformat(wire) - moment) < timedelta(milliseconds=1)


def stamp(moment: datetime) -> str:
    """A time as the command's tables print it."""
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


# -- help -------------------------------------------------------------------------


def test_help_lists_every_command_the_exit_codes_and_the_variables(capsys):
    """--help names each command, every exit code and the environment variables."""
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    commands = ("limits", "plan", "preview", "provision", "history", "reconcile")
    for command in (*commands, "demo", "sandbox"):
        assert re.search(rf"^\s+{command}\s", text, re.MULTILINE), command
    codes = text.split("exit codes:")[1]
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^\s+{code}\s+\w", codes, re.MULTILINE), code
    for name in ("SENDBLUE_API_KEY_ID", "SENDBLUE_API_SECRET_KEY", "SENDBLUE_BASE_URL"):
        assert name in text
    assert "-v, --verbose" in text


def test_no_command_prints_the_help_and_exits_2(capsys):
    """Without a command the usage goes to stderr and the exit code is 2."""
    assert main([]) == 2
    assert "usage: sendblue-lines" in capsys.readouterr().err


def test_a_bad_count_is_a_usage_error(capsys):
    """A count below 1 is refused by the parser with exit code 2."""
    with pytest.raises(SystemExit) as exited:
        main(["provision", "--count", "0"])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


# -- limits and plan ------------------------------------------------------------


async def test_limits_table_shows_a_purchase(cli):
    """The table shows the default limits, one line used, and when its slot frees."""
    await cli.buy(1)
    [charge] = cli.sandbox.purchases()
    result = await cli("limits")
    assert result.code == 0
    assert result.err == ""
    header, daily, monthly = result.out.splitlines()
    assert header.split() == ["window", "limit", "used", "remaining", "next", "slot"]
    assert daily.split()[3:6] == ["3", "1", "2"]
    assert monthly.split()[3:6] == ["10", "1", "9"]
    assert daily.endswith(stamp(charge.charged_at + timedelta(hours=24)))
    assert monthly.endswith(stamp(charge.charged_at + timedelta(days=30)))


async def test_limits_json_has_the_numbers_after_a_purchase(cli):
    """`limits --json` is one JSON object with each window's numbers."""
    await cli.buy(2)
    first = cli.sandbox.purchases()[0].charged_at
    result = await cli("limits", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["known"] is True
    assert {k: data["daily"][k] for k in ("limit", "used", "remaining")} == {
        "limit": 3,
        "used": 2,
        "remaining": 1,
    }
    assert (data["monthly"]["limit"], data["monthly"]["remaining"]) == (10, 8)
    assert same_ms(data["daily"]["next_available_at"], first + timedelta(hours=24))


async def test_limits_in_the_flat_shape_and_an_unknown_shape(cli):
    """The flat shape still gives the remaining counts; an unknown shape says so."""
    await cli.buy(1)
    cli.sandbox.limits_shape = "flat"
    data = json.loads((await cli("limits", "--json")).out)
    assert (data["daily"]["used"], data["daily"]["remaining"]) == (1, 2)
    cli.sandbox.limits_shape = lambda snapshot: {"status": "OK", "quota": 7}
    result = await cli("limits")
    assert result.code == 0
    assert result.out.startswith("Limits unknown")


async def test_plan_says_what_binds_and_spends_nothing(cli):
    """`plan 5` on a fresh account allows 3 (the daily limit) and sends no preview."""
    result = await cli("plan", "5")
    assert result.code == 0
    assert "3 of 5 line(s) can be bought now: the daily limit allows 3." in result.out
    assert cli.sandbox.counters["preview"].requests == 0
    assert cli.sandbox.ledger == []


async def test_plan_json_when_everything_fits(cli):
    """`plan 2 --json` allows both, with nothing binding and no next slot."""
    result = await cli("plan", "2", "--json")
    assert json.loads(result.out) == {
        "requested": 2,
        "allowed": 2,
        "binding": None,
        "next_available_at": None,
    }


async def test_plan_json_when_the_daily_limit_is_used_up(cli):
    """After three purchases nothing is allowed, and the next slot is given."""
    await cli.buy(3)
    first = cli.sandbox.purchases()[0].charged_at
    result = await cli("plan", "2", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert (data["allowed"], data["binding"]) == (0, "daily")
    assert same_ms(data["next_available_at"], first + timedelta(hours=24))
    text = await cli("plan", "2")
    assert f"the next slot opens at {stamp(first + timedelta(hours=24))}" in text.out


# -- preview ----------------------------------------------------------------------


async def test_preview_prints_the_expiry_and_spends_nothing(cli):
    """`preview` says the account is eligible and when the unspent token expires."""
    result = await cli("preview")
    assert result.code == 0
    assert result.out.startswith("Eligible")
    assert "nothing was bought" in result.out
    [moment] = re.findall(r"expires at (\S+ \S+) UTC", result.out)
    expires = datetime.fromisoformat(moment + "+00:00")
    now = cli.sandbox.clock.now()
    assert timedelta(minutes=9) < expires - now <= timedelta(minutes=10)
    assert cli.sandbox.counters["confirm"].requests == 0
    assert cli.sandbox.ledger == []


async def test_preview_json(cli):
    """`preview --json` gives eligibility and the expiry as ISO 8601."""
    data = json.loads((await cli("preview", "--json")).out)
    assert data["eligible"] is True
    assert datetime.fromisoformat(data["expires_at"]) > cli.sandbox.clock.now()
    assert cli.sandbox.ledger == []


def _no_card(sandbox: Sandbox[Any], patch: pytest.MonkeyPatch) -> None:
    sandbox.account.card_on_file = False


def _wrong_plan(sandbox: Sandbox[Any], patch: pytest.MonkeyPatch) -> None:
    sandbox.account.plan = "standard"


def _wrong_secret(sandbox: Sandbox[Any], patch: pytest.MonkeyPatch) -> None:
    patch.setenv("SENDBLUE_API_SECRET_KEY", "a-wrong-secret-for-the-cli-test")


def _no_lines(sandbox: Sandbox[Any], patch: pytest.MonkeyPatch) -> None:
    sandbox.set_inventory(0)


def _no_room(sandbox: Sandbox[Any], patch: pytest.MonkeyPatch) -> None:
    sandbox.account.daily_limit = 0


@pytest.mark.parametrize(
    ("breaks", "says"),
    [
        pytest.param(_no_card, "no card on file (402)", id="402"),
        pytest.param(_wrong_plan, "inbound_only / Agent plan", id="403"),
        pytest.param(_wrong_secret, "check SENDBLUE_API_KEY_ID", id="401"),
        pytest.param(_no_lines, "no line available right now (503)", id="503"),
        pytest.param(_no_room, "daily limit is reached", id="429"),
    ],
)
async def test_preview_errors_are_one_sentence_and_exit_2(cli, breaks, says):
    """Each refusal of preview is one line on stderr, nothing on stdout, exit 2."""
    breaks(cli.sandbox, cli.monkeypatch)
    result = await cli("preview")
    assert result.code == 2
    assert result.out == ""
    assert says in result.err
    assert len(result.err.splitlines()) == 1
    assert "a-wrong-secret-for-the-cli-test" not in result.err
    assert cli.sandbox.ledger == []


async def test_missing_credentials_name_the_variables(cli):
    """Without a secret the command names the variables, sends nothing, exits 2."""
    cli.monkeypatch.delenv("SENDBLUE_API_SECRET_KEY")
    result = await cli("provision", "--yes")
    assert result.code == 2
    assert "SENDBLUE_API_SECRET_KEY" in result.err
    assert len(result.err.splitlines()) == 1
    assert cli.sandbox.requests == []


async def test_base_url_option_wins_over_the_variable(cli):
    """--base-url is used instead of SENDBLUE_BASE_URL."""
    cli.monkeypatch.setenv("SENDBLUE_BASE_URL", "http://127.0.0.1:9")
    result = await cli("--base-url", cli.sandbox.url, "limits", "--json")
    assert result.code == 0
    assert json.loads(result.out)["daily"]["limit"] == 3


async def test_an_unreachable_server_is_one_sentence(cli):
    """A refused connection says the server could not be reached, exit 2."""
    result = await cli("--base-url", "http://127.0.0.1:9", "limits")
    assert result.code == 2
    assert result.err.startswith("Could not reach Sendblue")
    assert len(result.err.splitlines()) == 1


# -- provision --------------------------------------------------------------------


async def test_provision_yes_prints_each_bought_line(cli):
    """`provision --count 2 --yes` prints number, worker and subscription per line."""
    result = await cli("provision", "--count", "2", "--yes")
    assert result.code == 0
    rows = result.out.splitlines()
    assert all(LINE.match(row) for row in rows), rows
    bought = {
        (c.phone_number, c.worker_id, c.subscription_id) for c in cli.sandbox.ledger
    }
    assert {tuple(row.split("\t")) for row in rows} == bought
    assert len(bought) == 2
    assert "About to buy 2 line(s)" in result.err
    assert "billed to the card on file" in result.err
    assert "Done: bought 2 of 2." in result.err


async def test_provision_json_stdout_holds_only_outcomes(cli):
    """With --json every stdout line is one outcome object; progress is on stderr."""
    result = await cli("provision", "--count", "3", "--yes", "--json")
    assert result.code == 0
    outcomes = result.json_lines()
    assert sorted(o["index"] for o in outcomes) == [0, 1, 2]
    assert {o["outcome"] for o in outcomes} == {"bought"}
    assert {
        (o["phone_number"], o["worker_id"], o["subscription_id"]) for o in outcomes
    } == {(c.phone_number, c.worker_id, c.subscription_id) for c in cli.sandbox.ledger}
    keys = {"index", "outcome", "key", "phone_number", "worker_id", "subscription_id"}
    assert all(set(o) == keys for o in outcomes)
    assert {o["key"] for o in outcomes} == {None}
    assert len(re.findall(r"^\[\d/3\] slot \d: bought", result.err, re.M)) == 3


async def test_provision_without_a_terminal_refuses_and_buys_nothing(cli):
    """Without --yes and without a terminal, nothing is previewed or bought: exit 2."""
    result = await cli("provision", "--count", "2")
    assert result.code == 2
    assert result.out == ""
    assert "pass --yes" in result.err
    assert cli.sandbox.ledger == []
    assert cli.sandbox.counters["preview"].requests == 0


@pytest.mark.parametrize(
    ("answer", "code", "bought"),
    [("y\n", 0, 1), ("yes\n", 0, 1), ("n\n", 2, 0), ("\n", 2, 0)],
    ids=["y", "yes", "n", "enter"],
)
async def test_provision_asks_on_a_terminal(cli, answer, code, bought):
    """On a terminal the command asks first; only y or yes buys."""
    cli.monkeypatch.setattr(sys, "stdin", Terminal(answer))
    result = await cli("provision")
    assert result.code == code
    assert "Proceed? [y/N]" in result.err
    assert len(cli.sandbox.ledger) == bought
    assert len(result.out.splitlines()) == bought


async def test_provision_shows_a_live_line_on_a_terminal(cli):
    """On a terminal, progress is one line rewritten in place with a carriage return."""
    terminal = Terminal()
    cli.monkeypatch.setattr(sys, "stderr", terminal)
    result = await cli("provision", "--count", "2", "--yes")
    assert result.code == 0
    progress = terminal.getvalue()
    assert "\r[1/2] bought 1, failed 0" in progress
    assert "\r[2/2] bought 2, failed 0" in progress
    # Wiped before the summary, which says the same: it starts at column 0.
    assert progress.endswith(
        "\r" + " " * len("[2/2] bought 2, failed 0") + "\rDone: bought 2 of 2.\n"
    )


async def test_each_purchase_line_stays_on_a_terminal(cli):
    """On a terminal, every `[n/N] slot i: bought` line survives the live line."""
    terminal = Terminal()
    cli.monkeypatch.setattr(sys, "stderr", terminal)
    result = await cli("provision", "--count", "3", "--concurrency", "1", "--yes")
    assert result.code == 0
    numbers = [charge.phone_number for charge in cli.sandbox.ledger]
    shown = screen(terminal.getvalue().encode())
    assert [line for line in shown if " slot " in line] == [
        f"[{n}/3] slot {n - 1}: bought {number}" for n, number in enumerate(numbers, 1)
    ]
    assert shown[-2:] == ["Done: bought 3 of 3.", ""]


async def test_provision_buys_what_the_limits_leave_and_exits_1(cli):
    """Asked for 5 on a fresh account, it says and buys 3, then exits 1."""
    result = await cli("provision", "--count", "5", "--yes", "--json")
    assert result.code == 1
    assert len(cli.sandbox.purchases()) == 3
    assert [o["outcome"] for o in result.json_lines()] == ["bought"] * 3
    assert "About to buy 3 line(s)" in result.err
    assert "the daily limit allows 3" in result.err
    assert "Done: bought 3 of 5, 2 not attempted." in result.err


async def test_provision_never_buys_more_than_it_announced(cli):
    """A slot that frees between the plan and the batch buys nothing unannounced."""
    await cli.buy(2)
    moved = free_the_window_before_the_batch(cli.sandbox)
    result = await cli("provision", "--count", "3", "--yes")
    assert moved
    assert "About to buy 1 line(s)" in result.err
    assert len(cli.sandbox.purchases()) == 3  # the two before, and one
    assert result.code == 1
    assert "Done: bought 1 of 3, 2 not attempted." in result.err


async def test_a_server_429_mid_batch_stops_it_and_keeps_what_was_bought(cli):
    """The server's 429 on the second slot stops the batch; the summary keeps slot 0."""
    # The limits read says 3 are free, the server allows only one.
    cli.sandbox.account.daily_limit = 1
    cli.sandbox.limits_shape = lambda snapshot: {
        "status": "OK",
        "limits": {"api_provision_daily": 3, "api_provision_monthly": 10},
        "usage": {"api_provision_daily": 0, "api_provision_monthly": 0},
    }
    result = await cli("provision", "--count", "2", "--concurrency", "1", "--yes")
    assert result.code == 1
    assert len(result.out.splitlines()) == len(cli.sandbox.purchases()) == 1
    assert "Done: bought 1 of 2, 1 failed." in result.err
    [stopped] = [x for x in result.err.splitlines() if x.startswith("Stopped early")]
    assert "The daily limit is reached (Maximum 1 lines" in stopped
    assert "nothing was bought" not in stopped


async def test_provision_with_the_limit_used_up_buys_nothing_and_exits_2(cli):
    """With no room left, nothing is previewed, stdout stays empty, exit 2."""
    await cli.buy(3)
    previews = cli.sandbox.counters["preview"].requests
    result = await cli("provision", "--count", "2", "--yes", "--json")
    assert result.code == 2
    assert result.out == ""
    assert "No line can be bought now: the daily limit is reached" in result.err
    assert "Nothing was bought" in result.err
    assert cli.sandbox.counters["preview"].requests == previews
    assert len(cli.sandbox.ledger) == 3


async def test_provision_some_failed_exits_1_with_the_failure_in_json(cli):
    """A slot refused with 400 is a `failed` object; the other slot buys: exit 1."""
    cli.sandbox.inject(
        "confirm", Fault.respond(400, {"status": "ERROR", "message": "bad token"})
    )
    result = await cli(
        "provision", "--count", "2", "--concurrency", "1", "--yes", "--json"
    )
    assert result.code == 1
    failed, bought = result.json_lines()
    assert failed == {
        "index": 0,
        "outcome": "failed",
        "key": None,
        "error": "BadRequestError",
        "message": failed["message"],
    }
    assert "bad token" in failed["message"]
    assert bought["outcome"] == "bought"
    assert [c.phone_number for c in cli.sandbox.ledger] == [bought["phone_number"]]
    assert "Done: bought 1 of 2, 1 failed." in result.err


async def test_provision_stopped_by_an_account_error_exits_2(cli):
    """A 402 from the first preview stops the batch: nothing bought, exit 2."""
    cli.sandbox.account.card_on_file = False
    result = await cli("provision", "--count", "2", "--yes")
    assert result.code == 2
    assert result.out == ""
    assert "no card on file (402)" in result.err
    assert "Stopped early" in result.err
    assert cli.sandbox.ledger == []


async def test_an_unknown_outcome_needs_a_human_exit_3(cli):
    """A confirm whose answer is lost is printed as `unknown` with its token: exit 3."""
    cli.sandbox.inject("confirm", Fault.drop_after_commit())
    result = await cli("provision", "--yes", "--json")
    assert result.code == 3
    [outcome] = result.json_lines()
    [charge] = cli.sandbox.ledger
    assert outcome["outcome"] == "unknown"
    assert outcome["error"] == "OutcomeUnknownError"
    assert outcome["preview_token"] == charge.preview_token
    sent = datetime.fromisoformat(outcome["first_sent_at"])
    assert abs(sent - charge.charged_at) < timedelta(seconds=5)
    assert "most likely bought" in outcome["message"]
    assert "Check the account before buying again" in result.err


async def test_a_provisioning_failure_needs_a_human_exit_3(cli):
    """A 500 provisioning_failed is printed with the server's body: exit 3."""
    cli.sandbox.inject("confirm", Fault.provisioning_failed())
    result = await cli("provision", "--yes", "--json")
    assert result.code == 3
    [outcome] = result.json_lines()
    [charge] = cli.sandbox.ledger
    assert outcome["outcome"] == "provisioning_failed"
    assert outcome["body"]["error"] == "provisioning_failed"
    assert charge.subscription_id in outcome["body"]["message"]
    assert "contact Sendblue support" in outcome["message"]


async def test_a_needs_human_outcome_wins_over_lines_bought(cli):
    """One line bought and one unknown outcome still exit 3, and both are printed."""
    cli.sandbox.inject("confirm", Fault.drop_after_commit())
    result = await cli("provision", "--count", "2", "--concurrency", "1", "--yes")
    assert result.code == 3
    assert len(cli.sandbox.ledger) == 2
    [row] = result.out.splitlines()
    assert row.split("\t")[0] == cli.sandbox.ledger[1].phone_number
    assert "slot 0: A confirm was sent but its answer was lost" in result.err


# -- logging, the secret, the demo ---------------------------------------------


async def test_verbose_shows_the_sdk_log_on_stderr(cli):
    """-v shows each step, -vv every request; without it the log stays quiet."""
    quiet = await cli("provision", "--yes")
    assert "sendblue-lines: INFO" not in quiet.err
    one = await cli("-v", "provision", "--yes")
    assert "sendblue-lines: INFO: slot 0: bought" in one.err
    assert "DEBUG" not in one.err
    two = await cli("plan", "1", "-vv")
    assert "sendblue-lines: DEBUG: GET /accounts/limits -> 200" in two.err


@pytest.mark.parametrize(
    "argv",
    [
        ["limits"],
        ["limits", "--json"],
        ["plan", "4"],
        ["plan", "4", "--json"],
        ["preview"],
        ["preview", "--json"],
        ["provision", "--count", "2", "--yes"],
        ["provision", "--count", "2", "--yes", "--json"],
    ],
    ids=" ".join,
)
async def test_the_secret_is_never_printed(cli, argv):
    """At -vv, through a lost answer and a refusal, no output holds the secret."""
    cli.sandbox.inject("confirm", Fault.drop_after_commit())
    cli.sandbox.inject("limits", Fault.respond(500, {"status": "ERROR"}))
    result = await cli("-vv", *argv)
    assert "sendblue-lines: DEBUG" in result.err
    cli.monkeypatch.setenv("SENDBLUE_API_SECRET_KEY", "a-wrong-secret-never-shown")
    refused = await cli("-vv", *argv)
    assert refused.code == 2
    assert "a-wrong-secret-never-shown" not in refused.out + refused.err


async def test_demo_walks_through_every_step_and_exits_0(capsys):
    """The demo exits 0 and narrates every step, from limits to a key and the ledger."""
    code = await asyncio.wait_for(asyncio.to_thread(main, ["demo"]), 30)
    out = capsys.readouterr().out
    assert code == 0
    steps = re.findall(r"^== \d+\. (.*)$", out, re.MULTILINE)
    expected = [
        "Limits",
        "Plan",
        "Preview",
        "Confirm",
        "An expired token",
        "A batch of 3 that meets the daily limit",
        "What each error",
        "A crash mid-confirm, and reconcile()",
        "A key survives a crash",
        "The sandbox's ledger",
    ]
    assert len(steps) == len(expected)
    for step, start in zip(steps, expected, strict=True):
        assert step.startswith(start)
    assert "previewed again and bought" in out
    [stopped] = re.findall(r"stopped by: (.*)", out)
    assert "daily limit is reached" in stopped
    assert "nothing was bought" not in stopped  # two lines were
    errors = [
        "AuthenticationError",
        "OutcomeUnknownError",
        "ProvisioningFailedError",
        "NoLinesAvailableError",
        "NoCardOnFileError",
    ]
    for error in errors:
        assert error in out
    assert "demo-secret-not-real" not in out
    assert re.search(r"http://127\.0\.0\.1:\d+", out)
    key_step = out.split("A key survives a crash")[1].split("\n== ")[0]
    assert "provision --key demo-agent --yes" in key_step
    assert re.search(r"pid \d+ was killed with SIGKILL", key_step)
    first = re.search(
        r"asked again, provision\(key='demo-agent'\) resent the token the child "
        r"left, lpv_\S+ \(0 new preview\(s\)\): bought (\+1\d{10})$",
        key_step,
        re.MULTILINE,
    )
    assert first is not None
    assert (
        f"asked once more: {first.group(1)}, the same line, from the journal "
        "(0 request(s) sent)"
    ) in key_step
    assert "the ledger holds 1 charge for the key 'demo-agent'" in key_step
    # One charge more than the steps before it made, and every one reported:
    # 7 lines (2 single, 2 of the batch, a lost answer, the crash, the key)
    # and the subscription without a line.
    assert "8 charges: 7 lines, 1 subscription(s) without a line" in out
