"""What a long-running sandbox keeps: charges whole, requests and old tokens capped.

The caps are lowered here (they are module constants, read as the sandbox
runs) so that a handful of requests over real HTTP reach them.
"""

from __future__ import annotations

from sendblue_lines.sandbox import Fault, Sandbox, SandboxAccount, _records, _state


async def test_the_request_log_keeps_the_latest_and_the_counters_count_all(
    monkeypatch, session, clock
):
    """Past the cap the oldest records go; counters and the ledger stay whole."""
    monkeypatch.setattr(_records, "REQUESTS_KEPT", 4)
    async with Sandbox(clock=clock) as sandbox:
        sandbox.inject("preview", Fault.delay(0))
        headers = sandbox.auth_headers()
        for _ in range(3):
            async with session.post(
                sandbox.url + "/accounts/lines/provision-preview", headers=headers
            ) as response:
                token = (await response.json())["preview_token"]
            async with session.post(
                sandbox.url + "/accounts/lines/provision-confirm",
                headers=headers,
                json={"preview_token": token},
            ) as response:
                assert response.status == 200
        kept = sandbox.requests
        counted = sandbox.counters
    assert [r.endpoint for r in kept] == ["preview", "confirm", "preview", "confirm"]
    assert (counted["preview"].requests, counted["confirm"].requests) == (3, 3)
    assert counted["confirm"].statuses[200] == 3
    assert counted["preview"].faults == {"delay": 1}
    assert {r.fault for r in kept} == {None}
    assert len(sandbox.ledger) == len(sandbox.purchases()) == 3


async def test_spent_tokens_past_the_cap_are_forgotten(monkeypatch, api, sandbox):
    """An old spent token answers as unknown (410 to anyone); a recent one as used."""
    monkeypatch.setattr(_state, "TOKENS_KEPT", 2)
    other = sandbox.add_account(SandboxAccount("other-key", "other-secret"))
    tokens = [await api.token() for _ in range(3)]
    for token in tokens:
        assert (await api.confirm(token))[0] == 200
    oldest, recent = tokens[0], tokens[-1]
    assert sandbox.token_status(oldest) == "unknown"
    assert sandbox.token_status(recent) == "used"
    assert (await api.confirm(oldest))[0] == 410
    assert (await api.confirm(oldest, other))[0] == 410
    assert (await api.confirm(recent, other))[0] == 403
    assert [charge.preview_token for charge in sandbox.ledger] == tokens


async def test_expired_tokens_are_set_aside_then_forgotten(
    monkeypatch, api, sandbox, clock
):
    """A token that expired unused stays "expired" until newer ones push it out."""
    monkeypatch.setattr(_state, "TOKENS_KEPT", 2)
    stale = await api.token()
    live = await api.token()
    clock.advance(minutes=10)
    fresh = await api.token()  # the preview that sets the two expired ones aside
    assert [sandbox.token_status(t) for t in (stale, live, fresh)] == [
        "expired",
        "expired",
        "unused",
    ]
    assert (await api.confirm(fresh))[0] == 200
    assert [sandbox.token_status(t) for t in (stale, live, fresh)] == [
        "unknown",
        "expired",
        "used",
    ]
    assert (await api.confirm(live))[0] == 410


async def test_a_token_still_valid_is_never_forgotten(monkeypatch, api, sandbox, clock):
    """However many tokens are spent, an unused token within its ten minutes works."""
    monkeypatch.setattr(_state, "TOKENS_KEPT", 1)
    waiting = await api.token()
    for _ in range(2):
        assert (await api.buy())[0] == 200
    clock.advance(minutes=9, seconds=59)
    assert sandbox.token_status(waiting) == "unused"
    assert (await api.confirm(waiting))[0] == 200
    assert sandbox.ledger[-1].preview_token == waiting
