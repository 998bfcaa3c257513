"""A journaled purchase after the clock was moved over HTTP, with no wait in real time.

The issue's case: a service buys the day's lines, the test moves the
sandbox's clock a day through the control API, and the next purchase (in the
same process or a new one sharing the journal) buys what the sandbox's
limits then allow, at once.
"""

from __future__ import annotations

from cli_support import LINE, run
from sandbox_support import from_outside

from sendblue_lines import LinesClient, Provisioner, SQLiteJournal

A_DAY_AND_AN_HOUR = {"advance_seconds": 25 * 3600}


async def test_a_journaled_provisioner_buys_the_next_days_lines_at_once(
    sendblue_sandbox, tmp_path
):
    """In one process: the day's 3, the clock moved 25 h over HTTP, 3 more at once."""
    sandbox = sendblue_sandbox
    async with (
        SQLiteJournal(tmp_path / "journal.sqlite3") as journal,
        LinesClient(
            sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url
        ) as client,
    ):
        provisioner = Provisioner(client, journal=journal)
        first = await provisioner.provision_many(3)
        [(status, _)] = await from_outside(
            sandbox, ("POST", "/_sandbox/clock", A_DAY_AND_AN_HOUR)
        )
        assert status == 200
        second = await provisioner.provision_many(3)
    assert (len(first.lines), len(second.lines)) == (3, 3), second
    assert len(sandbox.purchases()) == 6


async def test_a_new_cli_process_buys_the_next_days_lines_at_once(
    sendblue_sandbox, tmp_path
):
    """`provision --count 3` twice, the clock moved 25 h between: 6 lines, no wait."""
    sandbox = sendblue_sandbox
    journal = str(tmp_path / "journal.sqlite3")
    command = ("provision", "--yes", "--count", "3", "--journal", journal)
    first = await run(sandbox, *command)
    assert first.code == 0, first.err
    assert len(LINE.findall(first.out)) == 3
    [(status, _)] = await from_outside(
        sandbox, ("POST", "/_sandbox/clock", A_DAY_AND_AN_HOUR)
    )
    assert status == 200
    second = await run(sandbox, *command)
    assert second.code == 0, second.err
    assert len(LINE.findall(second.out)) == 3
    assert len(sandbox.purchases()) == 6
