"""Running the sandbox: the `Sandbox` context manager and `serve`."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, overload

import anyio
from aiohttp import web

from ._app import build_app
from ._clock import Clock, ManualClock
from ._faults import Endpoint, Fault, FaultQueue
from ._records import EndpointCounters, RequestLog, RequestRecord
from ._runtime import Latency, Runtime, release_app
from ._state import (
    DEFAULT_API_KEY_ID,
    Charge,
    HeldLine,
    LimitsShape,
    LimitsSnapshot,
    SandboxAccount,
    SandboxState,
    TokenStatus,
    new_secret,
)

__all__ = ["SHUTDOWN_TIMEOUT", "Sandbox", "is_loopback", "serve"]

ClockT = TypeVar("ClockT", bound=Clock)
_SandboxT = TypeVar("_SandboxT", bound="Sandbox[Any]")
_Owned = TypeVar("_Owned", Charge, HeldLine)

SHUTDOWN_TIMEOUT = 0.5
"""Seconds that closing waits for requests in progress before cancelling them."""


def is_loopback(host: str) -> bool:
    """Say whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_shape(shape: LimitsShape) -> LimitsShape:
    if not callable(shape) and shape not in ("canonical", "flat"):
        msg = f"unknown limits shape {shape!r}: use 'canonical', 'flat' or a callable"
        raise ValueError(msg)
    return shape


class Sandbox(Generic[ClockT]):
    """A local Sendblue line-provisioning server, started with ``async with``.

    It binds ``127.0.0.1`` on a free port by default and serves the
    endpoints of the contract with their state: accounts, single-use preview
    tokens, rolling limits, inventory, a ledger of charges and the lines
    each account holds (``GET /api/v2/lines/state``). Without
    ``accounts`` it makes one account, key id ``"sandbox-key-id"`` with a
    fresh random secret, on the ``inbound_only`` plan, card on file, limits
    3 a day and 10 a month; otherwise the first account given is the
    default one. Without ``clock`` it uses ``ManualClock()``, which follows
    real time and can be moved forward.

    ``latency`` is added to every request: seconds, or a callable returning
    seconds (a distribution). ``limits_shape`` is ``"canonical"``, ``"flat"``
    or a callable from `LimitsSnapshot` to any JSON body. ``inventory``
    is how many lines can be sold (None: unlimited).

    Raises:
        ValueError: ``host`` is not loopback and ``allow_remote`` is false;
            ``accounts`` is empty or repeats a key id; a bad ``limits_shape``
            or ``inventory``.
    """

    @overload
    def __init__(
        self: Sandbox[ManualClock],
        *,
        host: str = ...,
        port: int = ...,
        accounts: Iterable[SandboxAccount] | None = ...,
        clock: None = None,
        inventory: int | None = ...,
        latency: Latency = ...,
        limits_shape: LimitsShape = ...,
        allow_remote: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Sandbox[ClockT],
        *,
        host: str = ...,
        port: int = ...,
        accounts: Iterable[SandboxAccount] | None = ...,
        clock: ClockT,
        inventory: int | None = ...,
        latency: Latency = ...,
        limits_shape: LimitsShape = ...,
        allow_remote: bool = ...,
    ) -> None: ...

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Iterable[SandboxAccount] | None = None,
        clock: ClockT | None = None,
        inventory: int | None = None,
        latency: Latency = None,
        limits_shape: LimitsShape = "canonical",
        allow_remote: bool = False,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            msg = (
                f"the sandbox only listens on loopback, not {host!r}: "
                "pass allow_remote=True to expose it (it accepts fake credentials)"
            )
            raise ValueError(msg)
        self._host = host
        self._port = port
        self._clock: ClockT = cast("ClockT", ManualClock()) if clock is None else clock
        state = SandboxState(self._clock, inventory)
        if accounts is None:
            accounts = [SandboxAccount(DEFAULT_API_KEY_ID, new_secret())]
        for account in accounts:
            state.add_account(account)
        if not state.accounts:
            msg = "a sandbox needs at least one account"
            raise ValueError(msg)
        self._default = next(iter(state.accounts.values()))
        self._runtime = Runtime(
            state=state,
            faults=FaultQueue(),
            log=RequestLog(self._clock),
            latency=latency,
            limits_shape=_check_shape(limits_shape),
        )
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------

    async def start(self: _SandboxT) -> _SandboxT:
        """Bind and start serving; return the sandbox itself.

        Raises:
            RuntimeError: the sandbox was already started.
            OSError: the address cannot be bound.
        """
        if self._runner is not None or self._closed:
            msg = "a Sandbox can be started only once"
            raise RuntimeError(msg)
        runner = web.AppRunner(
            build_app(self._runtime),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await self.aclose()
            raise
        host, port = runner.addresses[0][:2]
        self._url = (
            f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        )
        return self

    async def aclose(self) -> None:
        """Stop serving; requests that hang or wait are dropped. Idempotent."""
        self._closed = True
        self._runtime.closing.set()
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # A cancelled caller must still free the port: the cleanup runs as
        # its own task, and a cancellation waits for it (it is bounded by
        # SHUTDOWN_TIMEOUT) before going on.
        cleanup = asyncio.ensure_future(runner.cleanup())
        try:
            await asyncio.shield(cleanup)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await asyncio.wait([cleanup])
            raise
        finally:
            release_app(runner.app)

    async def __aenter__(self: _SandboxT) -> _SandboxT:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        where = self._url or "not started"
        return f"<Sandbox {where} accounts={len(self._runtime.state.accounts)}>"

    # -- where and who ------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give the client, e.g. ``http://127.0.0.1:54321``.

        Raises:
            RuntimeError: the sandbox is not started.
        """
        if self._url is None:
            msg = "the sandbox has no URL until it is started"
            raise RuntimeError(msg)
        return self._url

    @property
    def clock(self) -> ClockT:
        """The clock that tokens and limits go by."""
        return self._clock

    @property
    def account(self) -> SandboxAccount:
        """The default account (the first one)."""
        return self._default

    @property
    def accounts(self) -> tuple[SandboxAccount, ...]:
        """Every account, the default one first."""
        return tuple(self._runtime.state.accounts.values())

    @property
    def api_key_id(self) -> str:
        """The default account's key id."""
        return self._default.api_key_id

    @property
    def api_secret_key(self) -> str:
        """The default account's secret (a fake credential, for this sandbox only)."""
        return self._default.api_secret_key

    def add_account(self, account: SandboxAccount) -> SandboxAccount:
        """Add an account and return it.

        Raises:
            ValueError: an account with that key id exists already.
        """
        return self._runtime.state.add_account(account)

    def auth_headers(
        self, account: SandboxAccount | str | None = None
    ) -> dict[str, str]:
        """Return the two authentication headers of an account (default: the first).

        Raises:
            KeyError: no account has that key id.
        """
        chosen = self._account(account)
        return {
            "sb-api-key-id": chosen.api_key_id,
            "sb-api-secret-key": chosen.api_secret_key,
        }

    def _account(self, account: SandboxAccount | str | None) -> SandboxAccount:
        if account is None:
            return self._default
        key_id = account if isinstance(account, str) else account.api_key_id
        return self._runtime.state.accounts[key_id]

    def _of(
        self, account: SandboxAccount | str | None, items: Iterable[_Owned]
    ) -> list[_Owned]:
        """The `items` of one account (all when None), as a new list."""
        key_id = None if account is None else self._account(account).api_key_id
        return [item for item in items if key_id in (None, item.api_key_id)]

    # -- behaviour ----------------------------------------------------------

    @property
    def faults(self) -> FaultQueue:
        """The queue of faults waiting for the next requests of each endpoint."""
        return self._runtime.faults

    def inject(self, endpoint: Endpoint, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests of ``endpoint``.

        Shorthand for ``sandbox.faults.inject(...)``.

        Raises:
            ValueError: unknown endpoint, ``times`` below 1, or a confirm-only
                fault for another endpoint.
        """
        self._runtime.faults.inject(endpoint, fault, times)

    @property
    def latency(self) -> Latency:
        """Latency added to each request: seconds, a callable, or None."""
        return self._runtime.latency

    @latency.setter
    def latency(self, latency: Latency) -> None:
        self._runtime.latency = latency

    @property
    def limits_shape(self) -> LimitsShape:
        """How ``GET /accounts/limits`` answers: canonical, flat or a callable.

        Setting an unknown name raises ``ValueError``.
        """
        return self._runtime.limits_shape

    @limits_shape.setter
    def limits_shape(self, shape: LimitsShape) -> None:
        self._runtime.limits_shape = _check_shape(shape)

    @property
    def inventory(self) -> int | None:
        """Lines left to sell, or None for unlimited."""
        return self._runtime.state.inventory

    def set_inventory(self, lines: int | None) -> None:
        """Set how many lines are left to sell (None: unlimited).

        Raises:
            ValueError: ``lines`` is negative.
        """
        self._runtime.state.set_inventory(lines)

    # -- introspection ------------------------------------------------------

    @property
    def ledger(self) -> list[Charge]:
        """Every charge so far, oldest first (a copy)."""
        return list(self._runtime.state.ledger)

    def purchases(self, account: SandboxAccount | str | None = None) -> list[Charge]:
        """Return the charges that bought a line, for one account or all.

        Raises:
            KeyError: no account has that key id.
        """
        return [
            c for c in self._of(account, self._runtime.state.ledger) if c.provisioned
        ]

    @property
    def requests(self) -> list[RequestRecord]:
        """The latest `REQUESTS_KEPT` requests answered, in the order they ended.

        A copy: the log goes on without it.
        """
        return list(self._runtime.log.records)

    @property
    def counters(self) -> dict[str, EndpointCounters]:
        """Counters per endpoint name, plus ``"other"`` for unrouted requests."""
        return self._runtime.log.counters

    def add_line(
        self,
        account: SandboxAccount | str | None = None,
        *,
        sendblue_number: str | None = None,
        worker_id: str | None = None,
    ) -> HeldLine:
        """Give an account (default: the first) a line bought elsewhere.

        As if bought on the dashboard: ``GET /api/v2/lines/state`` lists it,
        but it is no charge of the API (not in the ledger, not counted
        against the limits). Number and worker id are made up unless given.

        Raises:
            KeyError: no account has that key id.
        """
        return self._runtime.state.add_line(
            self._account(account),
            sendblue_number=sendblue_number,
            worker_id=worker_id,
        )

    def lines(self, account: SandboxAccount | str | None = None) -> list[HeldLine]:
        """Return the lines held, for one account or all, oldest first (a copy).

        Raises:
            KeyError: no account has that key id.
        """
        return self._of(account, self._runtime.state.lines)

    def in_flight(self, endpoint: Endpoint | None = None) -> int:
        """Count the requests in progress now, on one endpoint or all.

        A request is in progress from its arrival until it is answered or
        dropped; aiohttp keeps a handler running after its client went away,
        so this can be above zero after the client has given up.
        """
        if endpoint is None:
            return self._runtime.log.in_flight()
        return self._runtime.log.counters[endpoint].in_flight

    async def wait_idle(self, within: float = 5.0) -> None:
        """Wait until no request is in progress (see `in_flight`).

        A test calls this before reading the ledger, so that a purchase that
        commits after its client gave up (a delayed or hanging confirm) is in
        it.

        Raises:
            TimeoutError: requests were still in progress after ``within``
                seconds.
        """
        await self._wait_until(lambda: self._runtime.log.in_flight() == 0, within)

    async def wait_for_requests(
        self, endpoint: Endpoint, count: int = 1, within: float = 5.0
    ) -> None:
        """Wait until ``count`` requests in all have reached ``endpoint``.

        Requests are counted when they arrive, before any latency or fault,
        so a test can act while a request is in progress (close the client
        mid-confirm, cancel its caller).

        Raises:
            TimeoutError: fewer requests had arrived after ``within`` seconds.
            KeyError: unknown endpoint.
        """
        counters = self._runtime.log.counters[endpoint]
        await self._wait_until(lambda: counters.requests >= count, within)

    async def _wait_until(self, done: Callable[[], bool], within: float) -> None:
        changed = self._runtime.log.changed
        with anyio.fail_after(within):
            while not done():
                changed.clear()
                await changed.wait()

    def limits(self, account: SandboxAccount | str | None = None) -> LimitsSnapshot:
        """Return an account's rolling windows as they stand now.

        Raises:
            KeyError: no account has that key id.
        """
        return self._runtime.state.limits(self._account(account))

    def token_status(self, preview_token: str) -> TokenStatus:
        """Say whether a token is ``unknown``, ``unused``, ``used`` or ``expired``."""
        return self._runtime.state.token_status(preview_token)


async def serve(
    *,
    port: int = 8787,
    ready: Callable[[Sandbox[ManualClock]], object] | None = None,
    **options: Any,
) -> None:
    """Run a sandbox until cancelled; ``ready`` is called once it listens.

    ``options`` are those of `Sandbox` but ``clock``: the clock is a
    ``ManualClock`` that follows real time. The port is the command's, 8787,
    unless given.

    Raises:
        TypeError: an option that `Sandbox` does not take, ``clock`` included.
        ValueError: as `Sandbox` does.
        OSError: the address cannot be bound.
    """
    async with Sandbox(port=port, clock=ManualClock(), **options) as sandbox:
        if ready is not None:
            ready(sandbox)
        await anyio.sleep_forever()
