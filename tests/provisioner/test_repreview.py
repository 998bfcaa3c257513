"""An expired token (410, or past its time) is previewed again, never sent late."""

from __future__ import annotations

from typing import Any

import pytest
from foundation_support import OutrunFirst
from provisioner_support import Make, requests
from scripted_api import ScriptedApi

import sendblue_lines._clock
from sendblue_lines import (
    LinesClient,
    Preview,
    Provisioner,
    TokenExpiredError,
)
from sendblue_lines.sandbox import Sandbox


async def test_a_410_reruns_preview_and_confirm(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A clean 410 at confirm buys with a new preview's token."""
    api.limits()
    first, second = api.preview(times=2)
    api.fail("confirm", "410")
    api.confirm()
    await make().provision()
    assert api.names() == ["limits", "preview", "confirm", "preview", "confirm"]
    assert api.confirmed_tokens() == [first, second]


@pytest.mark.parametrize("max_repreviews", [0, 1, 2])
async def test_410s_are_retried_max_repreviews_times_then_raised(
    make: Make, client: LinesClient, api: ScriptedApi, max_repreviews: int
) -> None:
    """After max_repreviews new previews, the next 410 is raised as it is."""
    api.limits()
    tokens = api.preview(times=max_repreviews + 1)
    api.fail("confirm", "410", times=max_repreviews + 1)
    with pytest.raises(TokenExpiredError):
        await make(max_repreviews=max_repreviews).provision()
    assert api.count("preview") == max_repreviews + 1
    assert api.confirmed_tokens() == tokens


async def test_an_expired_token_is_never_sent(
    make: Make, client: LinesClient, api: ScriptedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token whose validity ran out before confirm is dropped for a new preview."""
    api.limits()
    api.preview()
    [fresh] = api.preview()
    api.confirm()
    real = sendblue_lines._clock.monotonic
    asked: list[str] = []

    def outlive_first(preview: Preview) -> bool:
        # The first token's 10 minutes pass while it waits for approval.
        asked.append(preview.token)
        if len(asked) == 1:
            monkeypatch.setattr(
                sendblue_lines._clock, "monotonic", lambda: real() + 601.0
            )
        return True

    await make(approve=outlive_first).provision()
    assert len(asked) == 2
    assert api.confirmed_tokens() == [fresh]


async def test_a_token_inside_the_margin_counts_as_expired(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A token that expires within expiry_margin seconds is not sent."""
    api.limits()
    api.preview(expires_in=3)
    [fresh] = api.preview()
    api.confirm()
    await make(expiry_margin=5.0).provision()
    assert api.confirmed_tokens() == [fresh]


async def test_tokens_that_always_arrive_expired_end_in_token_expired(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Skewed clocks cannot loop: tokens granting nothing are sent, their 410s bound it.

    A token whose expires_at is before its answer's Date gets the contract's
    10 minutes and is sent (a 410 costs nothing); each 410 uses up a re-preview.
    """
    api.limits()
    tokens = api.preview(expires_in=-60, times=3)
    api.fail("confirm", "410", times=3)
    with pytest.raises(TokenExpiredError):
        await make(max_repreviews=2).provision()
    assert api.confirmed_tokens() == tokens
    assert api.count("preview") == 3


# -- against the sandbox, through real sockets ------------------------------------


async def test_a_token_expired_on_the_server_is_previewed_again(
    sandbox_client: LinesClient,
    outrun_first: OutrunFirst,
    sendblue_sandbox: Sandbox[Any],
) -> None:
    """The sandbox clock outruns ours during approval: a 410, then a new token buys."""
    await Provisioner(sandbox_client, approve=outrun_first).provision()
    assert len(outrun_first.asked) == 2
    [charge] = sendblue_sandbox.ledger
    assert charge.preview_token == outrun_first.asked[1]
    assert sendblue_sandbox.counters["confirm"].statuses[410] == 1


async def test_tokens_that_keep_expiring_end_in_token_expired(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """Every token expiring before its confirm: TokenExpiredError, nothing charged."""

    def approve(preview: Preview) -> bool:
        del preview
        sendblue_sandbox.clock.advance(minutes=11)
        return True

    provisioner = Provisioner(sandbox_client, approve=approve, max_repreviews=2)
    with pytest.raises(TokenExpiredError):
        await provisioner.provision()
    assert sendblue_sandbox.ledger == []
    assert requests(sendblue_sandbox, "preview") == 3
