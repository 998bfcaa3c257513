"""Text from elsewhere never drives the terminal: one line, escaped, cut to size.

A hostile or broken server (or a proxy before it) may put escape sequences,
newlines, bidi overrides or a whole HTML page where the command expects a
few words. Every such text the command prints, in sentences, tables, rows,
progress lines, the -v log and --json, reaches the terminal as one line of
printable characters, each piece cut at 200 characters with the cut said.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from cli_support import InProcess

from sendblue_lines import SQLiteJournal
from sendblue_lines.sandbox import Fault

#: Clears the screen, retitles the window, forges a line, reverses text,
#: sends a C1 CSI, a DEL, bidi isolates and marks; then runs far too long.
HOSTILE = (
    "\x1b[2J\x1b]0;pwned\x07\r\nsendblue-lines: INFO: forged\u202edesrever"
    "\u2066\u200f\x9b31m\x7f\u2028" + "A" * 600
)
#: The escapes the command shows instead (the start of HOSTILE, escaped).
ESCAPED = "\\x1b[2J\\x1b]0;pwned\\x07\\r\\nsendblue-lines: INFO: forged\\u202e"
#: The longest line any output here may have: a log line is cut at 1000
#: characters, then says how many more there were.
LONGEST = 1040


def assert_safe(text: str, *, tabs: bool = False) -> list[str]:
    """Every line of `text` printable (tabs allowed where asked) and not too long."""
    lines = text.splitlines()
    for line in lines:
        shown = line.replace("\t", "") if tabs else line
        assert shown.isprintable(), repr(line)
        assert len(line) <= LONGEST, len(line)
    assert "\r" not in text
    return lines


def assert_json_safe(text: str) -> list[dict[str, Any]]:
    """Each line one JSON object, in printable ASCII only: escapes, never raw."""
    lines = text.splitlines()
    for line in lines:
        assert line.isascii(), repr(line)
        assert line.isprintable(), repr(line)
    return [json.loads(line) for line in lines]


def refusal(status: int = 400) -> Fault:
    """An error answer whose code and message are both `HOSTILE`."""
    return Fault.respond(
        status, {"status": "ERROR", "error": HOSTILE, "message": HOSTILE}
    )


async def test_a_refused_confirm_is_one_safe_sentence(cli: InProcess) -> None:
    """`provision`: the server's code and message are escaped and cut, on one line."""
    cli.sandbox.inject("confirm", refusal())
    result = await cli("provision", "--yes")
    assert result.code == 2
    [failure] = [
        line for line in assert_safe(result.err) if line.startswith("[1/1] slot 0: ")
    ]
    assert ESCAPED in failure
    assert "more characters]" in failure


async def test_json_output_carries_server_text_escaped_and_whole(
    cli: InProcess,
) -> None:
    """`provision --json`: the body whole, as JSON escapes; no raw control character."""
    cli.sandbox.inject(
        "confirm",
        Fault.respond(
            500,
            {"status": "ERROR", "error": "provisioning_failed", "message": HOSTILE},
        ),
    )
    result = await cli("provision", "--yes", "--json")
    assert result.code == 3
    [outcome] = assert_json_safe(result.out)
    assert outcome["outcome"] == "provisioning_failed"
    assert outcome["body"]["message"] == HOSTILE
    assert outcome["message"].isprintable()
    assert "more characters]" in outcome["message"]
    assert_safe(result.err)


async def test_history_shows_a_hostile_error_code_as_one_escaped_cell(
    cli: InProcess,
) -> None:
    """`history`: an error code from the server is an escaped cell of one row."""
    cli.sandbox.inject("confirm", refusal())
    await cli("provision", "--yes")
    table = await cli("history")
    [head, row] = assert_safe(table.out)
    assert head.startswith("token")
    assert "not_bought" in row
    assert ESCAPED in row
    assert_safe(table.err)
    [entry] = assert_json_safe((await cli("history", "--json")).out)
    assert entry["error_code"] == HOSTILE


async def test_a_bought_line_with_hostile_fields_prints_escaped(
    cli: InProcess,
) -> None:
    """A confirm answer's number and ids are escaped on stdout and stderr alike."""
    cli.sandbox.inject(
        "confirm",
        Fault.respond(
            200,
            {
                "status": "OK",
                "phone_number": "+1415\x1b[2J" + "5" * 300,
                "worker_id": "worker\ttab",
                "subscription_id": "sub\u202e",
            },
        ),
    )
    result = await cli("provision", "--yes")
    assert result.code == 0
    [row] = assert_safe(result.out, tabs=True)
    number, worker, subscription = row.split("\t")
    assert number.startswith("+1415\\x1b[2J555")
    assert number.endswith("more characters]")
    assert (worker, subscription) == ("worker\\ttab", "sub\\u202e")
    [step] = [line for line in assert_safe(result.err) if "slot 0" in line]
    assert step.startswith("[1/1] slot 0: bought +1415\\x1b[2J")


@pytest.mark.parametrize("status", [404, 502])
async def test_a_proxys_html_page_is_one_line(cli: InProcess, status: int) -> None:
    """`limits` behind a proxy's HTML error page: one line, never the page."""
    cli.sandbox.inject("limits", Fault.html(status), times=5)
    result = await cli("limits")
    lines = assert_safe(result.out) + assert_safe(result.err)
    [said] = [line for line in lines if "<" in line]
    assert "<!DOCTYPE html>\\n<html>" in said


async def test_plan_and_preview_refusals_are_one_line(cli: InProcess) -> None:
    """`plan` (limits unknown) and `preview` (403) quote the server on one line."""
    cli.sandbox.inject("limits", refusal(404))
    plan = await cli("plan", "2")
    [sentence] = assert_safe(plan.out)
    assert ESCAPED in sentence
    cli.sandbox.inject("preview", refusal(403))
    preview = await cli("preview")
    assert preview.code == 2
    [refused] = assert_safe(preview.err)
    assert refused.startswith("Sendblue refused (403: ")
    assert ESCAPED in refused


async def test_the_verbose_log_escapes_what_the_server_said(cli: InProcess) -> None:
    """`-vv`: every log line is one printable line; as JSON, escaped by JSON."""
    cli.sandbox.inject("confirm", refusal())
    result = await cli("-vv", "provision", "--yes")
    logged = [
        line for line in assert_safe(result.err) if line.startswith("sendblue-lines: ")
    ]
    assert any(ESCAPED[:20] in line for line in logged), logged
    # The forged log line stays inside the line that quotes it.
    assert not any(line.startswith("sendblue-lines: INFO: forged") for line in logged)
    cli.sandbox.inject("confirm", refusal())
    as_json = await cli("-vv", "--log-format", "json", "provision", "--yes")
    records = [line for line in as_json.err.splitlines() if line.startswith("{")]
    assert any(
        HOSTILE in record["message"] for record in assert_json_safe("\n".join(records))
    )


async def test_reconcile_escapes_the_evidence_it_found(
    cli: InProcess, tmp_path: Path
) -> None:
    """`reconcile`: a line the account's state lists is quoted escaped, on one line."""
    path = tmp_path / "journal.sqlite3"
    async with cli.client() as client:
        preview = await client.preview()
        await client.confirm(preview)  # spent: the resend is refused, unknown
    cli.sandbox.add_line(sendblue_number="+1\x1b]0;x\x07" + "9" * 300)
    dead = f"{socket.gethostname()}:{os.getpid()}:not-this-start"
    async with SQLiteJournal(path) as journal:
        [slot] = await journal.reserve(cli.sandbox.api_key_id, dead, 1, None)
        await journal.record_intent(slot, preview.token, preview.expires_at)
    result = await cli("--journal", str(path), "reconcile")
    assert result.code == 3
    [sentence] = [line for line in assert_safe(result.err) if "Reconciled" in line]
    assert "+1\\x1b]0;x\\x07999" in sentence
    assert_safe(result.out)
