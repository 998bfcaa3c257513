"""``sendblue-lines sandbox``: a real process, its banner, its signals."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sys

import aiohttp
import pytest

from sendblue_lines.sandbox import _command

PREVIEW = "/accounts/lines/provision-preview"
CONFIRM = "/accounts/lines/provision-confirm"

# Drives the subcommand exactly as the `sendblue-lines` entry point does.
DRIVER = (
    "import argparse, sys\n"
    "from sendblue_lines.sandbox import _command\n"
    "parser = argparse.ArgumentParser(prog='sendblue-lines')\n"
    "_command.configure(parser.add_subparsers())\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.handler(args))\n"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sendblue-lines")
    _command.configure(parser.add_subparsers())
    return parser.parse_args(["sandbox", *argv])


def test_defaults_match_the_issue():
    """The subcommand's defaults are 127.0.0.1:8787, 3 a day, 10 a month, no latency."""
    args = parse()
    assert (args.host, args.port) == ("127.0.0.1", 8787)
    assert (args.daily_limit, args.monthly_limit) == (3, 10)
    assert (args.inventory, args.latency_ms, args.limits_shape) == (
        None,
        0,
        "canonical",
    )
    assert args.api_key_id == "sandbox-key-id"
    assert args.api_secret_key is None
    assert args.handler is _command.run


def test_negative_counts_are_usage_errors():
    """A negative limit is refused by the parser."""
    with pytest.raises(SystemExit):
        parse("--daily-limit", "-1")


def test_non_loopback_host_is_refused_without_allow_remote(capsys):
    """A non-loopback --host exits 2 with an explanation and binds nothing."""
    assert _command.run(parse("--host", "192.0.2.1")) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_a_busy_port_exits_1(capsys):
    """When the port is taken, the command says so and exits 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert _command.run(parse("--port", str(port))) == 1
    assert "cannot listen" in capsys.readouterr().err


async def start(*argv: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DRIVER,
        "sandbox",
        "--port",
        "0",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    lines = []
    for _ in range(6):
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if not line:  # the process ended before its banner was complete
            await asyncio.wait_for(process.wait(), timeout=15)
            error = await process.stderr.read()
            pytest.fail(f"sandbox exited {process.returncode}: {error.decode()}")
        lines.append(line.decode())
    return process, lines


async def stop(process: asyncio.subprocess.Process, number: int) -> int:
    try:
        process.send_signal(number)
        return await asyncio.wait_for(process.wait(), timeout=15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
async def test_serves_until_signalled_then_exits_0(number):
    """The command prints URL and credentials, serves them, and exits 0 on a signal."""
    process, lines = await start("--inventory", "0", "--daily-limit", "5")
    try:
        url = re.search(r"export SENDBLUE_BASE_URL=(\S+)", "".join(lines))[1]
        key_id = re.search(r"export SENDBLUE_API_KEY_ID=(\S+)", "".join(lines))[1]
        secret = re.search(r"export SENDBLUE_API_SECRET_KEY=(\S+)", "".join(lines))[1]
        assert url.startswith("http://127.0.0.1:")
        assert key_id == "sandbox-key-id"
        assert "fake" in lines[-2]
        headers = {"sb-api-key-id": key_id, "sb-api-secret-key": secret}
        async with aiohttp.ClientSession() as session:
            async with session.get(
                url + "/accounts/limits", headers=headers
            ) as response:
                body = await response.json()
                assert body["limits"]["api_provision_daily"]["limit"] == 5
            async with session.post(
                url + "/accounts/lines/provision-preview", headers=headers
            ) as response:
                assert response.status == 503
    finally:
        code = await stop(process, number)
    assert code == 0
    assert process.stderr is not None
    assert b"Traceback" not in await process.stderr.read()


async def test_a_given_secret_is_used_and_never_printed():
    """With --api-secret-key the sandbox accepts it and never echoes it."""
    secret = "my-own-secret-value"
    process, lines = await start(
        "--api-key-id",
        "mine",
        "--api-secret-key",
        secret,
        "--limits-shape",
        "flat",
        "--latency-ms",
        "5",
    )
    try:
        output = "".join(lines)
        assert secret not in output
        url = re.search(r"export SENDBLUE_BASE_URL=(\S+)", output)[1]
        headers = {"sb-api-key-id": "mine", "sb-api-secret-key": secret}
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + "/accounts/limits", headers=headers) as response,
        ):
            assert "usage" in await response.json()
    finally:
        code = await stop(process, signal.SIGINT)
    assert code == 0
    assert process.stdout is not None
    assert secret.encode() not in await process.stdout.read()


async def test_the_command_serves_the_control_api():
    """The banner names the control API; another process drives it with the headers."""
    process, lines = await start("--daily-limit", "1")
    try:
        output = "".join(lines)
        url = re.search(r"export SENDBLUE_BASE_URL=(\S+)", output)[1]
        secret = re.search(r"export SENDBLUE_API_SECRET_KEY=(\S+)", output)[1]
        assert lines[-1] == (
            "Control API, with the same two headers: GET /_sandbox/ledger, "
            "POST /_sandbox/clock, POST /_sandbox/faults, POST /_sandbox/account\n"
        )
        headers = {"sb-api-key-id": "sandbox-key-id", "sb-api-secret-key": secret}
        preview, confirm = PREVIEW, CONFIRM
        async with aiohttp.ClientSession(url, headers=headers) as session:

            async def call(method, path, body=None, **options):
                async with session.request(method, path, json=body, **options) as r:
                    return r.status, await r.json(content_type=None)

            status, account = await call("POST", "/_sandbox/account", {})
            assert (status, account["daily_limit"]) == (200, 1)
            _, body = await call("POST", preview)
            token = body["preview_token"]
            assert (await call("POST", confirm, {"preview_token": token}))[0] == 200
            assert (await call("POST", preview))[0] == 429
            day = {"advance_seconds": 90000}
            assert (await call("POST", "/_sandbox/clock", day))[0] == 200
            assert (await call("POST", preview))[0] == 200
            fault = {"endpoint": "limits", "fault": "respond", "args": {"status": 418}}
            assert await call("POST", "/_sandbox/faults", fault) == (200, {"queued": 1})
            assert (await call("GET", "/accounts/limits"))[0] == 418
            _, ledger = await call("GET", "/_sandbox/ledger")
            assert [c["preview_token"] for c in ledger["charges"]] == [token]
            nobody = {"sb-api-key-id": "", "sb-api-secret-key": ""}
            assert (await call("GET", "/_sandbox/ledger", headers=nobody))[0] == 401
    finally:
        code = await stop(process, signal.SIGTERM)
    assert code == 0
