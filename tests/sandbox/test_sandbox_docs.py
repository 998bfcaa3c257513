"""docs/sandbox.md's control API examples, replayed so that they cannot rot.

The curl session is read from the page (each command and the answer printed
under it) and sent again over HTTP; the Python example is run as it stands,
in a process of its own, with the banner's variables pointing at a sandbox.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
from cli_support import run

PAGE = Path(__file__).resolve().parents[2] / "docs" / "sandbox.md"
SECTION = PAGE.read_text("utf-8").split("## From another process: the control API")[1]
CURL = re.compile(
    r"""\$ curl -s "\$\{auth\[@\]\}"(?: --json '(?P<body>[^']*)')? """
    r""""\$SENDBLUE_BASE_URL(?P<path>/\S+)"\n(?P<answer>.*)"""
)
#: Values that differ from run to run: tokens, ids, numbers and times.
VARYING = {"preview_token", "phone_number", "worker_id", "subscription_id", "at", "now"}


def masked(value):
    """`value` with the varying fields' values replaced by their JSON type."""
    if isinstance(value, dict):
        return {
            key: type(item).__name__ if key in VARYING else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def block(language):
    """The first fenced block of `language` in the control API section."""
    return re.search(rf"```{language}\n(.*?)```", SECTION, re.S)[1]


async def test_the_curl_session_answers_as_documented(sendblue_sandbox):
    """Each curl call gets the answer printed under it, bar varying values."""
    calls = CURL.findall(block("console"))
    assert len(calls) == 6
    headers = sendblue_sandbox.auth_headers()
    async with aiohttp.ClientSession(sendblue_sandbox.url, headers=headers) as session:
        for body, path, printed in calls:
            documented = json.loads(printed)
            if path == "/_sandbox/ledger":  # the service under test buys first
                for _ in documented["charges"]:
                    await buy(session)
            method = "GET" if not body else "POST"
            sent = None if not body else json.loads(body)
            async with session.request(method, path, json=sent) as response:
                answer = await response.json()
            assert masked(answer) == masked(documented), path


async def buy(session):
    async with session.post("/accounts/lines/provision-preview") as response:
        token = (await response.json())["preview_token"]
    body = {"preview_token": token}
    async with session.post("/accounts/lines/provision-confirm", json=body) as response:
        assert response.status == 200


async def test_the_python_example_runs_against_a_sandbox(sendblue_sandbox):
    """The plain-aiohttp example runs as printed and does what it says."""
    before = sendblue_sandbox.clock.now()
    result = await run(sendblue_sandbox, program=("-c", block("python")))
    assert result.code == 0, result.err
    assert result.out.startswith("0 charge(s) at ")
    assert sendblue_sandbox.faults.pending("confirm") == 1
    moved = sendblue_sandbox.clock.now() - before
    assert moved.total_seconds() >= 25 * 3600
