"""approve= decides each purchase between preview and confirm; only True buys."""

from __future__ import annotations

import asyncio
import logging

import pytest
from provisioner_support import Make
from scripted_api import ScriptedApi

from sendblue_lines import (
    DeclinedError,
    LinesClient,
    Preview,
    ProvisionOutcome,
)


async def test_approve_true_buys(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Approve sees the Preview before its confirm and True lets it through."""
    api.limits()
    [token] = api.preview()
    api.confirm()
    seen: list[Preview] = []

    def approve(preview: Preview) -> bool:
        seen.append(preview)
        assert api.count("confirm") == 0
        return True

    await make(approve=approve).provision()
    assert [p.token for p in seen] == [token]


async def test_an_async_approve_is_awaited(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """An async approve callback decides too."""
    api.limits()
    api.buys()

    async def approve(preview: Preview) -> bool:
        return True

    await make(approve=approve).provision()
    assert api.count("confirm") == 1


@pytest.mark.parametrize("answer", [False, None, 1, "yes"])
async def test_anything_but_true_declines(
    make: Make, client: LinesClient, api: ScriptedApi, answer: object
) -> None:
    """Only True approves; any other answer declines and nothing is confirmed."""
    api.limits()
    [token] = api.preview()
    seen: list[ProvisionOutcome] = []
    with pytest.raises(DeclinedError) as caught:
        await make(approve=lambda preview: answer, on_outcome=seen.append).provision()
    assert caught.value.preview_token == token
    assert api.count("confirm") == 0
    assert isinstance(seen[0].error, DeclinedError)


async def test_an_approve_that_raises_declines(
    make: Make, client: LinesClient, api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Approve raising declines the slot, with the exception as the cause."""
    api.limits()
    api.preview()

    def approve(preview: Preview) -> bool:
        raise ValueError("policy service down")

    with pytest.raises(DeclinedError) as caught:
        await make(approve=approve).provision()
    assert isinstance(caught.value.__cause__, ValueError)
    assert api.count("confirm") == 0
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_a_token_that_expired_during_approval_is_not_sent(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """The expiry check follows approve: a slow approval previews (and asks) again."""
    api.limits()
    api.preview(expires_in=5.5)
    [fresh] = api.preview()
    api.confirm()
    asked: list[str] = []

    async def slow_approve(preview: Preview) -> bool:
        asked.append(preview.token)
        if len(asked) == 1:
            assert not preview.expired(margin=5.0)
            await asyncio.sleep(0.6)
        return True

    await make(approve=slow_approve, expiry_margin=5.0).provision()
    assert api.confirmed_tokens() == [fresh]
    assert len(asked) == 2
