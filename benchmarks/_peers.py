"""The clients we compare: our SDK and what a user would write without it.

Every peer makes exactly the requests our SDK makes for one line: `GET
/accounts/limits`, `POST /accounts/lines/provision-preview` with no body,
`POST /accounts/lines/provision-confirm` with `{"preview_token": ...}` as
JSON. The hand-written peers send the same headers as our transport (the two
credentials, `Accept: application/json` and a `User-Agent`), refuse
redirects, check every status, parse every body as JSON and read the fields
they need (a fair hand-written client does that much), and check the limits
before buying. A batch is one limits read, then `asyncio.gather` over the
slots with an `asyncio.Semaphore` bounding the concurrency, on one session.

The official `sendblue` package has no provisioning methods; we call its
generic `get()`/`post()` on `AsyncSendblueAPI`, as its README shows for
undocumented endpoints. It sends its own headers (Stainless platform headers
and `Content-Type: application/json` on every call) and its own retry and
timeout machinery: that is what using it costs, so we leave it as it is,
except its connection pool, which we size like the others (below).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any, ClassVar

import sendblue_lines

from ._server import Server

LIMITS_PATH = "/accounts/limits"
PREVIEW_PATH = "/accounts/lines/provision-preview"
CONFIRM_PATH = "/accounts/lines/provision-confirm"
#: The same length and form as our transport's own User-Agent.
USER_AGENT = f"sendblue-lines/{sendblue_lines.__version__}"
#: Connections kept per client: our transport's pool size (aiohttp's default).
POOL_SIZE = 100
TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0


class PeerError(RuntimeError):
    """A peer got an answer it did not expect: the benchmark run is void."""


def _headers(server: Server) -> dict[str, str]:
    return {
        "sb-api-key-id": server.key_id,
        "sb-api-secret-key": server.secret,
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


def _remaining(body: Any) -> int:
    """What the canonical limits body leaves to buy now."""
    limits = body["limits"]
    return min(
        int(limits["api_provision_daily"]["remaining"]),
        int(limits["api_provision_monthly"]["remaining"]),
    )


class Peer:
    """One client under test, used for one measured run: open, use, close."""

    #: Short name used in tables and on the chart.
    name: ClassVar[str]
    #: What it is, for the report.
    description: ClassVar[str]

    def __init__(self, server: Server) -> None:
        self.server = server

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this peer cannot run here, or None when it can."""
        return None

    async def open(self) -> None:
        """Make the session; called inside the event loop of the run."""

    async def close(self) -> None:
        """Close what `open` made."""

    async def provision(self) -> str:
        """Buy one line the whole way (limits, preview, confirm); its number."""
        raise NotImplementedError

    async def provision_many(self, count: int, concurrency: int) -> int:
        """Buy `count` lines, `concurrency` at a time; how many were bought."""
        raise NotImplementedError

    async def __aenter__(self) -> Peer:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _HandWritten(Peer):
    """The flow written by hand over one `_call` that checks status and parses."""

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        raise NotImplementedError

    async def _buy(self) -> str:
        preview = await self._call("POST", PREVIEW_PATH)
        token = preview["preview_token"]
        if not isinstance(token, str):
            raise PeerError(f"preview answered without a token: {preview!r}")
        line = await self._call("POST", CONFIRM_PATH, {"preview_token": token})
        number = line["phone_number"]
        if not isinstance(number, str):
            raise PeerError(f"confirm answered without a number: {line!r}")
        return number

    async def provision(self) -> str:
        if _remaining(await self._call("GET", LIMITS_PATH)) < 1:
            raise PeerError("the sandbox's limits are reached")
        return await self._buy()

    async def provision_many(self, count: int, concurrency: int) -> int:
        planned = min(count, _remaining(await self._call("GET", LIMITS_PATH)))
        semaphore = asyncio.Semaphore(concurrency)

        async def slot() -> str:
            async with semaphore:
                return await self._buy()

        numbers = await asyncio.gather(*(slot() for _ in range(planned)))
        return len(numbers)


class AiohttpPeer(_HandWritten):
    """Plain aiohttp: one `ClientSession`, the same requests by hand."""

    name = "aiohttp"
    description = "hand-written aiohttp, one ClientSession"

    async def open(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        # aiohttp's own default timeouts (issue 13 measures against the
        # requests as most people write them): no per-phase timers, whereas
        # our SDK bounds the connect, the read and the whole attempt.
        self._session = aiohttp.ClientSession(
            headers=_headers(self.server),
            connector=aiohttp.TCPConnector(limit=POOL_SIZE),
        )
        self._base = self.server.url

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with self._session.request(
            method, self._base + path, json=body, allow_redirects=False
        ) as response:
            if response.status != 200:
                raise PeerError(
                    f"{method} {path}: HTTP {response.status} {await response.text()}"
                )
            return await response.json()


class HttpxPeer(_HandWritten):
    """httpx.AsyncClient with a pool as large as the others'."""

    name = "httpx"
    description = "hand-written httpx.AsyncClient, one client"

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("httpx") is None:
            return "httpx is not installed (pip install 'sendblue-lines[bench]')"
        return None

    async def open(self) -> None:
        import httpx

        # httpx keeps only 20 idle connections by default, which would make
        # it reconnect at concurrency 50 and 100; we give it our pool size.
        self._client = httpx.AsyncClient(
            base_url=self.server.url,
            headers=_headers(self.server),
            timeout=httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(
                max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE
            ),
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._client.request(method, path, json=body)
        if response.status_code != 200:
            raise PeerError(f"{method} {path}: HTTP {response.status_code}")
        return response.json()


class OfficialPeer(_HandWritten):
    """The official `sendblue` package's async client, through get()/post()."""

    name = "sendblue (official)"
    description = "official `sendblue` SDK: AsyncSendblueAPI.get()/post()"

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("sendblue_api") is None:
            return (
                "the official `sendblue` package is not installed "
                "(pip install 'sendblue-lines[bench]')"
            )
        return None

    async def open(self) -> None:
        import httpx
        import sendblue_api

        # Its documented way to tune the pool: its own default client class
        # (which keeps its other defaults), given our pool size.
        http_client = sendblue_api.DefaultAsyncHttpxClient(
            limits=httpx.Limits(
                max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE
            )
        )
        self._client = sendblue_api.AsyncSendblueAPI(
            api_key=self.server.key_id,
            api_secret=self.server.secret,
            base_url=self.server.url,
            http_client=http_client,
        )

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        # It raises its APIStatusError for any non-2xx and parses JSON itself.
        if method == "GET":
            return await self._client.get(path, cast_to=object)
        return await self._client.post(path, cast_to=object, body=body)


class OursPeer(Peer):
    """sendblue-lines: `Provisioner.provision()` and `provision_many()`."""

    name = "sendblue-lines"
    description = "this SDK: Provisioner(LinesClient(...))"

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import sendblue_lines.provisioner  # noqa: F401
        except ImportError as exc:
            return f"sendblue_lines.provisioner cannot be imported ({exc})"
        return None

    async def open(self) -> None:
        from sendblue_lines import LinesClient
        from sendblue_lines.provisioner import Provisioner

        self._client = LinesClient(
            self.server.key_id, self.server.secret, base_url=self.server.url
        )
        self.provisioner = Provisioner(self._client)

    async def close(self) -> None:
        await self._client.aclose()

    async def provision(self) -> str:
        line = await self.provisioner.provision()
        return line.phone_number

    async def provision_many(self, count: int, concurrency: int) -> int:
        result = await self.provisioner.provision_many(count, concurrency=concurrency)
        if result.errors or result.stopped_by is not None or result.not_attempted:
            raise PeerError(
                f"provision_many bought {len(result.lines)} of {count}: "
                f"errors={result.errors!r} stopped_by={result.stopped_by!r} "
                f"not_attempted={result.not_attempted}"
            )
        return len(result.lines)


class AiohttpControlPeer(AiohttpPeer):
    """Plain aiohttp again, on a session of its own: the A/A control.

    The sequential scenario runs it beside `AiohttpPeer`, block pair by block
    pair, exactly as ours is run beside it: the two are the same code, so
    their ratio shows how far the machine alone moves a verdict in that run.
    """

    name = "aiohttp (A/A control)"
    description = "the same hand-written aiohttp, a second session"


#: Every peer, ours first; the order of a round before alternation.
ALL_PEERS: tuple[type[Peer], ...] = (OursPeer, AiohttpPeer, HttpxPeer, OfficialPeer)
#: The sequential scenario's peers: every peer, and the control beside aiohttp
#: (ours and the control are each adjacent to aiohttp whichever way a round
#: runs).
OVERHEAD_PEERS: tuple[type[Peer], ...] = (
    OursPeer,
    AiohttpPeer,
    AiohttpControlPeer,
    HttpxPeer,
    OfficialPeer,
)
