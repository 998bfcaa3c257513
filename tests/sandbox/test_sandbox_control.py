"""The control API under ``/_sandbox/``, driven from another process over HTTP.

Every request here is sent by a child process with only the standard library
(`from_outside`), as a service under test in another language would; what the
calls changed is then read back over HTTP or from the `Sandbox` itself.
"""

from __future__ import annotations

import inspect
import io
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from sandbox_support import from_outside

from sendblue_lines.sandbox import (
    Fault,
    ManualClock,
    RealClock,
    Sandbox,
    SandboxAccount,
)
from sendblue_lines.sandbox._control import FAULTS

START = datetime(2026, 5, 18, 14, 20, tzinfo=timezone.utc)
PREVIEW = "/accounts/lines/provision-preview"
LEDGER = "/_sandbox/ledger"
CLOCK = "/_sandbox/clock"
FAULTS_PATH = "/_sandbox/faults"
ACCOUNT = "/_sandbox/account"
CHARGE_FIELDS = {"preview_token", "phone_number", "worker_id", "subscription_id", "at"}


def iso(moment):
    """The sandbox's ISO 8601 form of `moment`: UTC, milliseconds, Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def test_the_ledger_lists_the_callers_charges_with_the_tables_fields(
    api, sandbox, clock
):
    """GET ledger: the caller's charges, oldest first; a failed one has null numbers."""
    other = sandbox.add_account(SandboxAccount("other-key", "other-secret"))
    bought_token = await api.token()
    await api.confirm(bought_token)
    await api.buy(other)
    clock.advance(minutes=1)
    sandbox.inject("confirm", Fault.provisioning_failed())
    failed_token = await api.token()
    assert (await api.confirm(failed_token))[0] == 500
    [(status, body)] = await from_outside(sandbox, ("GET", LEDGER))
    assert status == 200
    assert list(body) == ["charges"]
    bought, failed = body["charges"]
    assert set(bought) == set(failed) == CHARGE_FIELDS
    [line] = sandbox.purchases(sandbox.account)
    assert bought == {
        "preview_token": bought_token,
        "phone_number": line.phone_number,
        "worker_id": line.worker_id,
        "subscription_id": line.subscription_id,
        "at": iso(START),
    }
    assert failed["preview_token"] == failed_token
    assert (failed["phone_number"], failed["worker_id"]) == (None, None)
    assert failed["subscription_id"].startswith("sub_")
    assert failed["at"] == iso(START + timedelta(minutes=1))


async def test_each_account_reads_only_its_own_ledger(api, sandbox):
    """Two accounts: the ledger answers the charges of the account that asks."""
    other = sandbox.add_account(SandboxAccount("other-key", "other-secret"))
    await api.buy(other)
    [(_, mine)] = await from_outside(sandbox, ("GET", LEDGER))
    [(_, theirs)] = await from_outside(
        sandbox, ("GET", LEDGER), headers=sandbox.auth_headers(other)
    )
    assert mine == {"charges": []}
    [charge] = theirs["charges"]
    assert charge["preview_token"] == sandbox.ledger[0].preview_token


async def test_moving_the_clock_frees_the_daily_window(api, sandbox, clock):
    """POST clock moves the sandbox clock: a day's 3 purchases leave the window."""
    for _ in range(3):
        assert (await api.buy())[0] == 200
    assert (await api.preview())[0] == 429
    answers = await from_outside(
        sandbox,
        ("POST", CLOCK, {"advance_seconds": 25 * 3600}),
        ("POST", CLOCK, {"advance_seconds": 0.5}),
    )
    assert answers == [
        (200, {"now": iso(START + timedelta(hours=25))}),
        (200, {"now": iso(START + timedelta(hours=25, milliseconds=500))}),
    ]
    assert clock.now() == START + timedelta(hours=25, milliseconds=500)
    assert (await api.preview())[0] == 200


async def test_a_clock_that_cannot_move_is_a_409(session):
    """A sandbox on a RealClock refuses POST clock with 409, and says why."""
    async with Sandbox(clock=RealClock()) as real:
        [(status, body)] = await from_outside(
            real, ("POST", CLOCK, {"advance_seconds": 1})
        )
    assert status == 409
    assert "cannot be moved" in body["message"]


async def test_faults_are_queued_by_name_with_their_arguments(api, sandbox):
    """POST faults queues a Fault by name; the answer counts the endpoint's queue."""
    respond = {"status": 503, "body": {"status": "ERROR", "message": "busy"}}
    answers = await from_outside(
        sandbox,
        ("POST", FAULTS_PATH, {"endpoint": "preview", "fault": "respond",
                               "args": respond, "times": 2}),
        ("POST", FAULTS_PATH, {"endpoint": "preview", "fault": "drop_before"}),
        ("POST", FAULTS_PATH, {"endpoint": "confirm", "fault": "provisioning_failed"}),
    )  # fmt: skip
    assert answers == [(200, {"queued": 2}), (200, {"queued": 3}), (200, {"queued": 1})]
    assert await api.preview() == (503, respond["body"])
    assert await api.preview() == (503, respond["body"])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.preview()
    status, body = await api.buy()
    assert (status, body["error"]) == (500, "provisioning_failed")
    assert [charge.outcome for charge in sandbox.ledger] == ["provisioning_failed"]


def sample_arguments(name):
    """The required arguments of `Fault.<name>`, each a JSON value of its type."""
    samples = {"int": 200, "float": 0, "bytes": "{}", "object": {"status": "OK"}}
    samples["str"] = "http://127.0.0.1:9/elsewhere"
    parameters = inspect.signature(FAULTS[name]).parameters.values()
    return {p.name: samples[p.annotation] for p in parameters if p.default is p.empty}


@pytest.mark.parametrize("name", list(FAULTS))
async def test_every_fault_of_the_catalogue_can_be_queued_by_name(sandbox, name):
    """Each `Fault` class method is a fault name, built from its JSON arguments."""
    body = {"endpoint": "confirm", "fault": name, "args": sample_arguments(name)}
    [answer] = await from_outside(sandbox, ("POST", FAULTS_PATH, body))
    assert answer == (200, {"queued": 1})
    assert sandbox.faults.pending() == 1


async def test_the_catalogue_is_the_fault_class_methods():
    """The names the control API takes are exactly Fault's class methods."""
    methods = {
        name
        for name, member in inspect.getmembers(Fault)
        if inspect.ismethod(member) and member.__self__ is Fault
    }
    assert set(FAULTS) == methods
    assert {"drop_after_commit", "provisioning_failed", "respond"} <= methods


async def test_the_account_changes_the_callers_account_only(api, sandbox):
    """POST account sets the caller's fields (not another's) and answers the account."""
    other = sandbox.add_account(SandboxAccount("other-key", "other-secret"))
    change = {"daily_limit": 1, "monthly_limit": 7, "card_on_file": False}
    [(status, body)] = await from_outside(
        sandbox, ("POST", ACCOUNT, change), headers=sandbox.auth_headers(other)
    )
    assert status == 200
    assert body == {
        "api_key_id": "other-key",
        "plan": "inbound_only",
        "card_on_file": False,
        "daily_limit": 1,
        "monthly_limit": 7,
        "inventory": None,
    }
    assert "other-secret" not in str(body)
    assert (other.daily_limit, other.monthly_limit, other.card_on_file) == (1, 7, False)
    assert sandbox.account == SandboxAccount(sandbox.api_key_id, sandbox.api_secret_key)
    assert (await api.preview(other))[0] == 402
    assert (await api.preview())[0] == 200


async def test_account_changes_reach_the_api_at_once(api, sandbox):
    """Plan, card, limits and inventory set over HTTP decide the next answers."""
    steps = [
        ({"plan": "standard"}, 403),
        ({"plan": "inbound_only", "card_on_file": False}, 402),
        ({"card_on_file": True, "inventory": 0}, 503),
        ({"inventory": None, "daily_limit": 0}, 429),
        ({"daily_limit": 3}, 200),
    ]
    for change, expected in steps:
        [(status, body)] = await from_outside(sandbox, ("POST", ACCOUNT, change))
        assert status == 200
        assert {name: body[name] for name in change} == change
        assert (await api.preview())[0] == expected, change


async def test_an_empty_account_body_changes_nothing_and_answers_the_account(sandbox):
    """POST account with {} reads the account as it stands."""
    sandbox.set_inventory(4)
    [(status, body)] = await from_outside(sandbox, ("POST", ACCOUNT, {}))
    assert status == 200
    assert body["inventory"] == 4
    assert body["api_key_id"] == sandbox.api_key_id


CALLS = [
    pytest.param("GET", LEDGER, None, id="ledger"),
    pytest.param("POST", CLOCK, {"advance_seconds": 60}, id="clock"),
    pytest.param(
        "POST",
        FAULTS_PATH,
        {"endpoint": "confirm", "fault": "drop_before"},
        id="faults",
    ),
    pytest.param("POST", ACCOUNT, {"daily_limit": 0}, id="account"),
]


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
async def test_control_calls_without_the_accounts_headers_are_401(
    sandbox, clock, method, path, body
):
    """No headers, half of them or a wrong secret: 401, and nothing changes."""
    call = (method, path) if body is None else (method, path, body)
    key_id, secret = sandbox.api_key_id, sandbox.api_secret_key
    for headers in (
        {},
        {"sb-api-key-id": key_id},
        {"sb-api-key-id": key_id, "sb-api-secret-key": secret + "x"},
        {"sb-api-key-id": "nobody", "sb-api-secret-key": secret},
    ):
        [(status, answer)] = await from_outside(sandbox, call, headers=headers)
        assert status == 401, headers
        assert answer == {"status": "ERROR", "message": "Invalid API credentials"}
    assert clock.now() == START
    assert sandbox.faults.pending() == 0
    assert sandbox.account.daily_limit == 3


FAULT = {"endpoint": "confirm", "fault": "delay", "args": {"seconds": 1}}
BAD = {
    "invalid-json": (CLOCK, "{not json", "JSON object"),
    "empty-body": (CLOCK, "", "JSON object"),
    "array-body": (CLOCK, [1], "JSON object"),
    "clock-missing": (CLOCK, {}, "'advance_seconds'"),
    "clock-negative": (CLOCK, {"advance_seconds": -1}, "'advance_seconds'"),
    "clock-string": (CLOCK, {"advance_seconds": "60"}, "'advance_seconds'"),
    "clock-bool": (CLOCK, {"advance_seconds": True}, "'advance_seconds'"),
    "clock-overflow": (CLOCK, {"advance_seconds": 1e300}, "advance_seconds"),
    "clock-huge-int": (CLOCK, {"advance_seconds": 10**400}, "'advance_seconds'"),
    "clock-unknown": (CLOCK, {"advance_seconds": 1, "days": 1}, "'days'"),
    "endpoint": (FAULTS_PATH, {**FAULT, "endpoint": "checkout"}, "'checkout'"),
    "endpoint-type": (FAULTS_PATH, {**FAULT, "endpoint": 3}, "'endpoint'"),
    "fault-name": (FAULTS_PATH, {**FAULT, "fault": "explode"}, "'explode'"),
    "not-a-fault": (FAULTS_PATH, {**FAULT, "fault": "__init__"}, "'__init__'"),
    "fault-missing": (FAULTS_PATH, {"endpoint": "confirm"}, "'fault'"),
    "arg-unknown": (FAULTS_PATH, {**FAULT, "args": {"secs": 1}}, "'secs'"),
    "arg-missing": (FAULTS_PATH, {**FAULT, "args": {}}, "'seconds'"),
    "arg-type": (FAULTS_PATH, {**FAULT, "args": {"seconds": "1"}}, "'seconds'"),
    "arg-negative": (FAULTS_PATH, {**FAULT, "args": {"seconds": -1}}, "'seconds'"),
    "arg-huge-int": (FAULTS_PATH, {**FAULT, "args": {"seconds": 10**400}}, "'seconds'"),
    "args-type": (FAULTS_PATH, {**FAULT, "args": [1]}, "'args'"),
    "times-0": (FAULTS_PATH, {**FAULT, "times": 0}, "times"),
    "times-float": (FAULTS_PATH, {**FAULT, "times": 1.5}, "'times'"),
    "faults-unknown": (FAULTS_PATH, {**FAULT, "extra": 1}, "'extra'"),
    "arg-value": (
        FAULTS_PATH,
        {"endpoint": "confirm", "fault": "respond", "args": {"status": 42}},
        "status",
    ),
    "confirm-only": (
        FAULTS_PATH,
        {"endpoint": "preview", "fault": "provisioning_failed"},
        "confirm",
    ),
    "header-type": (
        FAULTS_PATH,
        {
            "endpoint": "confirm",
            "fault": "respond",
            "args": {"status": 503, "headers": {"X": 1}},
        },
        "'headers'",
    ),
    "bool-arg": (
        FAULTS_PATH,
        {"endpoint": "confirm", "fault": "hang", "args": {"after_commit": "yes"}},
        "'after_commit'",
    ),
    "limit-negative": (ACCOUNT, {"daily_limit": -1}, "'daily_limit'"),
    "limit-float": (ACCOUNT, {"monthly_limit": 2.5}, "'monthly_limit'"),
    "card-type": (ACCOUNT, {"card_on_file": "no"}, "'card_on_file'"),
    "plan-empty": (ACCOUNT, {"plan": ""}, "'plan'"),
    "plan-null": (ACCOUNT, {"plan": None}, "'plan'"),
    "inventory-negative": (ACCOUNT, {"inventory": -1}, "'inventory'"),
    "inventory-type": (ACCOUNT, {"inventory": "9"}, "'inventory'"),
    "secret": (ACCOUNT, {"daily_limit": 9, "api_secret_key": "x"}, "'api_secret_key'"),
}


@pytest.mark.parametrize(("path", "body", "named"), list(BAD.values()), ids=list(BAD))
async def test_a_bad_body_is_a_400_that_names_it_and_changes_nothing(
    sandbox, clock, path, body, named
):
    """An unknown or missing name, or a bad value: a 400 naming it; nothing changes."""
    before = (sandbox.account.daily_limit, sandbox.account.plan, sandbox.inventory)
    [(status, answer)] = await from_outside(sandbox, ("POST", path, body))
    assert status == 400
    assert answer["status"] == "ERROR"
    assert named in answer["message"]
    assert clock.now() == START
    assert sandbox.faults.pending() == 0
    after = (sandbox.account.daily_limit, sandbox.account.plan, sandbox.inventory)
    assert after == before


async def test_the_pytest_fixture_serves_the_control_api(sendblue_sandbox):
    """The sendblue_sandbox fixture answers the control API too."""
    [clock, ledger] = await from_outside(
        sendblue_sandbox, ("POST", CLOCK, {"advance_seconds": 3600}), ("GET", LEDGER)
    )
    assert clock[0] == 200
    assert isinstance(sendblue_sandbox.clock, ManualClock)
    assert ledger == (200, {"charges": []})


async def test_control_calls_are_not_api_requests(api, sandbox):
    """Control calls get no latency or fault and are neither logged nor counted."""
    sandbox.inject("limits", Fault.drop_before())
    await from_outside(sandbox, ("GET", LEDGER), ("POST", ACCOUNT, {}))
    assert sandbox.requests == []
    assert sum(c.requests for c in sandbox.counters.values()) == 0
    assert sandbox.faults.pending() == 1
    assert (await api.preview())[0] == 200
    assert [r.path for r in sandbox.requests] == [PREVIEW]


async def test_a_wrong_method_or_path_under_sandbox_is_no_api_request(api, sandbox):
    """404 and 405 under /_sandbox/: the API's error body, no latency, no record."""
    drawn: list[float] = []
    sandbox.latency = lambda: drawn.append(0.0) or 0.0
    wrong_method, unknown = await from_outside(
        sandbox, ("GET", CLOCK), ("POST", "/_sandbox/nothing", {})
    )
    assert wrong_method == (405, {"status": "ERROR", "message": "Method Not Allowed"})
    assert unknown == (404, {"status": "ERROR", "message": "Not Found"})
    assert drawn == []
    assert sandbox.requests == []
    assert sum(c.requests for c in sandbox.counters.values()) == 0
    # Outside /_sandbox/, an unrouted request is still an API request.
    assert (await api.call("GET", "/nothing"))[0] == 404
    assert [r.path for r in sandbox.requests] == ["/nothing"]
    assert sandbox.counters["other"].requests == 1


async def test_a_control_body_too_large_is_a_413_with_the_error_body(api, sandbox):
    """Past the server's body limit: 413 with the API's error body; nothing changes."""
    raw = b'{"advance_seconds": 1, "pad": "' + b"x" * 2**21 + b'"}'
    status, body = await api.call("POST", CLOCK, data=io.BytesIO(raw))
    assert (status, body) == (
        413,
        {"status": "ERROR", "message": "The request body is too large"},
    )
    assert sandbox.clock.now() == START
