"""Refusals are raised as typed errors; nothing outside the tree escapes."""

from __future__ import annotations

from typing import Any

import pytest
from provisioner_support import Make
from scripted_api import ScriptedApi

from sendblue_lines import (
    APIError,
    AuthenticationError,
    DailyLimitReachedError,
    LinesClient,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    PermissionDeniedError,
    Provisioner,
    TransportError,
)
from sendblue_lines.sandbox import Sandbox


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        pytest.param("401", AuthenticationError, id="401"),
        pytest.param("402", NoCardOnFileError, id="402"),
        pytest.param("403", PermissionDeniedError, id="403"),
        pytest.param("429d", DailyLimitReachedError, id="429-daily"),
        pytest.param("429m", MonthlyLimitReachedError, id="429-monthly"),
    ],
)
@pytest.mark.parametrize("step", ["preview", "confirm"])
async def test_refusals_are_raised_as_typed_errors(
    make: Make,
    client: LinesClient,
    api: ScriptedApi,
    failure: str,
    error: type[APIError],
    step: str,
) -> None:
    """A refusal at preview or confirm is raised typed, with no further request."""
    api.limits()
    if step == "confirm":
        api.preview()
    api.fail(step, failure)
    with pytest.raises(error):
        await make().provision()
    assert api.names()[-1] == step
    assert api.count(step) == 1


async def test_a_malformed_preview_is_raised(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A preview answer that is not a Preview raises MalformedResponseError."""
    from sendblue_lines import MalformedResponseError

    api.limits()
    api.raw("preview", 200, {"status": "OK"})
    with pytest.raises(MalformedResponseError):
        await make().provision()
    assert api.count("confirm") == 0


async def test_no_exception_outside_the_tree_escapes(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """An unmatched (failed) request surfaces as a TransportError, not aiohttp's."""
    del api  # its mock is on, with nothing scripted
    with pytest.raises(TransportError):
        await make().provision()


# -- against the sandbox, through real sockets ------------------------------------


async def test_another_plan_is_refused(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """An account off the inbound_only plan gets PermissionDeniedError."""
    sendblue_sandbox.account.plan = "standard"
    with pytest.raises(PermissionDeniedError):
        await Provisioner(sandbox_client).provision()
