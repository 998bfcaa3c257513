"""Money may have moved: no new preview after an unclear confirm; unit kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from provisioner_support import Make, check_ledger, connect, requests
from scripted_api import ScriptedApi

from sendblue_lines import (
    APIError,
    ConfigurationError,
    LinesClient,
    MalformedResponseError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    RetryPolicy,
    SendblueError,
    ServerError,
    TokenExpiredError,
    TransportError,
)
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

NO_WAIT = RetryPolicy(attempts=3, base_delay=0, max_delay=0)


def client_for(server: Sandbox[ManualClock], **options: Any) -> LinesClient:
    return connect(server, retry=NO_WAIT, timeout=5, **options)


@pytest.fixture
def confirm_raising(
    monkeypatch: pytest.MonkeyPatch, client: LinesClient, api: ScriptedApi
) -> Callable[[BaseException], Provisioner]:
    """A Provisioner (max_lines=1) whose confirm raises the error given.

    The limits and the preview are answered; nothing is retried.
    """

    def make(error: BaseException) -> Provisioner:
        async def confirm(preview: Any) -> Any:
            del preview
            raise error

        api.limits()
        api.preview()
        monkeypatch.setattr(client, "confirm", confirm)
        return Provisioner(client, max_lines=1, max_repreviews=0, no_lines_retry=None)

    return make


MAY_HAVE_BOUGHT = [
    pytest.param(RuntimeError("Session is closed"), id="runtime-error"),
    pytest.param(
        AttributeError("'NoneType' has no attribute 'write'"), id="attr-error"
    ),
    pytest.param(ValueError("odd"), id="value-error"),
    pytest.param(
        TransportError("x", sent=True, method="POST", path="/c"), id="transport-sent"
    ),
    pytest.param(MalformedResponseError("x", status=200), id="malformed"),
    pytest.param(ServerError("x", status=502), id="server-error"),
    pytest.param(SendblueError("x"), id="base-error"),
]


BOUGHT_NOTHING = [
    pytest.param(
        TransportError("x", sent=False, method="POST", path="/c"), id="transport-unsent"
    ),
    pytest.param(
        TokenExpiredError("x", status=410, code="token_expired"), id="token-expired"
    ),
    pytest.param(APIError("x", status=403), id="refused-403"),
    pytest.param(
        NoLinesAvailableError("x", status=503, code="no_lines_available"),
        id="no-lines",
    ),
    pytest.param(ConfigurationError("closed before sending"), id="configuration"),
]


async def test_outcome_unknown_is_raised_without_a_new_preview(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """An unclear confirm then a 410 on its token: OutcomeUnknownError, one preview."""
    api.limits()
    [token] = api.preview()
    api.fail("confirm", "502")
    api.fail("confirm", "410")
    with pytest.raises(OutcomeUnknownError) as caught:
        await make().provision()
    assert caught.value.preview_token == token
    assert api.count("preview") == 1
    assert api.confirmed_tokens() == [token, token]


async def test_provisioning_failed_is_raised_without_a_new_preview(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A 500 provisioning_failed is raised as it is: one preview, one confirm."""
    api.limits()
    api.preview()
    api.fail("confirm", "500pf")
    with pytest.raises(ProvisioningFailedError) as caught:
        await make().provision()
    assert caught.value.body is not None
    assert api.names() == ["limits", "preview", "confirm"]


@pytest.mark.parametrize("whose", ["own", "caller"])
async def test_the_provisioner_keeps_the_unit_spent_when_closed_mid_confirm(
    slow_confirms: Sandbox[ManualClock], whose: str
) -> None:
    """provision() ends unknown, max_lines stays spent, on_outcome hears it."""
    session = aiohttp.ClientSession() if whose == "caller" else None
    client = client_for(slow_confirms, session=session)
    heard: list[ProvisionOutcome] = []
    provisioner = Provisioner(client, max_lines=1, on_outcome=heard.append)
    try:
        buying = asyncio.ensure_future(provisioner.provision())
        closer = client.aclose if session is None else session.close
        await slow_confirms.wait_for_requests("confirm")
        await closer()
        with pytest.raises(OutcomeUnknownError):
            await buying
    finally:
        await client.aclose()
        if session is not None:
            await session.close()
    assert provisioner.lines_left == 0
    assert [o.charged for o in heard] == [True]


async def test_a_batch_closed_mid_confirm_reports_every_slot_as_charged(
    slow_confirms: Sandbox[ManualClock],
) -> None:
    """In a batch, each slot whose confirm was in flight is charged, not failed."""
    client = client_for(slow_confirms)
    provisioner = Provisioner(client, max_lines=2)
    running = asyncio.ensure_future(provisioner.provision_many(2, concurrency=2))
    await slow_confirms.wait_for_requests("confirm")
    await client.aclose()
    result = await running
    confirmed = slow_confirms.counters["confirm"].requests
    assert confirmed >= 1
    unknown = [e for e in result.errors if isinstance(e, OutcomeUnknownError)]
    # Every confirm that reached the server is a line or an unknown outcome.
    assert len(result.lines) + len(unknown) >= confirmed
    assert result.charged == len(result.lines) + len(unknown)
    assert provisioner.lines_left == 2 - result.charged


@pytest.mark.parametrize("error", MAY_HAVE_BOUGHT)
async def test_a_confirm_error_that_proves_nothing_is_outcome_unknown(
    error: BaseException, confirm_raising: Callable[[BaseException], Provisioner]
) -> None:
    """An error that does not prove "nothing bought" is unknown; the unit stays."""
    provisioner = confirm_raising(error)
    with pytest.raises(OutcomeUnknownError) as caught:
        await provisioner.provision()
    assert provisioner.lines_left == 0
    assert type(error).__name__ in caught.value.reason
    # A foreign exception is never chained: it may hold the request's headers.
    if not isinstance(error, SendblueError):
        assert caught.value.__cause__ is None


@pytest.mark.parametrize("error", BOUGHT_NOTHING)
async def test_a_confirm_error_that_proves_nothing_bought_gives_the_unit_back(
    error: SendblueError, confirm_raising: Callable[[BaseException], Provisioner]
) -> None:
    """Only the client's proofs of "nothing bought" return the max_lines unit."""
    provisioner = confirm_raising(error)
    with pytest.raises(type(error)):
        await provisioner.provision()
    assert provisioner.lines_left == 1


@pytest.mark.parametrize("error", MAY_HAVE_BOUGHT)
async def test_a_cancelled_caller_sees_the_same_reading(
    error: BaseException,
    monkeypatch: pytest.MonkeyPatch,
    client: LinesClient,
    api: ScriptedApi,
) -> None:
    """Cancelled mid-confirm, a failure that proves nothing is still unknown."""
    gate = asyncio.Event()

    async def confirm(preview: Any) -> Any:
        del preview
        await gate.wait()
        raise error

    heard: list[ProvisionOutcome] = []
    api.limits()
    api.preview()
    monkeypatch.setattr(client, "confirm", confirm)
    provisioner = Provisioner(client, max_lines=1, on_outcome=heard.append)
    buying = asyncio.ensure_future(provisioner.provision())
    for _ in range(200):
        if api.count("preview"):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    buying.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await buying
    assert provisioner.lines_left == 0
    assert len(heard) == 1
    assert isinstance(heard[0].error, OutcomeUnknownError)


# -- against the sandbox, through real sockets ------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.drop_after_commit(), id="drop-after-commit"),
        pytest.param(Fault.hang(after_commit=True), id="hang-after-commit"),
        pytest.param(Fault.proxy_502(after_commit=True), id="502-after-commit"),
    ],
)
async def test_an_unclear_confirm_that_charged_is_outcome_unknown(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any], fault: Fault
) -> None:
    """Charged but the answer lost: OutcomeUnknown, and never a new preview."""
    sendblue_sandbox.inject("confirm", fault)
    seen: list[ProvisionOutcome] = []
    with pytest.raises(OutcomeUnknownError) as caught:
        await Provisioner(sandbox_client, on_outcome=seen.append).provision()
    [charge] = sendblue_sandbox.ledger
    assert charge.preview_token == caught.value.preview_token
    assert requests(sendblue_sandbox, "preview") == 1
    check_ledger(sendblue_sandbox, seen)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.drop_before(), id="drop-before"),
        pytest.param(Fault.hang(), id="hang-before"),
        pytest.param(Fault.proxy_502(), id="502-before"),
    ],
)
async def test_an_unclear_confirm_that_did_not_charge_is_resent(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any], fault: Fault
) -> None:
    """A lost confirm that never arrived is resent with the same token: one line."""
    sendblue_sandbox.inject("confirm", fault)
    seen: list[ProvisionOutcome] = []
    await Provisioner(sandbox_client, on_outcome=seen.append).provision()
    assert len(sendblue_sandbox.ledger) == 1
    assert requests(sendblue_sandbox, "preview") == 1
    check_ledger(sendblue_sandbox, seen)


async def test_provisioning_failed_is_reported_once(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """A provisioning_failed charge is raised as it is, with no second purchase."""
    sendblue_sandbox.inject("confirm", Fault.provisioning_failed())
    seen: list[ProvisionOutcome] = []
    with pytest.raises(ProvisioningFailedError):
        await Provisioner(sandbox_client, on_outcome=seen.append).provision()
    [charge] = sendblue_sandbox.ledger
    assert charge.outcome == "provisioning_failed"
    assert requests(sendblue_sandbox, "preview") == 1
    check_ledger(sendblue_sandbox, seen)
