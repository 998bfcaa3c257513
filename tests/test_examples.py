"""The examples in `examples/`, run against the sandbox so that they cannot rot.

`examples/test_with_sandbox.py` is collected by pytest on its own (testpaths
include `examples`); the bot, the agents service, the batch job and the
nightly job are loaded from their files here and driven as a user would.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sendblue_lines import LinesClient, OutcomeUnknownError, SQLiteJournal
from sendblue_lines.sandbox import Fault, Sandbox

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    """Import `examples/<name>.py` as a module of its own."""
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


batch = load("batch")
bot = load("bot")


@pytest.fixture
async def client(sendblue_sandbox: Sandbox[Any]) -> AsyncIterator[LinesClient]:
    async with LinesClient(
        sendblue_sandbox.api_key_id,
        sendblue_sandbox.api_secret_key,
        base_url=sendblue_sandbox.url,
    ) as lines_client:
        yield lines_client


@pytest.fixture
async def http(client: LinesClient) -> AsyncIterator[TestClient[Any, Any]]:
    """The bot's app on a real socket on 127.0.0.1, with the sandbox behind it."""
    async with TestClient(TestServer(bot.make_app(client), host="127.0.0.1")) as c:
        yield c


# -- examples/batch.py ------------------------------------------------------------


async def test_batch_buys_what_the_limits_allow_with_progress(
    client, sendblue_sandbox, capsys
):
    """buy_lines(client, 5) buys the 3 the daily limit allows and prints each one."""
    result = await batch.buy_lines(client, 5)
    out = capsys.readouterr().out
    assert len(result.lines) == 3
    assert result.not_attempted == 2
    assert [c.phone_number for c in sendblue_sandbox.purchases()] == [
        line.phone_number for line in result.lines
    ]
    assert "the limits allow 3 of 5 now" in out
    for line in result.lines:
        assert re.search(
            rf"^slot \d: bought {re.escape(line.phone_number)}$", out, re.M
        )
    assert "bought 3, failed 0, not attempted 2" in out


async def test_batch_flags_a_lost_answer_for_a_human(client, sendblue_sandbox, capsys):
    """A confirm whose answer is lost is printed as NEEDS A HUMAN, not as a failure."""
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit())
    result = await batch.buy_lines(client, 2, concurrency=1)
    out = capsys.readouterr().out
    assert len(sendblue_sandbox.ledger) == 2
    assert len(result.lines) == 1
    assert "slot 0: NEEDS A HUMAN" in out
    assert isinstance(result.errors[0], OutcomeUnknownError)


async def test_batch_main_reads_the_environment(
    sendblue_sandbox, sandbox_credentials, capsys
):
    """main(n) builds its client from SENDBLUE_* variables; 0 when all were bought."""
    assert await batch.main(2) == 0
    assert await batch.main(2) == 1  # one left today
    assert len(sendblue_sandbox.purchases()) == 3
    assert sendblue_sandbox.api_secret_key not in capsys.readouterr().out


# -- examples/bot.py --------------------------------------------------------------


async def test_bot_buys_a_line_per_post(http, sendblue_sandbox):
    """POST /lines answers 201 with a number that the sandbox's ledger holds."""
    response = await http.post("/lines")
    assert response.status == 201
    body = await response.json()
    assert [c.phone_number for c in sendblue_sandbox.purchases()] == [
        body["phone_number"]
    ]
    assert [o.line.phone_number for o in http.app[bot.OUTCOMES]] == [
        body["phone_number"]
    ]


async def test_bot_answers_429_with_retry_at_after_the_daily_limit(
    http, sendblue_sandbox
):
    """The fourth POST of the day gets 429 and when to retry; nothing more is bought."""
    for _ in range(3):
        assert (await http.post("/lines")).status == 201
    response = await http.post("/lines")
    assert response.status == 429
    body = await response.json()
    assert body["error"] == "DailyLimitReachedError"
    first = sendblue_sandbox.purchases()[0].charged_at
    retry_at = datetime.fromisoformat(body["retry_at"])
    assert abs(retry_at - (first + timedelta(hours=24))) < timedelta(milliseconds=1)
    assert len(sendblue_sandbox.ledger) == 3


async def test_bot_reports_a_lost_answer_as_needs_human(http, sendblue_sandbox):
    """A dropped confirm answers 502 needs_human and the outcome is kept for a human."""
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit())
    response = await http.post("/lines")
    assert response.status == 502
    assert await response.json() == {
        "error": "OutcomeUnknownError",
        "needs_human": True,
    }
    [outcome] = http.app[bot.OUTCOMES]
    assert isinstance(outcome.error, OutcomeUnknownError)
    [charge] = sendblue_sandbox.ledger
    assert outcome.error.preview_token == charge.preview_token


async def test_bot_reports_a_provisioning_failure_as_needs_human(
    http, sendblue_sandbox
):
    """A 500 provisioning_failed also answers 502 needs_human."""
    sendblue_sandbox.inject("confirm", Fault.provisioning_failed())
    response = await http.post("/lines")
    assert response.status == 502
    assert (await response.json())["error"] == "ProvisioningFailedError"
    assert len(http.app[bot.OUTCOMES]) == 1


async def test_bot_caps_what_it_ever_buys(client, sendblue_sandbox):
    """With max_lines=1 the second POST gets 503 and sends no preview."""
    app = bot.make_app(client, max_lines=1)
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        assert (await http.post("/lines")).status == 201
        previews = sendblue_sandbox.counters["preview"].requests
        response = await http.post("/lines")
        assert response.status == 503
        assert (await response.json())["error"] == "MaxLinesReachedError"
    assert sendblue_sandbox.counters["preview"].requests == previews
    assert len(sendblue_sandbox.ledger) == 1


async def test_bot_builds_and_closes_its_own_client(
    sendblue_sandbox, sandbox_credentials
):
    """Without a client, make_app() reads the environment and closes what it opened."""
    app = bot.make_app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        assert (await http.post("/lines")).status == 201
        provisioner = http.app[bot.PROVISIONER]
    assert provisioner.client.closed
    assert len(sendblue_sandbox.purchases()) == 1


# -- examples/agents.py -----------------------------------------------------------

agents = load("agents")


@contextlib.asynccontextmanager
async def agents_service(
    client: LinesClient, tmp_path: Path
) -> AsyncIterator[TestClient[Any, Any]]:
    """The agents service on 127.0.0.1, over a journal of the test's own.

    Started and stopped by the test's own task, as `web.run_app` does: the
    app's `reconciling()` block is a task group, which the task that
    entered it must leave (a fixture's setup and teardown run in two).
    """
    async with SQLiteJournal(tmp_path / "agents.sqlite3") as journal:
        app = agents.make_app(journal, client)
        async with TestClient(TestServer(app, host="127.0.0.1")) as c:
            yield c


def sent(sandbox: Sandbox[Any]) -> int:
    """Every request the sandbox has had."""
    return sum(counter.requests for counter in sandbox.counters.values())


async def asked_twice(
    http: TestClient[Any, Any], sandbox: Sandbox[Any], agent_id: str
) -> list[tuple[int, Any]]:
    """Ask twice for `agent_id`'s line: (status, body) each; the retry sends nothing."""
    answers = []
    for _ in range(2):
        before = sent(sandbox)
        response = await http.post("/agents", json={"agent_id": agent_id})
        answers.append((response.status, await response.json()))
    assert sent(sandbox) == before
    return answers


async def test_an_agents_retry_gets_its_one_line_and_sends_nothing(
    client, sendblue_sandbox, tmp_path
):
    """POST /agents twice for agent 42: one charge, the same number, no request."""
    async with agents_service(client, tmp_path) as http:
        answers = await asked_twice(http, sendblue_sandbox, "42")
        other = await (await http.post("/agents", json={"agent_id": "43"})).json()
    first, second = sendblue_sandbox.ledger
    line = {"agent_id": "42", "phone_number": first.phone_number}
    assert answers == [(201, line)] * 2
    assert other["phone_number"] == second.phone_number


async def test_an_agents_lost_answer_is_the_same_error_on_every_retry(
    client, sendblue_sandbox, tmp_path
):
    """A confirm whose answer was lost: 502 with its token, again, one charge."""
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit())
    async with agents_service(client, tmp_path) as http:
        answers = await asked_twice(http, sendblue_sandbox, "7")
    [charge] = sendblue_sandbox.ledger
    needs_human = {
        "error": "OutcomeUnknownError",
        "needs_human": True,
        "preview_token": charge.preview_token,
    }
    assert answers == [(502, needs_human)] * 2


@pytest.mark.parametrize(
    "body", [{}, {"agent_id": 42}, {"agent_id": ""}, {"agent_id": "a\nb"}]
)
async def test_an_agent_without_a_usable_id_is_400(
    client, sendblue_sandbox, tmp_path, body
):
    """No agent_id, or one that is not a short printable string: 400, nothing sent."""
    async with agents_service(client, tmp_path) as http:
        response = await http.post("/agents", json=body)
    assert response.status == 400
    assert sent(sendblue_sandbox) == 0


# -- examples/nightly.py ----------------------------------------------------------

nightly = load("nightly")


async def test_the_nightly_job_converges_on_its_total(
    client, sendblue_sandbox, tmp_path, capsys
):
    """5 lines at 3 a day: 3 (exit 1), then 2 (exit 0), then nothing sent (0)."""
    async with SQLiteJournal(tmp_path / "purchases.sqlite3") as journal:
        codes = []
        for _ in range(3):
            before = sent(sendblue_sandbox)
            codes.append(await nightly.nightly(client, journal, "q1-agents", 5))
            sendblue_sandbox.clock.advance(hours=25)
        assert sent(sendblue_sandbox) == before  # the last night sent nothing
    assert codes == [1, 0, 0]
    assert len(sendblue_sandbox.ledger) == 5
    assert capsys.readouterr().out.splitlines() == [
        "q1-agents: 3 of 5 lines; 3 bought tonight, 2 still to buy",
        "q1-agents: 5 of 5 lines; 2 bought tonight, 0 still to buy",
        "q1-agents: 5 of 5 lines; 0 bought tonight, 0 still to buy",
    ]


async def test_the_nightly_job_flags_a_lost_answer_every_night_until_settled(
    client, sendblue_sandbox, tmp_path, capsys
):
    """An unknown under the key is exit 3 each night, until a person settles it."""
    sendblue_sandbox.inject("confirm", Fault.drop_after_commit())
    async with SQLiteJournal(tmp_path / "purchases.sqlite3") as journal:
        assert await nightly.nightly(client, journal, "k", 1) == 3
        assert await nightly.nightly(client, journal, "k", 1) == 3
        [charge] = sendblue_sandbox.ledger
        await journal.settle(charge.preview_token, phone_number=charge.phone_number)
        assert await nightly.nightly(client, journal, "k", 1) == 0
    assert len(sendblue_sandbox.ledger) == 1
    assert capsys.readouterr().out.count("NEEDS A HUMAN") == 2


async def test_the_nightly_main_reads_the_environment(
    sendblue_sandbox, sandbox_credentials, tmp_path, monkeypatch
):
    """main() takes the journal from SENDBLUE_LINES_JOURNAL and the credentials."""
    path = tmp_path / "nightly.sqlite3"
    monkeypatch.setenv("SENDBLUE_LINES_JOURNAL", str(path))
    assert await nightly.main("k", 2) == 0
    async with SQLiteJournal(path) as journal:
        assert [e.key for e in await journal.entries()] == ["k", "k"]
