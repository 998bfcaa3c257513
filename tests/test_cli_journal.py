"""The command's journal: where it is, history, reconcile, provision's first step.

Most tests run `main(argv)` in a thread against a `sendblue_sandbox` (as
tests/test_cli.py does); a few run the command as a child process, to show
that the environment (XDG_STATE_HOME, SENDBLUE_LINES_JOURNAL) reaches it.
The autouse fixture of the conftest points XDG_STATE_HOME at an empty
folder of each test's own, so nothing here touches the real state directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import sqlite3
import stat
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cli_support import CREDENTIAL_VARIABLES, InProcess, run
from postgres_support import POSTGRES_DSN, need_postgres
from secret_graph import secret_paths

from sendblue_lines import PostgresJournal, SQLiteJournal
from sendblue_lines.cli import main
from sendblue_lines.cli._journal import (
    JOURNAL_VARIABLE,
    JournalChoice,
    choose_journal,
    default_journal_path,
    make_journal,
)
from sendblue_lines.cli._render import entry_json
from sendblue_lines.errors import ConfigurationError, JournalError
from sendblue_lines.journal import Journal
from sendblue_lines.sandbox import Fault

#: A password no output may show (the test server trusts, so any one works).
DSN_PASSWORD = "pg-canary-" + uuid.uuid4().hex
SHORT = re.compile(r"^lpv_\S{4}…$")


def state_journal() -> Path:
    """The default journal under this test's XDG_STATE_HOME."""
    return Path(os.environ["XDG_STATE_HOME"]) / "sendblue-lines" / "journal.sqlite3"


def dead_owner() -> str:
    """An owner of this host that no running process has: the journal judges it gone.

    This process's pid with a start time that is not its own.
    """
    return f"{socket.gethostname()}:{os.getpid()}:not-this-start"


async def seed_orphan(journal: Journal, cli: InProcess, *, spent: bool = False) -> str:
    """A pending purchase of a dead owner: a real sandbox token, confirmed or not.

    `spent`: the token was confirmed (a line was bought) before the owner
    died, so a resend is refused; otherwise the confirm never arrived.
    """
    async with cli.client() as client:
        preview = await client.preview()
        if spent:
            await client.confirm(preview)
    [slot] = await journal.reserve(cli.sandbox.api_key_id, dead_owner(), 1, None)
    await journal.record_intent(slot, preview.token, preview.expires_at)
    return preview.token


async def seed_sqlite(path: Path, cli: InProcess, *, spent: bool = False) -> str:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    async with SQLiteJournal(path) as journal:
        return await seed_orphan(journal, cli, spent=spent)


async def entries_of(path: Path) -> list[Any]:
    async with SQLiteJournal(path) as journal:
        return await journal.entries()


# -- where the journal is --------------------------------------------------------------


def namespace(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**values)


def test_the_default_is_under_xdg_state_home(tmp_path):
    """An absolute XDG_STATE_HOME holds sendblue-lines/journal.sqlite3."""
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "h")}
    assert default_journal_path(env) == (
        tmp_path / "state" / "sendblue-lines" / "journal.sqlite3"
    )


@pytest.mark.parametrize("xdg", [None, "", "relative/state"])
def test_without_a_usable_xdg_state_home_the_default_is_under_home(tmp_path, xdg):
    """Unset, empty or relative (the XDG spec: ignore it): ~/.local/state."""
    env = {"HOME": str(tmp_path)}
    if xdg is not None:
        env["XDG_STATE_HOME"] = xdg
    assert default_journal_path(env) == (
        tmp_path / ".local" / "state" / "sendblue-lines" / "journal.sqlite3"
    )


def test_the_flag_beats_the_variable_which_beats_the_default(tmp_path):
    """--journal, else SENDBLUE_LINES_JOURNAL, else the default; --no-journal: None."""
    env = {"XDG_STATE_HOME": str(tmp_path), JOURNAL_VARIABLE: "/from/env.sqlite3"}
    flag = choose_journal(namespace(journal="/from/flag.sqlite3"), env)
    assert flag == JournalChoice("/from/flag.sqlite3", "--journal")
    assert choose_journal(namespace(), env) == JournalChoice(
        "/from/env.sqlite3", JOURNAL_VARIABLE
    )
    default = choose_journal(namespace(), {**env, JOURNAL_VARIABLE: ""})
    assert default is not None
    assert default.source == "default"
    assert default.location == str(tmp_path / "sendblue-lines" / "journal.sqlite3")
    assert choose_journal(namespace(no_journal=True), env) is None


def test_contradicting_or_empty_options_are_configuration_errors():
    """--journal with --no-journal, or an empty --journal, is refused."""
    with pytest.raises(ConfigurationError, match="contradict"):
        choose_journal(namespace(journal="x", no_journal=True), {})
    with pytest.raises(ConfigurationError, match="not an empty value"):
        choose_journal(namespace(journal=" "), {})


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "POSTGRESQL"])
def test_a_dsn_opens_postgresql_and_is_shown_without_its_password(scheme):
    """A postgresql:// or postgres:// value is PostgreSQL; its password is hidden."""
    dsn = f"{scheme}://app:{DSN_PASSWORD}@db.example/sales"
    choice = choose_journal(namespace(journal=dsn), {})
    assert choice is not None
    assert choice.postgres
    assert DSN_PASSWORD not in choice.shown
    assert DSN_PASSWORD not in repr(choice)
    assert not JournalChoice("postgresql.sqlite3", "--journal").postgres


# -- the command journals --------------------------------------------------------------


async def test_provision_journals_in_the_xdg_state_directory(cli):
    """By default the purchase lands in $XDG_STATE_HOME/...: 0700 folder, 0600 file."""
    result = await cli("provision", "--yes")
    assert result.code == 0
    path = state_journal()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [entry] = await entries_of(path)
    assert entry.state == "bought"
    assert entry.line is not None
    assert entry.line.phone_number == cli.sandbox.ledger[0].phone_number
    assert entry.preview_token == cli.sandbox.ledger[0].preview_token
    assert cli.sandbox.api_secret_key.encode() not in path.read_bytes()


async def test_without_xdg_state_home_it_journals_under_home(cli, tmp_path):
    """XDG_STATE_HOME unset: ~/.local/state/sendblue-lines, created 0700."""
    cli.monkeypatch.delenv("XDG_STATE_HOME")
    cli.monkeypatch.setenv("HOME", str(tmp_path))
    assert (await cli("provision", "--yes")).code == 0
    path = tmp_path / ".local" / "state" / "sendblue-lines" / "journal.sqlite3"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [e.state for e in await entries_of(path)] == ["bought"]


async def test_the_variable_and_the_flag_choose_another_file(cli, tmp_path):
    """SENDBLUE_LINES_JOURNAL moves the journal; --journal (either side) beats it."""
    from_env, from_flag = tmp_path / "env.sqlite3", tmp_path / "flag.sqlite3"
    cli.monkeypatch.setenv(JOURNAL_VARIABLE, str(from_env))
    assert (await cli("provision", "--yes")).code == 0
    assert (await cli("--journal", str(from_flag), "provision", "--yes")).code == 0
    assert (await cli("provision", "--yes", "--journal", str(from_flag))).code == 0
    assert len(await entries_of(from_env)) == 1
    assert len(await entries_of(from_flag)) == 2
    assert not state_journal().exists()


async def test_no_journal_records_nothing(cli, tmp_path):
    """--no-journal buys without a journal: no file anywhere, before or after."""
    cli.monkeypatch.setenv(JOURNAL_VARIABLE, str(tmp_path / "env.sqlite3"))
    assert (await cli("--no-journal", "provision", "--yes")).code == 0
    assert (await cli("provision", "--yes", "--no-journal")).code == 0
    assert len(cli.sandbox.ledger) == 2
    assert not (tmp_path / "env.sqlite3").exists()
    assert not state_journal().exists()


async def test_journal_and_no_journal_together_are_a_usage_error(cli, tmp_path):
    """On one side argparse refuses (2); across sides the command does (2)."""
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(
            main, ["provision", "--journal", str(tmp_path), "--no-journal"]
        )
    assert exited.value.code == 2
    result = await cli("--no-journal", "provision", "--yes", "--journal", "x")
    assert result.code == 2
    assert "contradict each other" in result.err
    assert cli.sandbox.counters["preview"].requests == 0


async def test_a_child_process_journals_under_the_tests_own_state_dir(
    sendblue_sandbox,
):
    """The conftest's XDG_STATE_HOME reaches the command run as a process."""
    result = await run(sendblue_sandbox, "provision", "--yes")
    assert result.code == 0
    [entry] = await entries_of(state_journal())
    assert entry.state == "bought"


async def test_the_variable_reaches_a_child_process(sendblue_sandbox, tmp_path):
    """SENDBLUE_LINES_JOURNAL set for the process picks its journal."""
    from cli_support import environment

    path = tmp_path / "chosen.sqlite3"
    env = environment(sendblue_sandbox, **{JOURNAL_VARIABLE: str(path)})
    result = await run(sendblue_sandbox, "provision", "--yes", env=env)
    assert result.code == 0
    assert [e.state for e in await entries_of(path)] == ["bought"]
    assert not state_journal().exists()


# -- history ---------------------------------------------------------------------------


async def test_history_lists_every_purchase_and_its_state(cli):
    """history: a table, tokens shortened, one row per purchase, oldest first."""
    assert (await cli("provision", "--count", "2", "--yes")).code == 0
    await seed_sqlite(state_journal(), cli)
    result = await cli("history")
    assert result.code == 0
    header, *rows = result.out.splitlines()
    assert header.split() == [
        "token", "state", "number", "created", "(UTC)", "settled", "(UTC)", "error",
    ]  # fmt: skip
    assert [row.split()[1] for row in rows] == ["bought", "bought", "pending"]
    for row, charge in zip(rows, cli.sandbox.ledger, strict=False):
        token, _, number = row.split()[:3]
        assert SHORT.match(token)
        assert charge.preview_token.startswith(token[:-1])
        assert charge.preview_token not in result.out
        assert number == charge.phone_number
    assert rows[2].split()[2] == "-"
    assert result.err == (f"3 purchase(s) in the journal at {state_journal()}.\n")


async def test_history_json_gives_each_entry_whole(cli):
    """`history --json`: one object per purchase, full token, times in ISO 8601."""
    assert (await cli("provision", "--yes")).code == 0
    result = await cli("history", "--json")
    assert result.code == 0
    assert result.err == ""
    [entry] = result.json_lines()
    [charge] = cli.sandbox.ledger
    assert entry["preview_token"] == charge.preview_token
    assert entry["state"] == "bought"
    assert entry["account"] == cli.sandbox.api_key_id
    assert entry["phone_number"] == charge.phone_number
    assert entry["worker_id"] == charge.worker_id
    assert entry["subscription_id"] == charge.subscription_id
    assert entry["error_code"] is None
    for key in ("created_at", "first_sent_at", "settled_at", "expires_at"):
        assert entry[key].endswith("+00:00"), key
    assert entry["attempts"] == 1
    assert entry["evidence"] == []


async def test_history_needs_no_credentials_and_sends_nothing(cli):
    """`history` reads the journal only: without any credential it works."""
    assert (await cli("provision", "--yes")).code == 0
    requests = sum(c.requests for c in cli.sandbox.counters.values())
    for name in CREDENTIAL_VARIABLES:
        cli.monkeypatch.delenv(name, raising=False)
    result = await cli("history", "--json")
    assert result.code == 0
    assert len(result.json_lines()) == 1
    assert sum(c.requests for c in cli.sandbox.counters.values()) == requests


async def test_an_empty_history_says_so(cli):
    """A new journal: no row, one sentence naming where it is."""
    result = await cli("history")
    assert (result.code, result.out) == (0, "")
    assert result.err == f"0 purchase(s) in the journal at {state_journal()}.\n"
    assert (await cli("history", "--json")).out == ""


@pytest.mark.parametrize("command", ["history", "reconcile"])
async def test_history_and_reconcile_refuse_no_journal(cli, command):
    """Both work on the journal: --no-journal is a configuration error (2)."""
    result = await cli("--no-journal", command)
    assert result.code == 2
    assert result.err.startswith(f"Configuration error: `{command}` works on")
    assert sum(c.requests for c in cli.sandbox.counters.values()) == 0


# -- reconcile -------------------------------------------------------------------------


async def test_reconcile_with_nothing_left_open_says_so(cli):
    """Nothing pending of a dead owner: one sentence, exit 0, nothing sent."""
    assert (await cli("provision", "--yes")).code == 0
    confirms = cli.sandbox.counters["confirm"].requests
    result = await cli("reconcile")
    assert (result.code, result.out) == (0, "")
    assert result.err.startswith("Nothing to reconcile: no purchase in the journal")
    assert (await cli("reconcile", "--json")).out == ""
    assert cli.sandbox.counters["confirm"].requests == confirms


async def test_reconcile_buys_with_the_same_token(cli):
    """A confirm that never arrived: the same token is sent, the line is bought."""
    token = await seed_sqlite(state_journal(), cli)
    previews = cli.sandbox.counters["preview"].requests
    result = await cli("reconcile")
    assert result.code == 0
    [charge] = cli.sandbox.ledger
    assert charge.preview_token == token
    assert cli.sandbox.counters["preview"].requests == previews  # no new preview
    header, row = result.out.splitlines()
    assert header.startswith("token")
    assert row.split()[1:3] == ["bought", charge.phone_number]
    assert result.err.startswith("Reconciled 1 purchase(s) left open by a process")
    assert f"bought {charge.phone_number}" in result.err
    [entry] = await entries_of(state_journal())
    assert (entry.state, entry.preview_token) == ("bought", token)


async def test_reconcile_json_and_an_unknown_outcome_exit_3(cli):
    """A resend refused proves nothing: unknown, with the line as evidence; exit 3."""
    token = await seed_sqlite(state_journal(), cli, spent=True)
    result = await cli("reconcile", "--json")
    assert result.code == 3
    [entry] = result.json_lines()
    [charge] = cli.sandbox.ledger
    assert (entry["preview_token"], entry["state"]) == (token, "unknown")
    assert [e["worker_id"] for e in entry["evidence"]] == [charge.worker_id]
    assert result.err == ""
    # Settled once: a second reconcile finds nothing.
    again = await cli("reconcile", "--json")
    assert (again.code, again.out) == (0, "")


async def test_reconcile_needs_credentials(cli):
    """`reconcile` resends a token: without the secret it is a configuration error."""
    await seed_sqlite(state_journal(), cli)
    cli.monkeypatch.delenv("SENDBLUE_API_SECRET_KEY")
    result = await cli("reconcile")
    assert result.code == 2
    assert "missing Sendblue credentials" in result.err
    [entry] = await entries_of(state_journal())
    assert entry.state == "pending"


# -- provision reconciles first --------------------------------------------------------


async def test_provision_reconciles_first_and_says_what_it_found(cli):
    """A purchase a dead process left open is settled and told, then the new one."""
    token = await seed_sqlite(state_journal(), cli)
    result = await cli("provision", "--yes")
    assert result.code == 0
    first, *_ = result.err.splitlines()
    assert first.startswith("Reconciled 1 purchase(s) left open by a process")
    assert first.endswith("See `sendblue-lines history`.")
    reconciled, bought = cli.sandbox.ledger
    assert reconciled.preview_token == token
    assert f"bought {reconciled.phone_number}" in first
    # stdout holds the line this run bought, not the reconciled one.
    assert result.out.split("\t")[0] == bought.phone_number
    entries = await entries_of(state_journal())
    assert [(e.preview_token, e.state) for e in entries] == [
        (token, "bought"),
        (bought.preview_token, "bought"),
    ]


async def test_provision_with_nothing_to_settle_stays_quiet(cli):
    """No purchase left open: not a word about reconciling at default verbosity."""
    result = await cli("provision", "--yes")
    assert result.code == 0
    assert "econcil" not in result.err


async def test_an_unknown_found_by_provision_makes_it_exit_3(cli):
    """A reconciled unknown needs a human: provision buys on, then exits 3."""
    await seed_sqlite(state_journal(), cli, spent=True)
    result = await cli("provision", "--yes", "--json")
    assert result.code == 3
    [first] = [line for line in result.err.splitlines() if "Reconciled" in line]
    assert "unknown (a human must check the account; lines no journal entry " in first
    assert f"accounts for: {cli.sandbox.ledger[0].phone_number})" in first
    [bought] = result.json_lines()
    assert bought["outcome"] == "bought"


async def test_an_error_after_an_unknown_was_settled_first_is_exit_3(cli):
    """Provision settled a dead process's purchase as unknown, then failed: 3, not 2."""
    await seed_sqlite(state_journal(), cli, spent=True)
    cli.sandbox.inject("limits", Fault.drop_before(), times=10)
    result = await cli("provision", "--yes")
    assert (result.code, result.out) == (3, "")
    reconciled, failed = result.err.splitlines()
    assert reconciled.startswith("Reconciled 1 purchase(s)")
    assert failed.startswith("Could not reach Sendblue: ")


# -- the journal on PostgreSQL -------------------------------------------------------


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """A DSN (with a password the trusting server ignores) to a database of our own.

    Skipped, with how to get a server, where none answers, unless
    SENDBLUE_LINES_REQUIRE_POSTGRES=1 (as in CI): then it fails.
    """
    admin = await asyncpg.connect(await need_postgres(), timeout=5)
    name = "cli_" + uuid.uuid4().hex[:16]
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urllib.parse.urlsplit(POSTGRES_DSN)
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or "postgres"
        yield urllib.parse.urlunsplit(
            parts._replace(netloc=f"{user}:{DSN_PASSWORD}@{host}", path=f"/{name}")
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_postgresql_dsn_journals_there(cli, postgres_dsn):
    """--journal DSN: provision, history, reconcile on PostgreSQL; no password out."""
    cli.secrets.append(DSN_PASSWORD)
    async with PostgresJournal(postgres_dsn, lease=0.001) as journal:
        token = await seed_orphan(journal, cli)
    result = await cli("-vv", "--journal", postgres_dsn, "provision", "--yes")
    assert result.code == 0
    assert "sendblue-lines: DEBUG" in result.err
    assert "Reconciled 1 purchase(s)" in result.err
    history = await cli("history", "--journal", postgres_dsn, "--json")
    first, second = history.json_lines()
    assert (first["preview_token"], first["state"]) == (token, "bought")
    assert second["state"] == "bought"
    text = await cli("-v", "history", "--journal", postgres_dsn)
    assert "2 purchase(s) in the journal at postgresql://" in text.err
    assert ":***@" in text.err


async def test_the_variable_may_hold_a_dsn(cli, postgres_dsn):
    """SENDBLUE_LINES_JOURNAL=postgresql://... opens PostgreSQL too."""
    cli.secrets.append(DSN_PASSWORD)
    cli.monkeypatch.setenv(JOURNAL_VARIABLE, postgres_dsn)
    assert (await cli("provision", "--yes")).code == 0
    async with PostgresJournal(postgres_dsn) as journal:
        assert [e.state for e in await journal.entries()] == ["bought"]
    assert not state_journal().exists()


async def test_keys_and_settle_on_a_postgresql_journal(cli, postgres_dsn):
    """A key's total, history --key and settle (a refusal too) on PostgreSQL."""
    cli.secrets.append(DSN_PASSWORD)
    journal = ("--journal", postgres_dsn)
    cli.sandbox.inject("confirm", Fault.drop_after_commit())
    assert (await cli(*journal, "provision", "--key", "agent:1", "--yes")).code == 3
    history = await cli(*journal, "history", "--key", "agent:1")
    shown = history.out.splitlines()[1].split()[0]
    [charge] = cli.sandbox.ledger
    settled = await cli(*journal, "settle", shown, "--bought", charge.phone_number)
    assert settled.code == 0
    refused = await cli(*journal, "settle", shown, "--not-bought")
    assert refused.code == 2
    assert refused.err.startswith("Not settled: PostgreSQL journal postgresql://")
    assert refused.err.endswith("this one is 'bought'; nothing changed.\n")
    done = await cli(*journal, "provision", "--key", "agent:1", "--count", "2", "--yes")
    assert done.code == 0
    assert "holds 2 of 2 line(s); this run bought 1." in done.err
    assert len(cli.sandbox.ledger) == 2


async def test_an_unreachable_postgresql_is_one_sentence_without_the_password(cli):
    """Nothing listens: exit 2, the DSN shown redacted, nothing sent to Sendblue."""
    cli.secrets.append(DSN_PASSWORD)
    dsn = f"postgresql://app:{DSN_PASSWORD}@127.0.0.1:1/nowhere"
    for argv in (["provision", "--yes"], ["history"], ["reconcile", "--json"]):
        result = await cli("-vv", "--journal", dsn, *argv)
        assert result.code == 2, argv
        assert result.out == ""
        [sentence] = result.err.splitlines()[-1:]
        assert sentence.startswith("The purchase journal failed: PostgreSQL journal")
        assert "postgresql://app:***@127.0.0.1:1/nowhere" in sentence
    assert cli.sandbox.counters["preview"].requests == 0


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:not-a-port", "[::1", "127.0.0.1:99999"],
    ids=["port-not-a-number", "unclosed-bracket", "port-too-big"],
)
async def test_a_malformed_dsn_is_exit_2_in_a_process(sendblue_sandbox, address):
    """A DSN asyncpg cannot parse: one sentence, exit 2, no traceback, no password."""
    dsn = f"postgresql://app:{DSN_PASSWORD}@{address}/db"
    result = await run(sendblue_sandbox, "--journal", dsn, "provision", "--yes")
    assert result.code == 2
    assert result.out == ""
    [sentence] = result.err.splitlines()
    assert sentence.startswith("The purchase journal failed: PostgreSQL journal")
    assert f"postgresql://app:***@{address}/db" in sentence
    assert DSN_PASSWORD not in result.err
    assert sum(c.requests for c in sendblue_sandbox.counters.values()) == 0


# -- a journal that cannot be opened ---------------------------------------------------


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a SQLite database at all" * 100)
    path.chmod(0o600)


def _group_writable(path: Path) -> None:
    path.write_bytes(b"")
    path.chmod(0o666)


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (_corrupt, "not a sendblue-lines journal: not a SQLite database"),
        (_group_writable, "chmod 600"),
    ],
    ids=["corrupt", "group-writable"],
)
@pytest.mark.parametrize("command", ["provision", "history", "reconcile"])
async def test_a_bad_journal_file_is_one_sentence_and_exit_2(
    cli, tmp_path, spoil, why, command
):
    """A corrupt or unsafe file: the reason and what to do, exit 2, nothing sent."""
    path = tmp_path / "journal.sqlite3"
    spoil(path)
    argv = ["--journal", str(path), command] + (
        ["--yes"] if command == "provision" else []
    )
    result = await cli(*argv)
    assert result.code == 2
    assert result.out == ""
    [sentence] = result.err.splitlines()
    assert sentence.startswith(f"The purchase journal failed: SQLite journal {path}")
    assert why in sentence
    assert sentence.endswith("or pass --no-journal to go without one.")
    assert sum(c.requests for c in cli.sandbox.counters.values()) == 0


async def test_another_applications_database_is_refused_untouched_in_a_process(
    sendblue_sandbox, tmp_path
):
    """`--journal app.db` by mistake: exit 2, the file unchanged, nothing bought."""
    path = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as app:
        app.execute("PRAGMA journal_mode = WAL")
        app.execute("CREATE TABLE purchases (id INTEGER PRIMARY KEY, sku TEXT)")
        app.execute("INSERT INTO purchases (sku) VALUES ('tea')")
    before = path.read_bytes()
    result = await run(
        sendblue_sandbox, "provision", "--journal", str(path), "--yes", "--count", "2"
    )
    assert result.code == 2
    assert result.out == ""
    [sentence] = result.err.splitlines()
    assert "not a sendblue-lines journal" in sentence
    assert "tables of its own (purchases)" in sentence
    assert "the file was left unchanged" in sentence
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
    assert sendblue_sandbox.ledger == []
    assert sum(c.requests for c in sendblue_sandbox.counters.values()) == 0


async def test_a_journal_in_a_folder_that_cannot_exist_is_exit_2(cli, tmp_path):
    """A path under a regular file (even root cannot write there): exit 2."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = await cli("--journal", str(blocker / "journal.sqlite3"), "history")
    assert result.code == 2
    assert "The purchase journal failed" in result.err
    assert "Not a directory" in result.err


async def test_a_state_directory_that_cannot_be_made_is_exit_2(cli, tmp_path):
    """XDG_STATE_HOME is a file: its sendblue-lines folder cannot be created."""
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    cli.monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    result = await cli("provision", "--yes")
    assert result.code == 2
    [sentence] = result.err.splitlines()
    assert "cannot create its directory" in sentence
    assert sentence.endswith("or pass --no-journal to go without one.")
    assert cli.sandbox.counters["preview"].requests == 0


# -- the demo --------------------------------------------------------------------------


async def test_the_demo_reconciles_a_killed_child_in_a_temporary_journal(capsys):
    """The crash step: a child killed mid-confirm, its token bought by reconcile.

    And no journal is written in the user's state directory.
    """
    code = await asyncio.wait_for(asyncio.to_thread(main, ["demo", "--count", "1"]), 60)
    out = capsys.readouterr().out
    assert code == 0
    step = out.split("A crash mid-confirm, and reconcile()")[1].split("\n== ")[0]
    pid = re.search(r"pid (\d+) was killed with SIGKILL", step)
    assert pid is not None
    kept = re.search(r"the journal kept its intent: (lpv_\S+) pending", step)
    settled = re.search(
        r"resent the same token \(no new preview\): (lpv_\S+) bought", step
    )
    assert kept is not None
    assert settled is not None
    assert kept.group(1) == settled.group(1)
    assert "the ledger holds 1 charge for that token" in step
    assert not state_journal().parent.exists()


# -- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["provision", "--yes"],
        ["provision", "--yes", "--json"],
        ["reconcile"],
        ["reconcile", "--json"],
        ["history"],
        ["history", "--json"],
        ["provision", "--key", "k", "--count", "2", "--yes", "--json"],
        ["history", "--key", "k", "--json"],
    ],
    ids=" ".join,
)
async def test_no_output_and_no_journal_byte_holds_the_secret(cli, argv):
    """At -vv, through a lost answer and an unknown reconciled: no secret anywhere."""
    await seed_sqlite(state_journal(), cli, spent=True)
    cli.sandbox.inject("confirm", Fault.drop_after_commit())
    result = await cli("-vv", "--log-format", "json", *argv)
    assert "sendblue_event" in result.err
    assert result.code in (0, 3)
    secret = cli.sandbox.api_secret_key
    assert secret.encode() not in state_journal().read_bytes()
    for entry in await entries_of(state_journal()):
        assert secret not in repr(entry)
        assert secret not in json.dumps(entry_json(entry))


async def test_an_unopenable_dsn_error_holds_no_password_anywhere():
    """The JournalError of a DSN with a password: nothing reachable from it holds it."""
    dsn = f"postgresql://app:{DSN_PASSWORD}@127.0.0.1:1/nowhere"
    choice = choose_journal(namespace(journal=dsn), {})
    assert choice is not None
    journal = make_journal(choice)
    with pytest.raises(JournalError) as caught:
        await journal.open()
    assert secret_paths(caught.value, [DSN_PASSWORD]) == []
    assert DSN_PASSWORD not in repr(journal) + repr(choice)
