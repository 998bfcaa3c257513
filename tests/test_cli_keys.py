"""Purchases for a reason, by command: `provision --key`, `history --key`, `settle`.

Most tests run `main(argv)` in a thread against a `sendblue_sandbox` (the
`cli` fixture), with the default journal under the test's own
XDG_STATE_HOME; one runs two real processes at once, as overlapping cron
runs would.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    CREDENTIAL_VARIABLES,
    InProcess,
    free_the_window_before_the_batch,
    run,
)

from sendblue_lines import Provisioner, SQLiteJournal
from sendblue_lines.cli import main
from sendblue_lines.errors import JournalError
from sendblue_lines.journal import default_owner
from sendblue_lines.sandbox import Fault

KEY = "q1-agents"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


class Terminal(io.StringIO):
    """A stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def state_journal() -> Path:
    """The default journal under this test's XDG_STATE_HOME."""
    return Path(os.environ["XDG_STATE_HOME"]) / "sendblue-lines" / "journal.sqlite3"


async def entries_of(key: str | None = None) -> list[Any]:
    async with SQLiteJournal(state_journal()) as journal:
        return await journal.entries(key=key)


def requests(cli: InProcess) -> int:
    """Every request the sandbox has had, of any endpoint."""
    return sum(counter.requests for counter in cli.sandbox.counters.values())


async def lost_answer(cli: InProcess, key: str) -> str:
    """Buy under `key` with the confirm's answer lost: an unknown; its token."""
    cli.sandbox.inject("confirm", Fault.drop_after_commit())
    result = await cli("provision", "--key", key, "--yes")
    assert result.code == 3
    [entry] = await entries_of(key)
    assert entry.state == "unknown"
    return str(entry.preview_token)


# -- provision --key: a key's total ------------------------------------------------


async def test_a_keyed_run_buys_what_the_limits_allow_toward_the_total(cli):
    """N is the key's total: 3 of 5 today (the daily limit), exit 1, key in JSON."""
    result = await cli("provision", "--key", KEY, "--count", "5", "--yes", "--json")
    assert result.code == 1
    assert len(cli.sandbox.purchases()) == 3
    outcomes = result.json_lines()
    assert [(o["outcome"], o["key"]) for o in outcomes] == [("bought", KEY)] * 3
    assert (
        f"About to buy 3 line(s) toward the key {KEY!r}, which holds 0 of 5 line(s)."
        in result.err
    )
    assert "3 of 5 line(s) can be bought now: the daily limit allows 3." in result.err
    assert (
        f"Done: the key {KEY!r} holds 3 of 5 line(s); this run bought 3, 2 still to "
        "buy.\n"
    ) in result.err
    # Stopping where the limits end is what the run announced: no alarm.
    assert "Stopped early" not in result.err
    assert [e.key for e in await entries_of()] == [KEY] * 3


async def test_the_next_day_it_buys_the_rest_then_has_nothing_to_do(cli):
    """Day two buys the missing 2 (exit 0); day three asks and sends nothing (0)."""
    assert (await cli("provision", "--key", KEY, "--count", "5", "--yes")).code == 1
    cli.sandbox.clock.advance(hours=25)
    second = await cli("provision", "--key", KEY, "--count", "5", "--yes")
    assert second.code == 0
    assert "About to buy 2 line(s) toward the key" in second.err
    assert "which holds 3 of 5 line(s)" in second.err
    assert f"Done: the key {KEY!r} holds 5 of 5 line(s); this run bought 2.\n" in (
        second.err
    )
    # Met: no --yes, a terminal to ask on, and still nothing asked or sent.
    cli.monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    before = requests(cli)
    third = await cli("provision", "--key", KEY, "--count", "5")
    assert (third.code, third.out) == (0, "")
    assert third.err == (
        f"The key {KEY!r} holds 5 of 5 line(s): its total is met; nothing was bought.\n"
    )
    assert requests(cli) == before
    assert len(cli.sandbox.ledger) == 5


async def test_other_keys_and_unkeyed_purchases_do_not_count(cli):
    """Only the key's own purchases fill its total."""
    assert (await cli("provision", "--yes")).code == 0
    assert (await cli("provision", "--key", "other", "--yes")).code == 0
    result = await cli("provision", "--key", KEY, "--count", "1", "--yes")
    assert result.code == 0
    assert "which holds 0 of 1 line(s)" in result.err
    assert len(cli.sandbox.ledger) == 3


async def test_with_no_room_now_the_exit_code_follows_the_keys_total(cli):
    """No room today: exit 2 while the key holds nothing, 1 once it holds some."""
    await cli.buy(3)
    empty = await cli("provision", "--key", KEY, "--count", "2", "--yes")
    assert empty.code == 2
    assert empty.err.endswith(
        f"Nothing was bought. The key {KEY!r} holds 0 of 2 line(s).\n"
    )
    cli.sandbox.clock.advance(hours=25)
    cli.sandbox.account.daily_limit = 1
    assert (await cli("provision", "--key", KEY, "--count", "2", "--yes")).code == 1
    previews = cli.sandbox.counters["preview"].requests
    some = await cli("provision", "--key", KEY, "--count", "2", "--yes")
    assert some.code == 1
    assert "No line can be bought now: the daily limit is reached" in some.err
    assert f"The key {KEY!r} holds 1 of 2 line(s)." in some.err
    assert cli.sandbox.counters["preview"].requests == previews


async def test_a_keyed_run_never_buys_more_than_it_announced(cli):
    """A window that frees between the plan and the batch buys nothing unannounced."""
    assert (await cli("provision", "--key", KEY, "--count", "2", "--yes")).code == 0
    moved = free_the_window_before_the_batch(cli.sandbox)
    result = await cli("provision", "--key", KEY, "--count", "5", "--yes")
    assert moved
    assert "About to buy 1 line(s) toward the key" in result.err
    assert len(cli.sandbox.purchases()) == 3
    assert "holds 3 of 5 line(s); this run bought 1, 2 still to buy." in result.err
    assert result.code == 1


async def test_a_key_needs_the_journal_and_a_usable_name(cli, capsys):
    """--key with --no-journal: exit 2, nothing sent; a bad key: a usage error."""
    result = await cli("--no-journal", "provision", "--key", KEY, "--yes")
    assert result.code == 2
    assert result.err == (
        "Configuration error: `provision --key` works on the purchase journal, and "
        "--no-journal turns it off.\n"
    )
    assert requests(cli) == 0
    for bad, why in [("", "cannot be empty"), ("a\x1bb", "control characters")]:
        with pytest.raises(SystemExit) as exited:
            await asyncio.to_thread(main, ["provision", "--key", bad])
        assert exited.value.code == 2
        assert why in capsys.readouterr().err


async def test_without_yes_or_a_terminal_a_keyed_run_refuses(cli):
    """As without a key: it says what it would buy, refuses, previews nothing."""
    result = await cli("provision", "--key", KEY, "--count", "2")
    assert result.code == 2
    assert "About to buy 2 line(s) toward the key" in result.err
    assert "pass --yes" in result.err
    assert cli.sandbox.counters["preview"].requests == 0


async def test_a_keyed_run_the_person_cancels_exits_2_whatever_the_key_holds(cli):
    """Refused at the question: exit 2, no progress; 3 if the key holds an unknown."""
    assert (await cli("provision", "--key", KEY, "--count", "1", "--yes")).code == 0
    await lost_answer(cli, "agent:12")
    previews = cli.sandbox.counters["preview"].requests
    for key, holds, code in (
        (KEY, "holds 1 of 2 line(s).", 2),
        ("agent:12", "holds 0 of 2 line(s), plus 1 purchase(s)", 3),
    ):
        cli.monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
        result = await cli("provision", "--key", key, "--count", "2")
        assert result.code == code
        assert f"About to buy 1 line(s) toward the key {key!r}, which {holds}" in (
            result.err
        )
        assert result.err.endswith("Cancelled; nothing was bought.\n")
    assert cli.sandbox.counters["preview"].requests == previews


async def test_overlapping_runs_never_pass_the_total(sendblue_sandbox):
    """Two processes at once, each for a total of 2, with latency: 2 lines, not 4."""
    sendblue_sandbox.latency = 0.05
    argv = ("provision", "--key", "nightly", "--count", "2", "--yes", "--json")
    first, second = await asyncio.gather(
        run(sendblue_sandbox, *argv), run(sendblue_sandbox, *argv)
    )
    # A run that ends while the other's purchases are in flight holds no line
    # yet (exit 2, or 1), and says they are pending.
    assert {first.code, second.code} <= {0, 1, 2}, (first.err, second.err)
    assert len(sendblue_sandbox.ledger) == 2
    bought = [o for r in (first, second) for o in r.json_lines()]
    assert {o["phone_number"] for o in bought} == {
        c.phone_number for c in sendblue_sandbox.ledger
    }
    assert {o["key"] for o in bought} == {"nightly"}
    after = await run(sendblue_sandbox, *argv)
    assert (after.code, after.out) == (0, "")
    assert "holds 2 of 2 line(s): its total is met" in after.err


# -- a key holding an unknown, and settle -------------------------------------------


async def test_an_unknown_under_the_key_is_exit_3_until_a_person_settles_it(cli):
    """Lost answer: exit 3; the retry sends nothing, exit 3; settled bought: exit 0."""
    token = await lost_answer(cli, "agent:7")
    before = requests(cli)
    retry = await cli("provision", "--key", "agent:7", "--yes")
    assert (retry.code, retry.out) == (3, "")
    assert requests(cli) == before
    assert retry.err.startswith(
        "The key 'agent:7' holds 0 of 1 line(s), plus 1 purchase(s) counted toward "
        "it (1 unknown): nothing more is bought for it until those are settled; "
        "nothing was bought. 1 purchase(s) under the key ended unknown:"
    )
    assert "`sendblue-lines settle TOKEN --bought PHONE`" in retry.err
    [charge] = cli.sandbox.ledger
    settled = await cli("settle", token[:10], "--bought", charge.phone_number)
    assert settled.code == 0
    header, row = settled.out.splitlines()
    assert header.split()[-1] == "key"
    assert row.split()[1:3] == ["bought", charge.phone_number]
    assert row.split()[-2:] == ["settled_by_hand", "agent:7"]
    assert settled.err == (
        f"Settled {token[:8]}… by hand as bought: {charge.phone_number}. It is "
        "final; it is a line of the key 'agent:7'.\n"
    )
    done = await cli("provision", "--key", "agent:7", "--yes")
    assert done.code == 0
    assert "holds 1 of 1 line(s): its total is met" in done.err
    assert len(cli.sandbox.ledger) == 1


async def test_an_error_before_buying_is_exit_3_when_the_key_holds_an_unknown(cli):
    """The limits read fails after the key was read: its unknown still makes it 3."""
    await lost_answer(cli, "agent:13")
    cli.sandbox.inject("limits", Fault.drop_before(), times=10)
    result = await cli("provision", "--key", "agent:13", "--count", "2", "--yes")
    assert (result.code, result.out) == (3, "")
    [sentence] = result.err.splitlines()
    assert sentence.startswith("Could not reach Sendblue: ")
    assert "1 purchase(s) under the key ended unknown: check the account" in sentence
    assert len(cli.sandbox.ledger) == 1


async def test_a_journal_that_breaks_after_the_batch_hides_no_line(cli):
    """The batch bought and returned, then the journal fails: summed up, exit 0."""
    returned: list[bool] = []
    provision_many = Provisioner.provision_many
    entries = SQLiteJournal.entries

    async def reporting(self: Provisioner, *args: Any, **kwargs: Any) -> Any:
        result = await provision_many(self, *args, **kwargs)
        returned.append(True)
        return result

    async def breaking(self: SQLiteJournal, *args: Any, **kwargs: Any) -> Any:
        if returned:
            raise JournalError(
                "SQLite journal: cannot read the entries: disk I/O error",
                backend="sqlite",
                location=str(state_journal()),
                operation="read the entries",
            )
        return await entries(self, *args, **kwargs)

    cli.monkeypatch.setattr(Provisioner, "provision_many", reporting)
    cli.monkeypatch.setattr(SQLiteJournal, "entries", breaking)
    result = await cli("provision", "--key", KEY, "--count", "2", "--yes")
    assert result.code == 0
    assert len(result.out.splitlines()) == 2
    assert result.err.endswith(
        f"Done: the key {KEY!r} holds 2 of 2 line(s); this run bought 2.\n"
    )


async def test_settled_not_bought_frees_the_keys_place(cli):
    """A person says nothing was bought: the key buys again, once."""
    token = await lost_answer(cli, "agent:8")
    result = await cli(
        "settle", token, "--not-bought", "--note", "no charge on the card", "--json"
    )
    assert result.code == 0
    assert result.err == ""
    [entry] = result.json_lines()
    assert entry["preview_token"] == token
    assert (entry["state"], entry["key"]) == ("not_bought", "agent:8")
    assert (entry["error_code"], entry["message"]) == (
        "settled_by_hand",
        "no charge on the card",
    )
    again = await cli("provision", "--key", "agent:8", "--yes")
    assert again.code == 0
    assert "which holds 0 of 1 line(s)" in again.err
    assert len(cli.sandbox.ledger) == 2


async def test_settle_takes_the_token_as_history_shows_it(cli):
    """`lpv_abcd…` copied from the history table names its purchase."""
    await lost_answer(cli, "agent:9")
    shown = (await cli("history", "--key", "agent:9")).out.splitlines()[1].split()[0]
    assert shown.endswith("…")
    result = await cli("settle", shown, "--not-bought")
    assert result.code == 0
    assert result.err.startswith(f"Settled {shown} by hand as not bought.")
    assert "the key 'agent:9' may buy again in its place" in result.err


async def test_settle_reads_the_journal_only(cli):
    """No credential needed, nothing sent to Sendblue."""
    token = await lost_answer(cli, "agent:10")
    for name in CREDENTIAL_VARIABLES:
        cli.monkeypatch.delenv(name, raising=False)
    before = requests(cli)
    assert (await cli("settle", token, "--not-bought")).code == 0
    assert requests(cli) == before


async def seed_unknowns(tokens: list[str]) -> None:
    """Unknown purchases with these tokens, straight into the default journal."""
    state_journal().parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    expires = datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc)
    async with SQLiteJournal(state_journal()) as journal:
        for token in tokens:
            [slot] = await journal.reserve("key-id", default_owner(), 1, None, key="k")
            await journal.record_intent(slot, token, expires)
            await journal.record_outcome(token, "unknown", message="lost")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["lpv_shared_", "--not-bought"], "2 purchases' tokens start with"),
        (["lpv_sh", "--not-bought"], "8 of its first characters at least"),
        (["lpv_nowhere", "--not-bought"], "no purchase's token starts with"),
        (["lpv_done_0001", "--bought", "+14155550100"], "this one is 'bought'"),
    ],
    ids=["ambiguous", "short", "no-such", "not-unknown"],
)
async def test_a_refused_settle_is_one_sentence_exit_2_and_changes_nothing(
    cli, argv, says
):
    """An ambiguous, short or unknown prefix, or a settled purchase: exit 2."""
    await seed_unknowns(["lpv_shared_0001", "lpv_shared_0002", "lpv_done_0001"])
    assert (await cli("settle", "lpv_done_0001", "--bought", "+14155550100")).code == 0
    before = [(e.preview_token, e.state, e.settled_at) for e in await entries_of()]
    result = await cli("settle", *argv)
    assert (result.code, result.out) == (2, "")
    [sentence] = result.err.splitlines()
    assert sentence.startswith("Not settled: ")
    assert says in sentence
    assert sentence.endswith("; nothing changed.")
    after = [(e.preview_token, e.state, e.settled_at) for e in await entries_of()]
    assert after == before


async def test_a_failing_store_is_not_told_as_a_refusal(cli):
    """A store that failed without a driver exception attached may have written.

    (The PostgreSQL journal drops a driver exception that quotes the DSN's
    password.) It is told as a journal failure, never as "nothing changed".
    """
    token = await lost_answer(cli, "agent:11")

    async def failing(journal: SQLiteJournal, *args: Any, **kwargs: Any) -> Any:
        raise JournalError(
            "SQLite journal: cannot settle a purchase by hand: the disk is full",
            backend="sqlite",
            location=str(state_journal()),
            operation="settle a purchase by hand",
        )

    cli.monkeypatch.setattr(SQLiteJournal, "settle", failing)
    result = await cli("settle", token, "--not-bought")
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("The purchase journal failed: ")
    assert "nothing changed" not in result.err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["lpv_token0001"], "one of the arguments --bought --not-bought is required"),
        (["lpv_token0001", "--bought", "4155550100"], "E.164"),
        (["lpv_token0001", "--bought", "+15", "--not-bought"], "not allowed with"),
    ],
    ids=["no-verdict", "not-e164", "both"],
)
def test_settle_usage_errors_exit_2(capsys, argv, says):
    """A verdict is needed, one only, and a number in E.164."""
    with pytest.raises(SystemExit) as exited:
        main(["settle", *argv])
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


async def test_settle_refuses_no_journal(cli):
    """`settle` works on the journal: --no-journal is exit 2."""
    result = await cli("--no-journal", "settle", "lpv_token0001", "--not-bought")
    assert result.code == 2
    assert "`settle` works on the purchase journal" in result.err


# -- history --key, and the key in every JSON object --------------------------------


async def test_history_by_key_lists_that_keys_purchases_with_a_key_column(cli):
    """Only the key's entries; the table gains a key column; the count names the key."""
    assert (await cli("provision", "--yes")).code == 0
    assert (await cli("provision", "--key", "a", "--count", "2", "--yes")).code == 0
    everything = await cli("history")
    header, *rows = everything.out.splitlines()
    assert header.split()[-1] == "key"
    assert [row.split()[-1] for row in rows] == ["-", "a", "a"]
    only = await cli("history", "--key", "a")
    assert only.code == 0
    assert [row.split()[-1] for row in only.out.splitlines()[1:]] == ["a", "a"]
    assert only.err == (
        f"2 purchase(s) under the key 'a' in the journal at {state_journal()}.\n"
    )
    as_json = await cli("history", "--key", "a", "--json")
    assert [e["key"] for e in as_json.json_lines()] == ["a", "a"]
    none = await cli("history", "--key", "nobody")
    assert (none.code, none.out) == (0, "")


async def seed_pending(token: str, expires_at: datetime) -> None:
    """A pending purchase under "agent:dead" whose owner is gone."""
    dead = f"{socket.gethostname()}:{os.getpid()}:not-this-start"
    state_journal().parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    async with SQLiteJournal(state_journal()) as journal:
        account = os.environ["SENDBLUE_API_KEY_ID"]
        [slot] = await journal.reserve(account, dead, 1, None, key="agent:dead")
        await journal.record_intent(slot, token, expires_at)


async def test_reconcile_json_carries_the_key(cli):
    """A keyed purchase a dead process left open: reconcile's object names its key."""
    async with cli.client() as client:
        preview = await client.preview()
    await seed_pending(preview.token, preview.expires_at)
    result = await cli("reconcile", "--json")
    assert result.code == 0
    [entry] = result.json_lines()
    assert (entry["state"], entry["key"]) == ("bought", "agent:dead")


async def test_a_journal_of_schema_1_is_listed_and_settled_after_its_upgrade(
    cli, tmp_path
):
    """Its entries have no key (no key column); its unknown is settled by hand."""
    path = tmp_path / "journal.sqlite3"
    shutil.copyfile(FIXTURES / "journal_v1.sqlite3", path)
    os.chmod(path, 0o600)
    history = await cli("--journal", str(path), "history")
    assert history.code == 0
    header, *rows = history.out.splitlines()
    assert "key" not in header.split()
    assert len(rows) == 5
    settled = await cli(
        "--journal", str(path), "settle", "lpv_v1_unknown", "--not-bought", "--json"
    )
    assert settled.code == 0
    [entry] = settled.json_lines()
    assert (entry["state"], entry["key"]) == ("not_bought", None)
