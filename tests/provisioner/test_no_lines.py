"""No lines available: retried within its policy, then raised."""

from __future__ import annotations

from typing import Any

import pytest
from provisioner_support import FAST_NO_LINES, Make, requests
from scripted_api import ScriptedApi

from sendblue_lines import (
    LinesClient,
    NoLinesAvailableError,
    Provisioner,
    RetryPolicy,
)
from sendblue_lines.sandbox import Sandbox


async def test_no_lines_at_preview_is_retried(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """NoLinesAvailableError from preview is tried again, and a later line bought."""
    api.limits()
    api.fail("preview", "503nl", times=2)
    api.buys()
    await make().provision()
    assert api.count("preview") == 3


async def test_no_lines_is_raised_after_its_tries(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """After no_lines_retry's attempts, NoLinesAvailableError is raised."""
    api.limits()
    api.fail("preview", "503nl", times=3)
    with pytest.raises(NoLinesAvailableError):
        await make().provision()
    assert api.count("preview") == 3


async def test_no_lines_retry_can_be_disabled(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """no_lines_retry=None raises on the first NoLinesAvailableError."""
    api.limits()
    api.fail("preview", "503nl")
    with pytest.raises(NoLinesAvailableError):
        await make(no_lines_retry=None).provision()
    assert api.count("preview") == 1


async def test_no_lines_at_confirm_previews_again(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A 503 no_lines_available at confirm (nothing bought) retries with a new token."""
    api.limits()
    first, second = api.preview(times=2)
    api.fail("confirm", "503nl")
    api.confirm()
    await make().provision()
    assert api.confirmed_tokens() == [first, second]


async def test_no_lines_backoff_sleeps_within_its_policy(
    make: Make, client: LinesClient, api: ScriptedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backoff between no-lines tries follows the policy's jittered delays."""
    import anyio

    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    api.limits()
    api.fail("preview", "503nl", times=2)
    api.buys()
    policy = RetryPolicy(attempts=3, base_delay=1.0, max_delay=5.0)
    await make(no_lines_retry=policy).provision()
    assert len(slept) == 2
    assert 0 <= slept[0] <= 1.0
    assert 0 <= slept[1] <= 2.0


# -- against the sandbox, through real sockets ------------------------------------


async def test_an_empty_inventory_stops_the_batch_after_retries(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """One line in stock: one bought, then no_lines_available stops the batch."""
    sendblue_sandbox.set_inventory(1)
    provisioner = Provisioner(sandbox_client, no_lines_retry=FAST_NO_LINES)
    result = await provisioner.provision_many(3, concurrency=1)
    assert len(result.lines) == 1
    assert isinstance(result.stopped_by, NoLinesAvailableError)
    assert result.not_attempted == 1
    assert requests(sendblue_sandbox, "preview") == 1 + 3
