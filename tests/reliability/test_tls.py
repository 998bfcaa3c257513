"""TLS: certificates are verified unless the caller's own session says otherwise.

A local https server (hand-written: the sandbox serves plain http only) with a
self-signed certificate (made with the openssl
command for each test session) stands for a man in the middle: the SDK's own
session must refuse it, before sending anything. A spy on aiohttp records
what the SDK asks of every request and connector: never `ssl=False`. A
caller's session with its own connector (which skips verification, the
caller's choice) is used as it is.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from reliability_support import NO_WAIT, connect

from sendblue_lines import LinesClient, Provisioner, TransportError
from sendblue_lines.sandbox import ManualClock, Sandbox

LIMITS = {
    "status": "OK",
    "limits": {"api_provision_daily": 3, "api_provision_monthly": 10},
    "usage": {"api_provision_daily": 0, "api_provision_monthly": 0},
}


class HttpsServer:
    """An https server on 127.0.0.1 answering the limits endpoint; counts requests."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> HttpsServer:
        async def limits(request: web.Request) -> web.Response:
            self.requests += 1
            return web.json_response(LIMITS)

        app = web.Application()
        app.router.add_get("/accounts/limits", limits)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.context)
        await site.start()
        self.url = f"https://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def https_server(certificate: tuple[Path, Path]) -> AsyncIterator[HttpsServer]:
    async with HttpsServer(*certificate) as server:
        yield server


async def test_an_untrusted_certificate_is_refused_before_sending(
    https_server: HttpsServer, secret_canary: Any
) -> None:
    """By default the certificate is verified: a self-signed one sends nothing."""
    async with LinesClient(
        "key-id", secret_canary.canary, base_url=https_server.url, retry=NO_WAIT
    ) as client:
        with pytest.raises(TransportError) as caught:
            await client.get_limits()
    assert caught.value.sent is False
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorCertificateError)
    assert https_server.requests == 0


class Spy:
    """Records the keyword arguments of aiohttp's request and connector calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[dict[str, Any]] = []
        self.connectors: list[dict[str, Any]] = []
        request = aiohttp.ClientSession._request
        connector_init = aiohttp.TCPConnector.__init__

        def spy_request(session: Any, *args: Any, **kwargs: Any) -> Any:
            self.requests.append(kwargs)
            return request(session, *args, **kwargs)

        def spy_connector(connector: Any, *args: Any, **kwargs: Any) -> None:
            self.connectors.append(kwargs)
            connector_init(connector, *args, **kwargs)

        monkeypatch.setattr(aiohttp.ClientSession, "_request", spy_request)
        monkeypatch.setattr(aiohttp.TCPConnector, "__init__", spy_connector)


async def test_the_sdk_never_turns_verification_off(
    sendblue_sandbox: Sandbox[ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a whole purchase, no request or connector of ours gets ssl=False."""
    spy = Spy(monkeypatch)
    async with connect(sendblue_sandbox) as client:
        await Provisioner(client).provision()
        await client.get_limits()
    assert len(spy.requests) == 4
    assert len(spy.connectors) == 1
    for kwargs in spy.requests + spy.connectors:
        assert kwargs.get("ssl", True) is not False
        assert "verify_ssl" not in kwargs
        assert kwargs.get("ssl_context") is None
        assert kwargs.get("fingerprint") is None


async def test_a_callers_session_is_used_as_it_is(
    https_server: HttpsServer, monkeypatch: pytest.MonkeyPatch, secret_canary: Any
) -> None:
    """The caller's session and connector, ssl=False included, are theirs: kept."""
    connector = aiohttp.TCPConnector(ssl=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        spy = Spy(monkeypatch)
        async with LinesClient(
            "key-id",
            secret_canary.canary,
            base_url=https_server.url,
            session=session,
            retry=NO_WAIT,
        ) as client:
            limits = await client.get_limits()
        assert limits.daily is not None
        assert limits.daily.limit == 3
        assert https_server.requests == 1
        # The SDK made no connector of its own and passed no TLS option.
        assert spy.connectors == []
        assert all("ssl" not in kwargs for kwargs in spy.requests)
        assert session.connector is connector
        assert not session.closed
