"""The Sandbox object: lifecycle, latency, introspection, and its fixtures."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from datetime import timedelta

import aiohttp
import anyio
import pytest

from sendblue_lines.sandbox import (
    Fault,
    ManualClock,
    RealClock,
    Sandbox,
    SandboxAccount,
)


async def test_url_is_loopback_on_a_free_port():
    """A default sandbox listens on 127.0.0.1 on a port of its own."""
    async with Sandbox() as first, Sandbox() as second:
        assert first.url.startswith("http://127.0.0.1:")
        assert first.url != second.url
        assert first.api_key_id == "sandbox-key-id"
        assert first.api_secret_key != second.api_secret_key
        assert isinstance(first.clock, ManualClock)
        assert not first.clock.frozen


def test_url_before_start_is_an_error():
    """Asking for the URL of a sandbox that is not started raises RuntimeError."""
    with pytest.raises(RuntimeError, match="started"):
        _ = Sandbox().url


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "192.0.2.1", "example.com", "::"],  # noqa: S104
)
def test_non_loopback_hosts_are_refused(host):
    """A non-loopback host is refused unless allow_remote is set (nothing is bound)."""
    with pytest.raises(ValueError, match="allow_remote"):
        Sandbox(host=host)


def test_loopback_spellings_are_accepted():
    """Loopback addresses, localhost included, need no allow_remote."""
    for host in ("localhost", "127.0.0.1", "127.0.0.2", "::1"):
        Sandbox(host=host)


async def test_a_sandbox_starts_only_once():
    """start() twice, or after aclose(), raises RuntimeError; aclose() is idempotent."""
    sandbox = await Sandbox().start()
    with pytest.raises(RuntimeError):
        await sandbox.start()
    await sandbox.aclose()
    await sandbox.aclose()
    with pytest.raises(RuntimeError):
        await sandbox.start()


async def test_closed_sandbox_refuses_connections(session):
    """After the context exits, the port no longer answers."""
    async with Sandbox() as sandbox:
        url = sandbox.url
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(url + "/accounts/limits")


async def test_a_cancelled_close_still_frees_the_port(session):
    """Cancelling aclose() midway still stops the server before the cancel lands."""
    sandbox = await Sandbox().start()
    closing = asyncio.create_task(sandbox.aclose())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(sandbox.url + "/accounts/limits")


async def test_real_clock_sandbox(session):
    """A sandbox can run on the wall clock."""
    async with Sandbox(clock=RealClock()) as sandbox:
        before = RealClock().now()
        async with session.post(
            sandbox.url + "/accounts/lines/provision-preview",
            headers=sandbox.auth_headers(),
        ) as response:
            assert response.status == 200
        assert sandbox.requests[0].at >= before


async def test_fixed_latency_is_added_to_every_request(api, sandbox):
    """A fixed latency holds each answer, unrouted requests included.

    Proven by order: both held requests are still in progress after a request
    that arrived later, without latency, was answered.
    """
    sandbox.latency = 60
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(api.limits)
        tasks.start_soon(api.call, "GET", "/nowhere")
        await sandbox.wait_for_requests("limits")
        await sandbox.wait_for_requests("other")  # the counters' unrouted key
        sandbox.latency = None  # drawn on arrival: the held two keep theirs
        assert (await api.preview())[0] == 200
        assert sandbox.in_flight("limits") == 1
        assert sandbox.in_flight() == 2
        assert [record.endpoint for record in sandbox.requests] == ["preview"]
        tasks.cancel_scope.cancel()


async def test_latency_distribution_is_drawn_per_request(api, sandbox):
    """A callable latency is called once per request."""
    draws = []

    def draw() -> float:
        draws.append(0.01)
        return 0.01

    sandbox.latency = draw
    for _ in range(3):
        await api.limits()
    assert len(draws) == 3
    sandbox.latency = None
    assert sandbox.latency is None


async def test_latency_given_to_the_constructor(session):
    """latency= at construction holds the first request, while a later one is not."""
    async with Sandbox(latency=60) as sandbox, anyio.create_task_group() as tasks:
        assert sandbox.latency == 60
        tasks.start_soon(session.get, sandbox.url + "/accounts/limits")
        await sandbox.wait_for_requests("limits")
        sandbox.latency = None
        async with session.get(
            sandbox.url + "/accounts/limits", headers=sandbox.auth_headers()
        ) as response:
            assert response.status == 200
        assert sandbox.in_flight("limits") == 1
        assert [record.status for record in sandbox.requests] == [200]
        tasks.cancel_scope.cancel()


async def test_request_log_records_what_happened(api, sandbox, clock):
    """The log keeps method, path, endpoint, status, time, fault and account."""
    await api.limits()
    clock.advance(seconds=5)
    sandbox.inject("preview", Fault.respond(500))
    await api.preview()
    await api.call("POST", "/accounts/lines/provision-preview", headers={})
    first, second, third = sandbox.requests
    assert (first.method, first.path, first.endpoint, first.status) == (
        "GET",
        "/accounts/limits",
        "limits",
        200,
    )
    assert first.api_key_id == sandbox.api_key_id
    assert first.fault is None
    assert second.at - first.at == timedelta(seconds=5)
    assert (second.status, second.fault) == (500, "respond")
    assert (third.status, third.api_key_id) == (401, None)


async def test_the_secret_never_reaches_the_log_or_reprs(api, sandbox):
    """Neither the request log, the counters, the ledger nor any repr holds a secret."""
    other = sandbox.add_account(SandboxAccount("other", "other-very-secret"))
    wrong = {"sb-api-key-id": sandbox.api_key_id, "sb-api-secret-key": "wrong-secret"}
    await api.buy()
    await api.buy(other)
    await api.call("GET", "/accounts/limits", headers=wrong)
    await api.call("GET", "/nowhere")
    seen = " ".join(
        repr(item)
        for item in (
            sandbox,
            sandbox.requests,
            sandbox.counters,
            sandbox.ledger,
            sandbox.accounts,
            sandbox.account,
        )
    )
    for secret in (sandbox.api_secret_key, "other-very-secret", "wrong-secret"):
        assert secret not in seen


async def test_counters_count_requests_and_statuses(api, sandbox):
    """Counters count arrivals per endpoint and answers per status."""
    await api.buy()
    await api.confirm("lpv_unknown")
    await api.limits()
    await api.call("GET", "/nowhere")
    counters = sandbox.counters
    assert counters["preview"].requests == 1
    assert counters["confirm"].requests == 2
    assert counters["confirm"].statuses == {200: 1, 410: 1}
    assert counters["limits"].statuses == {200: 1}
    assert counters["other"].statuses == {404: 1}


async def test_the_fixture_gives_a_started_fresh_sandbox(sendblue_sandbox, session):
    """The sendblue_sandbox fixture yields a started sandbox with a default account."""
    assert sendblue_sandbox.ledger == []
    async with session.post(
        sendblue_sandbox.url + "/accounts/lines/provision-preview",
        headers=sendblue_sandbox.auth_headers(),
    ) as response:
        assert response.status == 200
    sendblue_sandbox.clock.advance(hours=25)


async def test_the_factory_fixture_takes_options(sendblue_sandbox_factory, session):
    """sendblue_sandbox_factory starts sandboxes with the options given."""
    sandbox = await sendblue_sandbox_factory(
        accounts=[SandboxAccount("mine", "my-secret", daily_limit=1)],
        inventory=0,
    )
    assert sandbox.api_key_id == "mine"
    async with session.post(
        sandbox.url + "/accounts/lines/provision-preview",
        headers=sandbox.auth_headers(),
    ) as response:
        assert response.status == 503


def test_fixtures_work_in_strict_mode_without_a_conftest(tmp_path):
    """An outside suite in pytest-asyncio strict mode gets the plugin's fixtures."""
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    (tmp_path / "test_outside.py").write_text(
        textwrap.dedent(
            """
            import aiohttp
            import pytest

            @pytest.mark.asyncio
            async def test_uses_the_sandbox(sendblue_sandbox, sendblue_sandbox_factory):
                other = await sendblue_sandbox_factory(inventory=0)
                async with aiohttp.ClientSession() as session:
                    async with session.post(
                        sendblue_sandbox.url + "/accounts/lines/provision-preview",
                        headers=sendblue_sandbox.auth_headers(),
                    ) as response:
                        assert response.status == 200
                    async with session.post(
                        other.url + "/accounts/lines/provision-preview",
                        headers=other.auth_headers(),
                    ) as response:
                        assert response.status == 503
            """
        )
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
