"""plan() reads only the limits and says how many lines may be bought."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from provisioner_support import Make, connect, requests
from scripted_api import ScriptedApi, canonical

from sendblue_lines import (
    ConfigurationError,
    LinesClient,
    Plan,
    Provisioner,
)
from sendblue_lines.sandbox import Sandbox


async def test_plan_reads_only_the_limits(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """plan() sends no preview and no confirm, and says what binds."""
    api.limits(canonical(2, 6, next_daily="2026-05-18T14:30:00.000Z"))
    plan = await make().plan(5)
    assert plan == Plan(
        requested=5,
        allowed=2,
        binding="daily",
        next_available_at=datetime(2026, 5, 18, 14, 30, tzinfo=timezone.utc),
        limits=plan.limits,
    )
    assert api.names() == ["limits"]


@pytest.mark.parametrize(
    ("body", "count", "allowed", "binding"),
    [
        pytest.param(canonical(3, 10), 2, 2, None, id="fits"),
        pytest.param(canonical(3, 1), 2, 1, "monthly", id="monthly-tighter"),
        pytest.param(canonical(2, 2), 5, 2, "monthly", id="tie-monthly"),
        pytest.param(canonical(0, 4), 1, 0, "daily", id="daily-full"),
        pytest.param({"status": "OK"}, 7, 7, None, id="unknown"),
        pytest.param(
            {"status": "OK", "limits": {"api_provision_daily": 3}},
            5,
            3,
            "daily",
            id="limit-only",
        ),
        pytest.param(
            {
                "status": "OK",
                "limits": {"api_provision_daily": 3, "api_provision_monthly": 10},
                "usage": {"api_provision_daily": 1, "api_provision_monthly": 9},
            },
            5,
            1,
            "monthly",
            id="flat-with-usage",
        ),
    ],
)
async def test_plan_takes_the_tighter_window(
    make: Make,
    client: LinesClient,
    api: ScriptedApi,
    body: dict[str, Any],
    count: int,
    allowed: int,
    binding: str | None,
) -> None:
    """plan() allows the smaller remaining (or limit) and names the binding window."""
    api.limits(body)
    plan = await make().plan(count)
    assert (plan.allowed, plan.binding) == (allowed, binding)
    assert plan.blocked is (allowed == 0)


async def test_plan_when_both_windows_are_full_waits_for_the_later(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """With both windows full, the next slot opens when the later one frees up."""
    api.limits(
        canonical(
            0,
            0,
            next_daily="2026-05-18T10:00:00.000Z",
            next_monthly="2026-05-20T10:00:00.000Z",
        )
    )
    plan = await make().plan(3)
    assert plan.allowed == 0
    assert plan.next_available_at == datetime(2026, 5, 20, 10, tzinfo=timezone.utc)


async def test_plan_counts_max_lines(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """A lifetime cap tighter than the limits binds as "max_lines"."""
    api.limits(canonical(3, 10))
    plan = await make(max_lines=1).plan(3)
    assert (plan.allowed, plan.binding, plan.next_available_at) == (
        1,
        "max_lines",
        None,
    )


async def test_plan_treats_an_unreadable_answer_as_unknown(
    make: Make, client: LinesClient, api: ScriptedApi
) -> None:
    """An unusable limits answer plans all of count, with limits unknown."""
    api.fail("limits", "404")
    plan = await make().plan(4)
    assert plan.allowed == 4
    assert not plan.limits.known


@pytest.mark.parametrize("count", [-1, 1.5, True])
async def test_plan_refuses_a_bad_count(
    make: Make, client: LinesClient, api: ScriptedApi, count: Any
) -> None:
    """plan() checks its count before any request."""
    with pytest.raises(ConfigurationError):
        await make().plan(count)
    assert api.calls == []


# -- against the sandbox, through real sockets ------------------------------------


async def test_plan_matches_the_sandbox(
    sandbox_client: LinesClient, sendblue_sandbox: Sandbox[Any]
) -> None:
    """plan() reads the sandbox's windows: 3 a day, one less after a purchase."""
    provisioner = Provisioner(sandbox_client)
    assert (await provisioner.plan(5)).allowed == 3
    await provisioner.provision()
    plan = await provisioner.plan(5)
    assert (plan.allowed, plan.binding) == (2, "daily")
    assert requests(sendblue_sandbox, "preview") == 1


async def test_the_flat_limits_shape_is_understood(
    sendblue_sandbox_factory: Callable[..., Awaitable[Sandbox[Any]]],
) -> None:
    """Against a sandbox answering the flat shape, the plan is the same."""
    sandbox = await sendblue_sandbox_factory(limits_shape="flat")
    async with connect(sandbox, timeout=2.0) as client:
        provisioner = Provisioner(client)
        await provisioner.provision()
        plan = await provisioner.plan(5)
    assert (plan.allowed, plan.binding) == (2, "daily")
