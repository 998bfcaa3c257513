"""What stops a batch: account-level errors stop new slots; per-slot errors do not."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from provisioner_support import Make
from scripted_api import ScriptedApi, canonical

from sendblue_lines import (
    APIError,
    AuthenticationError,
    DailyLimitReachedError,
    DeclinedError,
    LinesClient,
    MalformedResponseError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    Provisioner,
    ProvisioningFailedError,
    RateLimitError,
    SendblueError,
    TokenExpiredError,
    TransportError,
)
from sendblue_lines.sandbox import Sandbox


def _unclear(api: ScriptedApi) -> None:
    api.preview()
    api.fail("confirm", "502")
    api.fail("confirm", "410")


def _failed(api: ScriptedApi) -> None:
    api.preview()
    api.fail("confirm", "500pf")


def _expired(api: ScriptedApi) -> None:
    api.preview()
    api.fail("confirm", "410")


def _transport(api: ScriptedApi) -> None:
    api.raise_("preview", aiohttp.ServerDisconnectedError(), times=3)


def _malformed(api: ScriptedApi) -> None:
    api.raw("preview", 200, {"status": "OK", "preview_token": 7})


@pytest.mark.parametrize(
    ("step", "failure", "error"),
    [
        pytest.param("preview", "401", AuthenticationError, id="401"),
        pytest.param("preview", "402", NoCardOnFileError, id="402"),
        pytest.param("confirm", "403", PermissionDeniedError, id="403"),
        pytest.param("confirm", "429d", DailyLimitReachedError, id="429-daily"),
        pytest.param("preview", "429m", MonthlyLimitReachedError, id="429-monthly"),
        pytest.param("preview", "429", RateLimitError, id="429-plain"),
        pytest.param("preview", "503nl", NoLinesAvailableError, id="no-lines"),
    ],
)
async def test_account_level_errors_stop_new_slots(
    make: Make,
    client: LinesClient,
    api: ScriptedApi,
    step: str,
    failure: str,
    error: type[APIError],
) -> None:
    """401, 402, 403, a 429 and no-lines stop the batch: the rest not attempted."""
    api.limits()
    if step == "confirm":
        api.preview()
    api.fail(step, failure)
    result = await make(no_lines_retry=None).provision_many(4, concurrency=1)
    assert isinstance(result.stopped_by, error)
    assert result.errors == [result.stopped_by]
    assert (result.lines, result.not_attempted) == ([], 3)
    assert api.count("preview") == 1


async def test_no_lines_stops_only_after_its_retries(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """NoLinesAvailableError is retried inside the slot before it stops the batch."""
    api.limits()
    api.fail("preview", "503nl", times=3)
    result = await make().provision_many(2, concurrency=1)
    assert isinstance(result.stopped_by, NoLinesAvailableError)
    assert api.count("preview") == 3
    assert result.not_attempted == 1


async def test_an_account_error_wins_over_the_plans_limit_error(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """When both the plan and a 401 held slots back, stopped_by is the 401."""
    api.limits(canonical(2, 10))
    api.fail("preview", "401")
    result = await make().provision_many(5, concurrency=1)
    assert isinstance(result.stopped_by, AuthenticationError)
    assert result.not_attempted == 4


async def test_slots_in_flight_finish_after_a_stop(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A stop lets the slot already previewing buy its line, and starts no other."""
    api.limits()
    api.fail("preview", "401", delay=0.02)
    api.preview(delay=0.1)
    api.confirm()
    result = await make().provision_many(5, concurrency=2)
    assert isinstance(result.stopped_by, AuthenticationError)
    assert len(result.lines) == 1
    assert result.not_attempted == 3


@pytest.mark.parametrize(
    ("script", "error"),
    [
        pytest.param(_unclear, OutcomeUnknownError, id="outcome-unknown"),
        pytest.param(_failed, ProvisioningFailedError, id="provisioning-failed"),
        pytest.param(_expired, TokenExpiredError, id="token-expired"),
        pytest.param(_transport, TransportError, id="transport"),
        pytest.param(_malformed, MalformedResponseError, id="malformed"),
    ],
)
async def test_per_slot_errors_do_not_stop_the_batch(
    make: Make,
    client: LinesClient,
    api: ScriptedApi,
    script: Any,
    error: type[SendblueError],
) -> None:
    """A slot's own failure is reported and the other slots still run."""
    api.limits()
    script(api)
    api.buys(2)
    result = await make(max_repreviews=0).provision_many(3, concurrency=1)
    assert [type(e) for e in result.errors] == [error]
    assert len(result.lines) == 2
    assert (result.not_attempted, result.stopped_by) == (0, None)
    assert result.outcomes[0].error is result.errors[0]


async def test_a_declined_slot_is_reported_and_the_batch_goes_on(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Approve declining a preview fails that slot only; nothing confirmed for it."""
    api.limits()
    api.preview(times=3)
    api.confirm(times=2)
    answers = iter([False, True, True])
    result = await make(approve=lambda p: next(answers)).provision_many(
        3, concurrency=1
    )
    assert [type(e) for e in result.errors] == [DeclinedError]
    assert len(result.lines) == 2
    assert api.count("confirm") == 2
    assert result.charged == 2


# -- against the sandbox, through real sockets ------------------------------------


async def test_no_card_stops_a_batch_at_its_first_slot(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """402 is account-level: one slot fails, the others are not attempted."""
    sendblue_sandbox.account.card_on_file = False
    result = await Provisioner(sandbox_client).provision_many(3, concurrency=1)
    assert isinstance(result.stopped_by, NoCardOnFileError)
    assert (len(result.errors), result.not_attempted) == (1, 2)
    assert sendblue_sandbox.ledger == []
