"""No traceback, ever: every failure of every subcommand is one sentence and a code.

Each case runs `sendblue-lines` as a real process against a sandbox on
127.0.0.1 (or against nothing, for what fails before any request) and
checks that stderr holds no traceback and that the exit code is the one
the docs and `--help` give.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import pytest
from cli_support import PIPE, environment, finish, run, spawn, wait_until

from sendblue_lines.cli import build_parser
from sendblue_lines.sandbox import Fault, Sandbox

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")


def one_sentence(err: str) -> str:
    [line] = err.splitlines()
    return line


def test_help_documents_every_exit_code():
    """The --help epilog lists each code the tests below expect, 4 included."""
    epilog = build_parser().epilog or ""
    for code in ("0", "1", "2", "3", "4", "130"):
        assert f"\n  {code} " in epilog


# -- options the SDK (or the OS) would refuse ---------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--timeout", "inf", "limits"],
        ["--timeout", "nan", "limits"],
        ["--timeout", "-1", "limits"],
        ["--timeout", "0", "preview"],
        ["--timeout", "1e400", "plan", "1"],
        ["--timeout", "99999999", "limits"],
        ["--timeout", "soon", "limits"],
        ["provision", "--count", "-1"],
        ["provision", "--count", "0"],
        ["provision", "--count", "100000000000000000000", "--yes"],
        ["provision", "--concurrency", "0"],
        ["provision", "--concurrency", "1e3"],
        ["plan", "-5"],
        ["plan", "99999999999999999999999"],
        ["demo", "--count", "1000000"],
        ["sandbox", "--port", "99999"],
        ["sandbox", "--latency-ms", "1" + "0" * 30],
        ["sandbox", "--daily-limit", "x"],
        ["no-such-command"],
    ],
    ids=" ".join,
)
async def test_refused_options_are_usage_errors(sendblue_sandbox, argv):
    """An option out of range is a usage error (2) before anything is sent."""
    result = await run(sendblue_sandbox, *argv)
    assert result.code == 2
    assert "error: argument" in result.err or "invalid choice" in result.err
    assert sendblue_sandbox.requests == []
    assert sum(c.requests for c in sendblue_sandbox.counters.values()) == 0


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("ftp://127.0.0.1/", "Configuration error"),
        ("http://192.0.2.1", "Configuration error"),  # plain http off loopback
        ("http://127.0.0.1:99999", "Configuration error"),
        ("::::", "Configuration error"),
        ("http://127.0.0.1:{closed}", "Could not reach Sendblue"),
    ],
    ids=["scheme", "plain-http", "port", "garbage", "unreachable"],
)
@pytest.mark.parametrize("command", [["limits"], ["preview"], ["provision", "--yes"]])
async def test_bad_or_unreachable_base_urls(sendblue_sandbox, base_url, says, command):
    """A bad base URL or a server that does not answer: one sentence, exit 2."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = base_url.format(closed=closed)
    result = await run(sendblue_sandbox, "--base-url", url, *command)
    assert result.code == 2
    assert one_sentence(result.err).startswith(says)
    assert result.out == ""


@pytest.mark.parametrize("command", [["limits"], ["plan", "2"], ["preview"]])
async def test_missing_credentials(sendblue_sandbox, command):
    """No secret in the environment: the variables are named, exit 2."""
    env = environment(sendblue_sandbox)
    del env["SENDBLUE_API_SECRET_KEY"]
    result = await run(sendblue_sandbox, *command, env=env)
    assert result.code == 2
    assert "SENDBLUE_API_SECRET_KEY" in one_sentence(result.err)
    assert sendblue_sandbox.requests == []


# -- servers that answer garbage -----------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "fault", "argv", "code"),
    [
        ("preview", Fault.malformed(), ["preview"], 2),
        ("preview", Fault.raw(200, b"\xff\xfe\x00"), ["preview", "--json"], 2),
        (
            "preview",
            Fault.respond(200, {"status": "OK", "preview_token": 7}),
            ["preview"],
            2,
        ),
        ("preview", Fault.oversized(), ["preview"], 2),
        ("preview", Fault.redirect("http://127.0.0.1:1/"), ["preview"], 2),
        ("confirm", Fault.malformed(after_commit=True), ["provision", "--yes"], 3),
        ("confirm", Fault.html(200, after_commit=True), ["provision", "--yes"], 3),
        ("limits", Fault.raw(200, b"[[[[[[[["), ["limits"], 0),
        ("limits", Fault.respond(200, [1, 2, 3]), ["plan", "2"], 0),
    ],
    ids=[
        "preview-not-json",
        "preview-not-utf8",
        "preview-token-not-a-string",
        "preview-oversized",
        "preview-redirect",
        "confirm-not-json",
        "confirm-html",
        "limits-not-json",
        "limits-a-list",
    ],
)
async def test_garbage_answers(sendblue_sandbox, endpoint, fault, argv, code):
    """Whatever the server answers: one thing said, a documented exit code."""
    sendblue_sandbox.inject(endpoint, fault, times=5)
    result = await run(sendblue_sandbox, *argv)
    assert result.code == code, result.err
    if code == 2:
        one_sentence(result.err)


# -- errors outside SendblueError ---------------------------------------------------


async def test_a_non_utf8_stdout_and_stderr(sendblue_sandbox):
    """An ASCII-only stdout/stderr gets escapes, never a UnicodeEncodeError."""
    sendblue_sandbox.account.plan = "standard"
    sendblue_sandbox.inject(
        "preview",
        Fault.respond(
            403, {"status": "ERROR", "message": "Forfait «standard» refusé ☎"}
        ),
    )
    env = environment(sendblue_sandbox, PYTHONIOENCODING="ascii")
    refused = await run(sendblue_sandbox, "preview", env=env)
    assert refused.code == 2
    assert "\\xab" in one_sentence(refused.err)  # «, escaped
    sendblue_sandbox.account.plan = "inbound_only"
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit())
    unknown = await run(sendblue_sandbox, "-v", "provision", "--yes", env=env)
    assert unknown.code == 3
    assert "\\u2026" in unknown.err  # the token's ellipsis, escaped
    assert "Logging error" not in unknown.err


async def test_stdout_closed_before_the_answer(sendblue_sandbox):
    """`limits | head` whose reader is gone: one sentence, exit 4, nothing more sent."""
    sendblue_sandbox.inject("limits", Fault.delay(0.5))
    reader, writer = os.pipe()
    try:
        async with spawn(sendblue_sandbox, "limits", stdout=writer) as process:
            os.close(writer)
            writer = -1
            os.close(reader)
            reader = -1
            result = await finish(process, sendblue_sandbox)
    finally:
        for end in (reader, writer):
            if end != -1:
                os.close(end)
    assert result.code == 4
    assert one_sentence(result.err).startswith(
        "Stopped: stdout was closed by the program reading it"
    )


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["provision", "--help"]])
async def test_help_into_a_closed_pipe(argv):
    """--help or --version into a closed pipe: exit 4, no "Exception ignored"."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        async with spawn(None, *argv, stdout=writer) as process:
            result = await finish(process, None)
    finally:
        os.close(writer)
    assert result.code == 4


async def test_stdout_closed_during_a_batch_keeps_every_line(sendblue_sandbox):
    """Stdout gone mid-batch: the batch stops, the line goes to stderr, exit 3."""
    sandbox = sendblue_sandbox
    reader, writer = os.pipe()
    os.close(reader)
    argv = ("provision", "--count", "3", "--concurrency", "1", "--yes")
    try:
        async with spawn(sandbox, *argv, stdout=writer) as process:
            result = await finish(process, sandbox)
    finally:
        os.close(writer)
    assert result.code == 3
    [charge] = sandbox.ledger
    assert f"{charge.phone_number}\t{charge.worker_id}\t{charge.subscription_id}" in (
        result.err
    )
    assert sandbox.counters["confirm"].requests == 1
    assert "1 of them written to stderr only" in result.err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_stdout_on_a_full_device(sendblue_sandbox):
    """An OSError writing stdout (ENOSPC) is one sentence and exit 4."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        result = await run(sendblue_sandbox, "limits", stdout=full)
    finally:
        os.close(full)
    assert result.code == 4
    assert "No space left on device" in one_sentence(result.err)


BOOM = (
    "import sys, sendblue_lines.cli as cli, sendblue_lines.cli._commands as commands\n"
    "def boom(args):\n"
    "    raise {error}\n"
    "commands.make_client = boom\n"
    "sys.exit(cli.main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize(
    "error",
    ["RuntimeError('boom')", "PermissionError(13, 'denied')", "OverflowError('big')"],
)
@pytest.mark.parametrize("command", [["limits"], ["provision", "--yes"]])
async def test_an_unexpected_error_is_one_sentence(sendblue_sandbox, error, command):
    """An error outside the SDK's hierarchy: one sentence, exit 4; -vv shows where."""
    program = ("-c", BOOM.format(error=error))
    quiet = await run(sendblue_sandbox, *command, program=program)
    assert quiet.code == 4
    assert one_sentence(quiet.err).startswith("Unexpected error (")
    loud = await run(sendblue_sandbox, "-vv", *command, program=program, checked=False)
    assert loud.code == 4
    assert loud.err.startswith("Unexpected error (")
    assert 'File "<string>"' in loud.err  # -vv: the traceback, after the sentence
    assert sendblue_sandbox.api_secret_key not in loud.err


async def test_interrupt_at_an_odd_point_is_130(sendblue_sandbox):
    """Ctrl-C while the preview is being read: 130, nothing bought."""
    sendblue_sandbox.inject("preview", Fault.drip({"status": "OK"}, interval=0.2))
    async with spawn(sendblue_sandbox, "preview", stdout=PIPE) as process:
        await wait_until(
            lambda: sendblue_sandbox.counters["preview"].requests == 1, "preview"
        )
        process.send_signal(2)
        result = await finish(process, sendblue_sandbox)
    assert result.code == 130
    assert sendblue_sandbox.ledger == []


async def test_the_interrupt_sentence_is_alone(sendblue_sandbox: Sandbox[Any]):
    """The interrupted sentence is the only line on stderr."""
    sendblue_sandbox.inject("limits", Fault.delay(5))
    async with spawn(sendblue_sandbox, "plan", "2") as process:
        await wait_until(
            lambda: sendblue_sandbox.counters["limits"].requests == 1, "limits"
        )
        process.send_signal(15)
        result = await finish(process, sendblue_sandbox)
    assert one_sentence(result.err) == "Interrupted; nothing more was sent."


BATCH_BOOM = (
    "import sys, sendblue_lines, sendblue_lines.cli as cli\n"
    "async def boom(self, count, concurrency):\n"
    "    raise RuntimeError('boom in the batch')\n"
    "sendblue_lines.Provisioner.provision_many = boom\n"
    "sys.exit(cli.main(sys.argv[1:]))\n"
)


async def test_an_unexpected_error_in_a_batch_asks_for_a_human(sendblue_sandbox):
    """A bug once the batch started: one sentence, check the account, exit 3."""
    result = await run(
        sendblue_sandbox, "provision", "--yes", program=("-c", BATCH_BOOM)
    )
    assert result.code == 3
    assert "Unexpected error (RuntimeError: boom in the batch)." in result.err
    assert "check the account before buying again" in result.err


async def test_the_sandbox_banner_into_a_closed_pipe():
    """`sandbox` whose stdout reader is gone: one sentence, exit 4, no traceback."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = await run(None, "sandbox", "--port", "0", stdout=writer)
    finally:
        os.close(writer)
    assert result.code == 4
    assert "stdout was closed" in result.err
