"""max_lines caps purchases; a purchase that bought nothing gives its unit back."""

from __future__ import annotations

import pytest
from provisioner_support import Make
from scripted_api import ScriptedApi, canonical

from sendblue_lines import (
    LinesClient,
    MaxLinesReachedError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProvisioningFailedError,
)


async def test_max_lines_caps_purchases_without_a_request(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Once max_lines purchases are made, provision() raises before any request."""
    api.limits()
    api.buys()
    provisioner = make(max_lines=1)
    await provisioner.provision()
    assert provisioner.lines_left == 0
    with pytest.raises(MaxLinesReachedError) as caught:
        await provisioner.provision()
    assert caught.value.max_lines == 1
    assert api.count("limits") == 1


async def test_max_lines_zero_buys_nothing(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """max_lines=0 refuses at once."""
    with pytest.raises(MaxLinesReachedError):
        await make(max_lines=0).provision()
    assert api.calls == []


async def test_a_purchase_that_bought_nothing_gives_its_unit_back(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A confirm refused with nothing bought does not use up max_lines."""
    api.limits(repeat=True)
    api.preview()
    api.fail("confirm", "403")
    api.buys()
    provisioner = make(max_lines=1)
    with pytest.raises(PermissionDeniedError):
        await provisioner.provision()
    assert provisioner.lines_left == 1
    await provisioner.provision()
    assert provisioner.lines_left == 0


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param("500pf", id="provisioning-failed"),
        pytest.param("502", id="unknown"),
    ],
)
async def test_money_moved_uses_up_max_lines(
    make: Make, client: LinesClient, api: ScriptedApi, failure: str
) -> None:
    """ProvisioningFailed and OutcomeUnknown count against max_lines like a line."""
    api.limits()
    api.preview()
    api.fail("confirm", failure, times=3)
    provisioner = make(max_lines=1)
    with pytest.raises((ProvisioningFailedError, OutcomeUnknownError)):
        await provisioner.provision()
    assert provisioner.lines_left == 0


async def test_max_lines_caps_a_batch(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A batch plans no more slots than max_lines leaves, and says so."""
    api.limits()
    api.buys(2)
    provisioner = make(max_lines=2)
    result = await provisioner.provision_many(4)
    assert len(result.lines) == 2
    assert result.not_attempted == 2
    assert isinstance(result.stopped_by, MaxLinesReachedError)
    assert provisioner.lines_left == 0


async def test_failed_slots_give_their_max_lines_units_back(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Slots that bought nothing, or never started, do not use up max_lines."""
    api.limits(canonical(2, 10))
    api.preview()
    api.fail("confirm", "410")
    api.buys()
    provisioner = make(max_lines=5, max_repreviews=0)
    result = await provisioner.provision_many(4, concurrency=1)
    assert len(result.lines) == 1
    assert provisioner.lines_left == 4


async def test_two_flows_share_max_lines(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A batch's planned slots are reserved: a provision() alongside is refused."""
    api.limits(repeat=True)
    api.preview(times=2, delay=0.05)
    api.confirm(times=2)
    provisioner = make(max_lines=2)
    async with provisioner.batch(2) as outcomes:
        with pytest.raises(MaxLinesReachedError):
            await provisioner.provision()
        lines = [o.line async for o in outcomes]
    assert len(lines) == 2
    assert api.count("preview") == 2
