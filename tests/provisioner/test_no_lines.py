"""No lines available: retried within its policy, then raised."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Make
from scripted_api import ScriptedApi

from sendblue_lines import (
    LinesClient,
    NoLinesAvailableError,
    RetryPolicy,
)


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


@pytest.mark.parametrize("disabled", [None, 0])
async def test_no_lines_retry_can_be_disabled(
    make: Make, client: LinesClient, api: ScriptedApi, disabled: Any
) -> None:
    """no_lines_retry=None or 0 raises on the first NoLinesAvailableError."""
    api.limits()
    api.fail("preview", "503nl")
    with pytest.raises(NoLinesAvailableError):
        await make(no_lines_retry=disabled).provision()
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
