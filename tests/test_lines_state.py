"""`LinesClient.get_lines_state()`: the account's lines, the evidence for a lost answer.

Parsed tolerantly, as the spec asks of an endpoint documented outside the
provisioning page: more fields and other values are kept or ignored, an entry
without a usable `worker_id` is counted and left out, a 404 means "not offered
here" (None), and only a body without a `data` list is malformed. End to end
against the sandbox, a purchase and a line bought elsewhere both show up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest
from scripted_api import ScriptedApi

from sendblue_lines import (
    AccountLine,
    AuthenticationError,
    LinesClient,
    LinesState,
    MalformedResponseError,
    RetryPolicy,
    ServerError,
)
from sendblue_lines.sandbox import Fault, Sandbox

BASE = "https://api.lines-state.test"
KEY_ID = "key-id-lines-state"
SECRET = "secret-lines-state-0123456789"
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)

#: The spec's own example.
SPEC_BODY = {
    "status": "OK",
    "snapshot_at": "2026-05-18T14:31:02.120Z",
    "data": [
        {
            "worker_id": "worker_abc123",
            "sendblue_number": "+14155551234",
            "assignment": "assigned",
            "status": "ONLINE",
            "status_changed_at": "2026-05-18T14:30:41.000Z",
            "degraded_since": None,
            "effective_until": None,
        }
    ],
}


@pytest.fixture
async def client() -> AsyncIterator[LinesClient]:
    async with LinesClient(KEY_ID, SECRET, base_url=BASE, retry=NO_WAIT) as c:
        yield c


async def test_the_spec_example_reads_as_one_line(client: LinesClient) -> None:
    """The spec's body gives its one line, every field as the server said it."""
    with ScriptedApi.started(BASE) as api:
        api.reply("lines_state", payload=SPEC_BODY)
        state = await client.get_lines_state()
    assert state is not None
    assert state.snapshot_at == datetime(2026, 5, 18, 14, 31, 2, 120000, timezone.utc)
    assert state.lines == (
        AccountLine(
            worker_id="worker_abc123",
            sendblue_number="+14155551234",
            assignment="assigned",
            status="ONLINE",
            status_changed_at=datetime(2026, 5, 18, 14, 30, 41, tzinfo=timezone.utc),
        ),
    )
    assert state.unreadable == 0
    assert state.worker_ids() == {"worker_abc123"}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(
            {"worker_id": "w1", "assignment": "borrowed", "status": "SLEEPING"},
            AccountLine(worker_id="w1", assignment="borrowed", status="SLEEPING"),
            id="unknown-values-kept",
        ),
        pytest.param(
            {"worker_id": "w1", "sendblue_number": None, "extra": {"x": 1}},
            AccountLine(worker_id="w1"),
            id="null-number-extra-field",
        ),
        pytest.param(
            {"worker_id": "w1", "status_changed_at": "yesterday", "status": 5},
            AccountLine(worker_id="w1"),
            id="odd-time-and-status",
        ),
        pytest.param(
            {"worker_id": "w1", "effective_until": "2026-05-18T14:30:00+0000"},
            AccountLine(
                worker_id="w1",
                effective_until=datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc),
            ),
            id="other-timestamp-form",
        ),
    ],
)
async def test_odd_fields_never_cost_a_line(
    client: LinesClient, item: dict[str, Any], expected: AccountLine
) -> None:
    """Unknown values are kept, odd optional fields are None, the line stays."""
    with ScriptedApi.started(BASE) as api:
        api.reply("lines_state", payload={"status": "OK", "data": [item]})
        state = await client.get_lines_state()
    assert state is not None
    assert state.lines == (expected,)
    assert state.snapshot_at is None


@pytest.mark.parametrize(
    "item",
    [
        pytest.param({"sendblue_number": "+14155550000"}, id="no-worker-id"),
        pytest.param({"worker_id": ""}, id="empty-worker-id"),
        pytest.param({"worker_id": "  "}, id="blank-worker-id"),
        pytest.param({"worker_id": 7}, id="number-worker-id"),
        pytest.param("worker_abc", id="not-an-object"),
        pytest.param(None, id="null"),
    ],
)
async def test_an_entry_without_a_usable_worker_id_is_counted_and_left_out(
    client: LinesClient, item: Any
) -> None:
    """It cannot be matched to a purchase; the readable lines are still given."""
    body = {"status": "OK", "data": [item, {"worker_id": "w_ok"}]}
    with ScriptedApi.started(BASE) as api:
        api.reply("lines_state", payload=body)
        state = await client.get_lines_state()
    assert state is not None
    assert [line.worker_id for line in state.lines] == ["w_ok"]
    assert state.unreadable == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "OK"}, id="no-data"),
        pytest.param({"status": "OK", "data": {"w": 1}}, id="data-not-a-list"),
        pytest.param([{"worker_id": "w"}], id="a-bare-list"),
    ],
)
async def test_a_body_without_a_data_list_is_malformed(
    client: LinesClient, body: Any
) -> None:
    """Without the list there is nothing to read: a typed error with the body."""
    with ScriptedApi.started(BASE) as api:
        api.reply("lines_state", payload=body)
        with pytest.raises(MalformedResponseError) as caught:
            await client.get_lines_state()
    assert caught.value.path == "/api/v2/lines/state"


async def test_a_404_means_not_offered_here(client: LinesClient) -> None:
    """The spec: carry on without evidence; no error, no retry."""
    with ScriptedApi.started(BASE) as api:
        api.reply("lines_state", status=404, payload={"status": "ERROR"})
        assert await client.get_lines_state() is None
        assert len(api.requests("lines_state")) == 1


async def test_a_401_is_raised(client: LinesClient) -> None:
    """Wrong credentials are not "no evidence": the caller must hear of them."""
    with ScriptedApi.started(BASE) as api:
        api.reply(
            "lines_state", status=401, payload={"status": "ERROR", "message": "bad"}
        )
        with pytest.raises(AuthenticationError):
            await client.get_lines_state()


async def test_a_transient_failure_is_retried_then_raised(client: LinesClient) -> None:
    """No side effect: retried like limits and preview, then the error."""
    with ScriptedApi.started(BASE) as api:
        api.reply("lines_state", status=502, payload={"status": "ERROR"}, repeat=True)
        with pytest.raises(ServerError):
            await client.get_lines_state()
        assert len(api.requests("lines_state")) == 3


async def test_the_secret_echoed_in_the_body_is_redacted(client: LinesClient) -> None:
    """A body that repeats our secret keeps no copy of it, even in `raw`."""
    body = {"status": "OK", "data": [{"worker_id": "w1", "status": SECRET}]}
    with ScriptedApi.started(BASE) as api:
        api.reply("lines_state", payload=body)
        state = await client.get_lines_state()
    assert state is not None
    assert SECRET not in repr(state.raw)
    assert state.lines[0].status != SECRET


# -- against the sandbox --------------------------------------------------------


def connect(sandbox: Sandbox[Any]) -> LinesClient:
    return LinesClient(
        sandbox.api_key_id, sandbox.api_secret_key, base_url=sandbox.url, retry=NO_WAIT
    )


async def test_a_purchase_and_a_line_bought_elsewhere_are_both_listed(
    sendblue_sandbox: Sandbox[Any],
) -> None:
    """The confirm's worker_id is listed, and so is the dashboard's line."""
    elsewhere = sendblue_sandbox.add_line()
    async with connect(sendblue_sandbox) as client:
        before = await client.get_lines_state()
        line = await client.confirm(await client.preview())
        after = await client.get_lines_state()
    assert isinstance(before, LinesState)
    assert isinstance(after, LinesState)
    assert before.worker_ids() == {elsewhere.worker_id}
    assert after.worker_ids() == {elsewhere.worker_id, line.worker_id}
    [bought] = [x for x in after.lines if x.worker_id == line.worker_id]
    assert bought.sendblue_number == line.phone_number
    assert after.snapshot_at is not None


async def test_a_fault_on_the_listing_is_a_typed_error(
    sendblue_sandbox: Sandbox[Any],
) -> None:
    """The sandbox's faults reach the listing like every route."""
    sendblue_sandbox.inject("lines_state", Fault.respond(500, "oops"), times=3)
    async with connect(sendblue_sandbox) as client:
        with pytest.raises(ServerError):
            await client.get_lines_state()
