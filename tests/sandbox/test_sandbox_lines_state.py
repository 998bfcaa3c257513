"""`GET /api/v2/lines/state`: the account's lines, bought here or elsewhere."""

from __future__ import annotations

import aiohttp
import pytest

from sendblue_lines.sandbox import Fault, SandboxAccount

LINES_STATE = "/api/v2/lines/state"


async def test_a_new_account_holds_no_lines(api, sandbox):
    """The canonical body, with an empty `data`, at the sandbox clock's time."""
    status, body = await api.call("GET", LINES_STATE)
    assert status == 200
    assert body == {
        "status": "OK",
        "snapshot_at": "2026-05-18T14:20:00.000Z",
        "data": [],
    }


async def test_a_bought_line_is_listed_as_confirm_returned_it(api, sandbox, clock):
    """Each confirmed line appears with the confirm's worker id and number."""
    clock.advance(seconds=41)
    status, bought = await api.buy()
    assert status == 200
    clock.advance(seconds=21)
    status, body = await api.call("GET", LINES_STATE)
    assert status == 200
    assert body["snapshot_at"] == "2026-05-18T14:21:02.000Z"
    assert body["data"] == [
        {
            "worker_id": bought["worker_id"],
            "sendblue_number": bought["phone_number"],
            "assignment": "assigned",
            "status": "ONLINE",
            "status_changed_at": "2026-05-18T14:20:41.000Z",
            "degraded_since": None,
            "effective_until": None,
        }
    ]


async def test_only_the_callers_lines_are_listed(api, sandbox):
    """Another account's lines never show; each account sees its own."""
    other = sandbox.add_account(SandboxAccount("other-key", "other-secret"))
    _, mine = await api.buy()
    _, theirs = await api.buy(other)
    _, body = await api.call("GET", LINES_STATE)
    assert [line["worker_id"] for line in body["data"]] == [mine["worker_id"]]
    _, body = await api.call("GET", LINES_STATE, account=other)
    assert [line["worker_id"] for line in body["data"]] == [theirs["worker_id"]]


async def test_a_line_bought_elsewhere_is_listed_but_not_charged(api, sandbox, clock):
    """A dashboard purchase shows in the state, not in the ledger or the limits."""
    clock.advance(minutes=3)
    added = sandbox.add_line(sendblue_number="+14155550000", worker_id="worker_dash")
    _, body = await api.call("GET", LINES_STATE)
    assert body["data"] == [
        {
            "worker_id": "worker_dash",
            "sendblue_number": "+14155550000",
            "assignment": "assigned",
            "status": "ONLINE",
            "status_changed_at": "2026-05-18T14:23:00.000Z",
            "degraded_since": None,
            "effective_until": None,
        }
    ]
    assert added.source == "elsewhere"
    assert sandbox.ledger == []
    assert sandbox.limits().daily.used == 0
    assert sandbox.lines() == [added]


async def test_lines_are_listed_oldest_first_with_made_up_ids(api, sandbox, clock):
    """Bought and added lines come in the order they were had; ids are unique."""
    sandbox.add_line()
    clock.advance(minutes=1)
    await api.buy()
    sandbox.add_line()
    _, body = await api.call("GET", LINES_STATE)
    assert [line.worker_id for line in sandbox.lines()] == [
        line["worker_id"] for line in body["data"]
    ]
    assert [line.source for line in sandbox.lines()] == [
        "elsewhere",
        "api",
        "elsewhere",
    ]
    assert len({line["worker_id"] for line in body["data"]}) == 3
    assert len({line["sendblue_number"] for line in body["data"]}) == 3


async def test_a_failed_provisioning_charges_but_adds_no_line(api, sandbox):
    """A 500 provisioning_failed is in the ledger, not in the lines: no proof."""
    sandbox.inject("confirm", Fault.provisioning_failed())
    status, _ = await api.buy()
    assert status == 500
    _, body = await api.call("GET", LINES_STATE)
    assert body["data"] == []
    assert len(sandbox.ledger) == 1


async def test_any_valid_credentials_may_read_it(api, sandbox):
    """The plan and the card do not matter for reading the lines."""
    sandbox.account.plan = "standard"
    sandbox.account.card_on_file = False
    status, body = await api.call("GET", LINES_STATE)
    assert status == 200
    assert body["data"] == []


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param(
            Fault.respond(404, {"status": "ERROR", "message": "Not found"}),
            404,
            id="404",
        ),
        pytest.param(Fault.html(502), 502, id="html-502"),
        pytest.param(Fault.proxy_502(), 502, id="proxy-502"),
    ],
)
async def test_faults_apply_to_the_lines_state(api, sandbox, fault, status):
    """Faults queued for "lines_state" hit it, and only it, as on the other routes."""
    sandbox.inject("lines_state", fault)
    assert sandbox.faults.pending("lines_state") == 1
    async with api.session.get(
        sandbox.url + LINES_STATE, headers=sandbox.auth_headers()
    ) as response:
        assert response.status == status
    status_after, _ = await api.call("GET", LINES_STATE)
    assert status_after == 200
    record = sandbox.requests[0]
    assert record.endpoint == "lines_state"
    assert record.fault == fault.kind
    assert sandbox.counters["lines_state"].requests == 2


async def test_a_dropped_lines_state_request_gets_no_answer(api, sandbox):
    """`drop_before` closes the connection: the client sees it end, unanswered."""
    # aiohttp quietly resends a GET once on a dropped connection: drop more.
    sandbox.inject("lines_state", Fault.drop_before(), times=3)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call("GET", LINES_STATE)
    assert sandbox.requests
    assert all(
        (record.endpoint, record.status, record.fault)
        == ("lines_state", None, "drop_before")
        for record in sandbox.requests
    )


async def test_the_state_never_shows_a_secret(api, sandbox):
    """Neither the body nor the held lines' reprs carry a credential."""
    await api.buy()
    sandbox.add_line()
    _, body = await api.call("GET", LINES_STATE)
    seen = repr(body) + repr(sandbox.lines())
    assert sandbox.api_secret_key not in seen
