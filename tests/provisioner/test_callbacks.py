"""on_outcome hears every outcome, sync or async; a failing one loses nothing."""

from __future__ import annotations

import logging

import pytest
from provisioner_support import Make
from scripted_api import ScriptedApi, canonical

from sendblue_lines import (
    DailyLimitReachedError,
    LinesClient,
    ProvisioningFailedError,
    ProvisionOutcome,
)


async def test_provision_reports_the_line_to_on_outcome_as_index_0(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """on_outcome sees the bought line as slot 0 before provision() returns."""
    api.limits()
    api.buys()
    seen: list[ProvisionOutcome] = []
    line = await make(on_outcome=seen.append).provision()
    assert seen == [ProvisionOutcome(index=0, line=line)]


async def test_provision_reports_an_error_to_on_outcome(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A failed provision() hands its error to on_outcome, then raises it."""
    api.limits()
    api.preview()
    api.fail("confirm", "500pf")
    seen: list[ProvisionOutcome] = []
    with pytest.raises(ProvisioningFailedError) as caught:
        await make(on_outcome=seen.append).provision()
    assert seen == [ProvisionOutcome(index=0, error=caught.value)]
    assert seen[0].charged


async def test_an_async_on_outcome_is_awaited(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """An async on_outcome callback runs to its end before provision() returns."""
    api.limits()
    api.buys()
    seen: list[ProvisionOutcome] = []

    async def record(outcome: ProvisionOutcome) -> None:
        seen.append(outcome)

    await make(on_outcome=record).provision()
    assert [o.ok for o in seen] == [True]


async def test_an_on_outcome_that_raises_is_logged_and_the_line_kept(
    make: Make, client: LinesClient, api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken on_outcome cannot lose a purchase: it is logged at ERROR."""
    api.limits()
    api.buys()

    def broken(outcome: ProvisionOutcome) -> None:
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.ERROR, logger="sendblue_lines"):
        line = await make(on_outcome=broken).provision()
    assert line.phone_number == "+14155550001"
    assert any(
        r.levelno == logging.ERROR and "on_outcome" in r.getMessage()
        for r in caplog.records
    )


async def test_the_limit_error_is_reported_to_on_outcome(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """Even the pre-check's refusal reaches on_outcome, as an error of slot 0."""
    api.limits(canonical(0, 5))
    seen: list[ProvisionOutcome] = []
    with pytest.raises(DailyLimitReachedError):
        await make(on_outcome=seen.append).provision()
    assert len(seen) == 1
    assert isinstance(seen[0].error, DailyLimitReachedError)
    assert not seen[0].charged


async def test_on_outcome_sees_every_slot_of_a_batch(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """on_outcome is called once per attempted slot, failures included."""
    api.limits()
    api.preview()
    api.fail("confirm", "500pf")
    api.buys(2)
    seen: list[ProvisionOutcome] = []
    result = await make(on_outcome=seen.append).provision_many(3, concurrency=1)
    assert sorted(seen, key=lambda o: o.index) == result.outcomes
    assert result.charged == 3
