"""Structured logs: child loggers, the `sendblue_` keys, the env handler, JSON lines.

Every record about a purchase carries `sendblue_event`, `sendblue_slot`,
`sendblue_attempt`, `sendblue_status`, `sendblue_outcome` and
`sendblue_token_fp` (the fingerprint, never the token), whatever the
purchase came to; purchases run against the sandbox on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from foundation_support import OutrunFirst

from sendblue_lines import (
    ConfigurationError,
    LinesClient,
    OutcomeUnknownError,
    Provisioner,
    ProvisioningFailedError,
    RetryPolicy,
)
from sendblue_lines._logging import KEYS, JsonFormatter, PrintableFormatter
from sendblue_lines._telemetry import fingerprint
from sendblue_lines.cli import main
from sendblue_lines.sandbox import Fault, Sandbox

NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
CLIENT_LOGGERS = {"sendblue_lines.http", "sendblue_lines.provisioner"}
#: Events about one slot's purchase (the others concern a batch as a whole).
SLOT_EVENTS = {
    "outcome", "repreview", "confirm_resend", "outcome_unknown", "token_expiring",
    "confirm_not_sent", "no_lines_retry", "declined",
}  # fmt: skip


def connect(sandbox: Sandbox[Any]) -> LinesClient:
    return LinesClient(
        sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url, retry=NO_WAIT
    )


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("sendblue_lines.")]


def check_records(records: list[logging.LogRecord], tokens: set[str]) -> None:
    """The keys on every record; slots, attempts and fingerprints where they belong."""
    fingerprints = {fingerprint(token) for token in tokens}
    assert records
    for record in records:
        fields = vars(record)
        missing = [key for key in KEYS if key not in fields]
        assert not missing, f"{record.name}: {record.getMessage()!r} lacks {missing}"
        assert isinstance(record.sendblue_event, str), record.getMessage()
        for token in tokens:
            assert token not in repr(fields)
        if record.sendblue_token_fp is not None:
            assert record.sendblue_token_fp in fingerprints
        if record.name not in CLIENT_LOGGERS:
            continue
        message = record.getMessage()
        if record.sendblue_event in SLOT_EVENTS or "provision-" in message:
            assert isinstance(record.sendblue_slot, int), message
            assert isinstance(record.sendblue_attempt, int), message
        if "provision-confirm" in message:
            assert record.sendblue_token_fp in fingerprints, message


def test_the_loggers_are_children_of_one_with_a_null_handler() -> None:
    """sendblue_lines has a NullHandler; the SDK's modules log on its children."""
    import sendblue_lines._batch
    import sendblue_lines._transport
    import sendblue_lines.cli._commands
    import sendblue_lines.client
    import sendblue_lines.provisioner

    root = logging.getLogger("sendblue_lines")
    assert any(isinstance(h, logging.NullHandler) for h in root.handlers)
    assert sendblue_lines._transport.logger.name == "sendblue_lines.http"
    assert sendblue_lines.client.logger.name == "sendblue_lines.http"
    assert sendblue_lines.provisioner.logger.name == "sendblue_lines.provisioner"
    assert sendblue_lines._batch.logger.name == "sendblue_lines.provisioner"
    assert sendblue_lines.cli._commands.logger.name == "sendblue_lines.cli"
    for logger in (sendblue_lines.provisioner.logger, sendblue_lines.client.logger):
        assert logger.parent is root


async def test_a_bought_line_is_logged_with_every_key(
    sendblue_sandbox: Sandbox[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The outcome record says bought, slot 0, attempt 1, the token's fingerprint."""
    with caplog.at_level(logging.DEBUG, logger="sendblue_lines"):
        async with connect(sendblue_sandbox) as client:
            await Provisioner(client).provision()
    [charge] = sendblue_sandbox.ledger
    records = ours(caplog)
    check_records(records, {charge.preview_token})
    [outcome] = [r for r in records if r.sendblue_event == "outcome"]
    assert (outcome.sendblue_slot, outcome.sendblue_attempt) == (0, 1)
    assert outcome.sendblue_outcome == "bought"
    assert outcome.sendblue_token_fp == fingerprint(charge.preview_token)
    http = [r for r in records if r.sendblue_event == "http_reply"]
    assert [r.sendblue_status for r in http] == [200, 200, 200]
    sandbox = [r for r in records if r.name == "sendblue_lines.sandbox"]
    assert [r.sendblue_endpoint for r in sandbox] == ["confirm"]
    assert sandbox[-1].sendblue_outcome == "bought"


@pytest.mark.parametrize(
    ("fault", "error", "outcome"),
    [
        pytest.param(Fault.provisioning_failed(), ProvisioningFailedError,
                     "provisioning_failed", id="provisioning-failed"),
        pytest.param(Fault.drop_after_commit(), OutcomeUnknownError, "unknown",
                     id="unknown"),
    ],
)  # fmt: skip
async def test_money_moved_without_a_line_is_logged_with_every_key(
    sendblue_sandbox: Sandbox[Any],
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    error: type[Exception],
    outcome: str,
) -> None:
    """A provisioning failure or an unknown outcome: a WARNING with its outcome."""
    sendblue_sandbox.inject("confirm", fault)
    with caplog.at_level(logging.DEBUG, logger="sendblue_lines"):
        async with connect(sendblue_sandbox) as client:
            with pytest.raises(error):
                await Provisioner(client).provision()
    [charge] = sendblue_sandbox.ledger
    records = ours(caplog)
    check_records(records, {charge.preview_token})
    [settled] = [r for r in records if r.sendblue_event == "outcome"]
    assert settled.levelno == logging.WARNING
    assert settled.sendblue_outcome == outcome
    assert settled.sendblue_token_fp == fingerprint(charge.preview_token)
    if outcome == "unknown":
        resends = [r for r in records if r.sendblue_event == "confirm_resend"]
        assert resends
        assert all(r.sendblue_slot == 0 for r in resends)


async def test_a_repreview_and_a_batch_are_logged_with_every_key(
    outrun_first: OutrunFirst,
    sendblue_sandbox: Sandbox[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 410 then a new token in a batch of 4 stopped by the daily limit of 3."""
    with caplog.at_level(logging.DEBUG, logger="sendblue_lines"):
        async with connect(sendblue_sandbox) as client:
            result = await Provisioner(client, approve=outrun_first).provision_many(
                4, concurrency=1
            )
    assert len(result.lines) == 3
    records = ours(caplog)
    check_records(records, set(outrun_first.asked))
    [repreview] = [r for r in records if r.sendblue_event == "repreview"]
    assert (repreview.sendblue_slot, repreview.sendblue_attempt) == (0, 1)
    assert repreview.sendblue_status == 410
    settled = [r for r in records if r.sendblue_event == "outcome"]
    assert sorted(r.sendblue_slot for r in settled) == [0, 1, 2]
    assert {r.sendblue_outcome for r in settled} == {"bought"}
    assert [r.sendblue_attempt for r in settled if r.sendblue_slot == 0] == [2]


def test_the_json_formatter_writes_one_object_with_every_key() -> None:
    """A JSON line holds time, level, logger, message, the keys and any extra."""
    record = logging.LogRecord(
        "sendblue_lines.http", logging.INFO, __file__, 1, "sent %s", ("x",), None
    )
    record.sendblue_event = "http_reply"
    record.sendblue_http_attempt = 2
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "sent x"
    assert data["level"] == "INFO"
    assert data["logger"] == "sendblue_lines.http"
    assert data["sendblue_event"] == "http_reply"
    assert data["sendblue_http_attempt"] == 2
    assert all(key in data for key in KEYS)
    assert data["sendblue_slot"] is None


@pytest.mark.parametrize(
    "ours_first",
    [pytest.param(False, id="theirs-first"), pytest.param(True, id="ours-first")],
)
def test_a_traceback_is_printable_in_our_handler_and_untouched_in_theirs(
    ours_first: bool,
) -> None:
    """A traceback quoting the server: escaped by our handler, as it was in theirs.

    logging caches a traceback's text on the record for the next handler;
    ours neither prints another formatter's raw text nor leaves its escaped
    one for the application's handlers, whichever handler runs first.
    """
    words = "sub_1\x1b]0;pwned\x07\x1b[2J"
    ours, theirs = io.StringIO(), io.StringIO()
    printing = logging.StreamHandler(ours)
    printing.setFormatter(PrintableFormatter("%(message)s"))
    plain = logging.StreamHandler(theirs)
    plain.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test_structured_logs.traceback")
    logger.propagate = False
    logger.handlers[:] = [printing, plain] if ours_first else [plain, printing]
    try:
        try:
            raise ValueError(words)
        except ValueError:
            logger.exception("failed")
    finally:
        logger.handlers.clear()
    assert "\x1b" not in ours.getvalue()
    assert "ValueError: sub_1\\x1b]0;pwned\\x07\\x1b[2J" in ours.getvalue()
    assert all(line.isprintable() for line in ours.getvalue().splitlines())
    assert f"ValueError: {words}" in theirs.getvalue()


def test_a_traceback_received_as_text_is_printable_too() -> None:
    """A record rebuilt from elsewhere has only its traceback's text: escaped too."""
    text = "Traceback (most recent call last):\nValueError: sub_1\x1b]0;pwned\x07"
    record = logging.makeLogRecord({"msg": "failed", "exc_text": text})
    shown = PrintableFormatter("%(message)s").format(record)
    assert shown == "failed\nTraceback (most recent call last):\n" + (
        "ValueError: sub_1\\x1b]0;pwned\\x07"
    )
    assert record.exc_text == text


# -- SENDBLUE_LINES_LOG / SENDBLUE_API_LOG, in a fresh interpreter -----------------

BUY = textwrap.dedent(
    """
    import asyncio
    import logging
    import sys

    from sendblue_lines import LinesClient, Provisioner
    from sendblue_lines.sandbox import Fault, Sandbox

    if "--basic-config" in sys.argv:
        logging.basicConfig(stream=sys.stdout, level=logging.WARNING)


    async def main():
        async with Sandbox() as sandbox:
            if "--hostile" in sys.argv:  # a server whose words drive terminals
                words = "sub_1\\x1b]0;pwned\\x07\\x1b[2J\\nfailed"
                body = {"status": "ERROR", "error": "provisioning_failed",
                        "message": words.encode().decode("unicode_escape")}
                sandbox.inject("confirm", Fault.respond(500, body))
            else:
                sandbox.inject("confirm", Fault.provisioning_failed())
            async with LinesClient(
                sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url
            ) as client:
                try:
                    await Provisioner(client).provision()
                except Exception as exc:
                    print("raised", type(exc).__name__)


    asyncio.run(main())
    """
)


def run_buy(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[str, str]:
    script = tmp_path / "buy.py"
    script.write_text(BUY)
    clean = {k: v for k, v in os.environ.items() if "SENDBLUE" not in k}
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(script), *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**clean, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "levels"),
    [
        pytest.param("SENDBLUE_LINES_LOG", "info", {"WARNING"}, id="ours"),
        pytest.param("SENDBLUE_API_LOG", "DEBUG", {"DEBUG", "WARNING"}, id="official"),
        pytest.param("SENDBLUE_LINES_LOG", "Warning", {"WARNING"}, id="warning"),
    ],
)
def test_the_log_variable_installs_a_stderr_handler(
    tmp_path: Path, variable: str, value: str, levels: set[str]
) -> None:
    """The variable shows the SDK's records on stderr, at its level, with the keys.

    This purchase logs DEBUG (each request) and WARNING (the failure), no INFO.
    """
    out, err = run_buy(tmp_path, {variable: value})
    assert "raised ProvisioningFailedError" in out
    lines = [line for line in err.splitlines() if line.startswith("sendblue-lines: ")]
    assert {line.split()[1] for line in lines} == levels
    [warning] = [line for line in lines if " WARNING " in line]
    assert "sendblue_lines.provisioner: slot 0: ProvisioningFailedError" in warning
    assert "event=outcome slot=0 attempt=1" in warning
    assert "outcome=provisioning_failed" in warning


def test_the_stderr_handler_prints_server_text_on_one_printable_line(
    tmp_path: Path,
) -> None:
    """Escapes and line breaks from the server are shown escaped, never obeyed."""
    out, err = run_buy(tmp_path, {"SENDBLUE_LINES_LOG": "warning"}, "--hostile")
    assert "raised ProvisioningFailedError" in out
    assert "\x1b" not in err
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\nfailed" in err
    assert all(line.isprintable() for line in err.splitlines())


def test_without_a_variable_nothing_is_printed(tmp_path: Path) -> None:
    """No variable: the NullHandler keeps Python's last-resort handler quiet."""
    out, err = run_buy(tmp_path, {})
    assert "raised ProvisioningFailedError" in out
    assert err == ""


def test_an_application_with_logging_configured_gets_no_second_handler(
    tmp_path: Path,
) -> None:
    """With basicConfig first the variable adds nothing: each record shows once."""
    out, err = run_buy(tmp_path, {"SENDBLUE_LINES_LOG": "debug"}, "--basic-config")
    assert "sendblue-lines: " not in err
    assert out.count("slot 0: ProvisioningFailedError") == 1


def test_an_unknown_level_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SENDBLUE_LINES_LOG=verbose: a ConfigurationError naming the variable."""
    monkeypatch.setenv("SENDBLUE_LINES_LOG", "verbose")
    with pytest.raises(ConfigurationError, match="SENDBLUE_LINES_LOG must be one of"):
        LinesClient("key-id", "secret-value-1234", base_url="https://api.example.test")


# -- the CLI's --log-format json ----------------------------------------------------


async def test_the_cli_writes_json_log_lines(
    sendblue_sandbox: Sandbox[Any],
    sandbox_credentials: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--log-format json -v: every stderr log line is JSON with the keys."""
    argv = ["--log-format", "json", "provision", "--yes", "-v"]
    code = await asyncio.wait_for(asyncio.to_thread(main, argv), 30)
    err = capsys.readouterr().err
    assert code == 0
    objects = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [charge] = sendblue_sandbox.ledger
    [bought] = [o for o in objects if o["sendblue_event"] == "outcome"]
    assert bought["sendblue_outcome"] == "bought"
    assert bought["sendblue_token_fp"] == fingerprint(charge.preview_token)
    assert bought["logger"] == "sendblue_lines.provisioner"
    for obj in objects:
        assert all(key in obj for key in KEYS)
    # The person's own lines stay text.
    assert any(line.startswith("About to buy 1 line") for line in err.splitlines())
