"""What the reliability suite shares: faults by name, recorders, the ledger check.

Kept out of `conftest.py` so that test modules import it by a name that no
other conftest shadows. Everything here goes through the public API of the
SDK and of the sandbox.

The ledger check is the heart of the suite. A charge is what a card pays
for; the invariants say every one is reported exactly once (as a line, a
`ProvisioningFailedError` or an `OutcomeUnknownError`) and that one slot
never pays twice. `Recorder` ties preview tokens to slots (through the
`approve` callback, called in the slot's own task) and collects what
`on_outcome` hands over; `check_ledger` compares both with the sandbox.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import anyio
import attrs

from sendblue_lines import (
    LinesClient,
    OutcomeUnknownError,
    Preview,
    Provisioner,
    ProvisioningFailedError,
    ProvisionOutcome,
    RetryPolicy,
    SendblueError,
)
from sendblue_lines.sandbox import Charge, Endpoint, Fault, Sandbox, SandboxAccount

_T = TypeVar("_T")

#: The client's timeout in the suite: small, so that hangs and drips end fast.
TIMEOUT = 0.5
#: A delay fault waits longer than TIMEOUT.
SLOW = 0.9
#: Retries that do not sleep: the suite tests rules, not backoff.
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
#: The Provisioner's no-lines retry: one more try, at once.
NO_LINES_RETRY = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)
#: Limits high enough that the matrix and the soak never meet them.
PLENTY = 10**6
#: Where redirects point in the matrix (never followed; nothing listens there).
NOWHERE = "http://127.0.0.1:9/elsewhere"


def error_body(status: int, code: str | None, message: str) -> Fault:
    """The spec's error answer, sent whatever the request was."""
    body: dict[str, str] = {"status": "ERROR"}
    if code is not None:
        body["error"] = code
    body["message"] = message
    return Fault.respond(status, body)


def _provisioning_failed(endpoint: Endpoint) -> Fault:
    # The sandbox's own fault commits a charge and is for confirm only; on the
    # other endpoints the same answer is a server that says nonsense.
    if endpoint == "confirm":
        return Fault.provisioning_failed()
    return error_body(500, "provisioning_failed", "Provisioning failed")


def _drip(after_commit: bool) -> Fault:
    # 40 bytes at one every 50 ms: two seconds, four times the timeout.
    return Fault.drip(
        {"status": "OK", "padding": "x" * 16},
        chunk_size=1,
        interval=0.05,
        after_commit=after_commit,
    )


#: Every fault kind the sandbox can inject, by name: name -> endpoint -> Fault.
FAULTS: dict[str, Callable[[Endpoint], Fault]] = {
    "400": lambda e: error_body(400, None, "preview_token is required"),
    "401": lambda e: error_body(401, None, "Invalid API credentials"),
    "402_no_card": lambda e: error_body(402, "no_card_on_file", "No card on file"),
    "403": lambda e: error_body(403, None, "Requires the inbound_only plan"),
    "410_expired": lambda e: error_body(410, "token_expired", "Token expired"),
    "429_daily": lambda e: error_body(429, "daily_limit_reached", "Maximum 3"),
    "429_monthly": lambda e: error_body(429, "monthly_limit_reached", "Max 10"),
    "503_no_lines": lambda e: error_body(503, "no_lines_available", "None now"),
    "500": lambda e: error_body(500, None, "Internal Server Error"),
    "500_provisioning_failed": _provisioning_failed,
    "drop_before": lambda e: Fault.drop_before(),
    "drop_after_commit": lambda e: Fault.drop_after_commit(),
    "delay": lambda e: Fault.delay(SLOW),
    "hang": lambda e: Fault.hang(),
    "hang_after_commit": lambda e: Fault.hang(after_commit=True),
    "malformed": lambda e: Fault.malformed(),
    "malformed_after_commit": lambda e: Fault.malformed(after_commit=True),
    "html": lambda e: Fault.html(),
    "html_after_commit": lambda e: Fault.html(after_commit=True),
    "proxy_502": lambda e: Fault.proxy_502(),
    "proxy_502_after_commit": lambda e: Fault.proxy_502(after_commit=True),
    "redirect": lambda e: Fault.redirect(NOWHERE),
    "redirect_after_commit": lambda e: Fault.redirect(NOWHERE, after_commit=True),
    "oversized": lambda e: Fault.oversized(),
    "oversized_after_commit": lambda e: Fault.oversized(after_commit=True),
    "drip": lambda e: _drip(False),
    "drip_after_commit": lambda e: _drip(True),
    "non_utf8": lambda e: Fault.raw(200, b'{"status": "OK", "x": "\xff\xfe\xfa"}'),
    "nested_10000": lambda e: Fault.raw(200, b"[" * 10_000 + b"]" * 10_000),
    "500_after_commit": lambda e: Fault.respond(
        500, {"status": "ERROR", "message": "oops"}, after_commit=True
    ),
}


def connect(sandbox: Any, *, secret: str | None = None, **options: Any) -> LinesClient:
    """A client of the sandbox's default account with the suite's small timeouts."""
    options.setdefault("retry", NO_WAIT)
    options.setdefault("timeout", TIMEOUT)
    return LinesClient(
        sandbox.api_key_id,
        secret if secret is not None else sandbox.api_secret_key,
        base_url=sandbox.url,
        **options,
    )


@attrs.define
class Recorder:
    """`approve` and `on_outcome` callbacks that tie preview tokens to slots.

    A slot runs in one task from its preview to its report, so the tokens
    approved in a task belong to the slot that task reports next.
    """

    outcomes: list[ProvisionOutcome] = attrs.Factory(list)
    tokens: dict[int, list[str]] = attrs.Factory(dict)
    _pending: dict[asyncio.Task[Any] | None, list[str]] = attrs.Factory(dict)
    #: For several flows at once, whose slot numbers repeat: number them anew.
    renumber: bool = False

    def approve(self, preview: Preview) -> bool:
        self._pending.setdefault(asyncio.current_task(), []).append(preview.token)
        return True

    def on_outcome(self, outcome: ProvisionOutcome) -> None:
        if self.renumber:
            outcome = attrs.evolve(outcome, index=len(self.outcomes))
        # A slot is reported exactly once: a second report would be a bug.
        assert outcome.index not in self.tokens, f"slot {outcome.index} twice"
        self.tokens[outcome.index] = self._pending.pop(asyncio.current_task(), [])
        self.outcomes.append(outcome)

    def by_index(self) -> dict[int, ProvisionOutcome]:
        return {outcome.index: outcome for outcome in self.outcomes}

    def callbacks(self) -> dict[str, Any]:
        """The Provisioner options that plug this recorder in."""
        return {"approve": self.approve, "on_outcome": self.on_outcome}


def kind(outcome: ProvisionOutcome) -> str:
    """A slot's outcome by name: "line" or the error's class name."""
    return "line" if outcome.line is not None else type(outcome.error).__name__


def check_ledger(
    charges: Iterable[Charge],
    recorder: Recorder,
    *,
    phantom_failures: bool = False,
) -> dict[str, int]:
    """Check the money invariants; return the counts (charges, lines, pf, unknown).

    - every charge is reported exactly once: a line with its phone number, or
      a ProvisioningFailedError / OutcomeUnknownError of the slot whose last
      token it is;
    - no slot has two charged tokens, and a slot that paid paid with its last
      token: nothing was previewed after a confirm that may have charged;
    - an OutcomeUnknownError names the slot's last token, charged or not;
    - any other error bought nothing.

    `phantom_failures` allows a ProvisioningFailedError that no charge backs
    (only when the test made the server answer so without charging).
    """
    by_token: dict[str, Charge] = {}
    for charge in charges:
        assert charge.preview_token not in by_token, "a token was charged twice"
        by_token[charge.preview_token] = charge
    reported: set[str] = set()
    counts = {"charges": len(by_token), "lines": 0, "pf": 0, "unknown": 0}
    for outcome in recorder.outcomes:
        tokens = recorder.tokens[outcome.index]
        paid = [token for token in tokens if token in by_token]
        where = f"slot {outcome.index} ({kind(outcome)}, {len(tokens)} token(s))"
        assert len(paid) <= 1, f"{where}: two tokens charged for one slot"
        assert len(set(tokens)) == len(tokens), f"{where}: a token previewed twice"
        if paid:
            assert paid == [tokens[-1]], f"{where}: previewed again after paying"
            reported.add(paid[0])
        error = outcome.error
        if outcome.line is not None:
            counts["lines"] += 1
            assert paid, f"{where}: a line that no charge backs"
            assert by_token[paid[0]].phone_number == outcome.line.phone_number
            assert by_token[paid[0]].outcome == "provisioned"
        elif isinstance(error, ProvisioningFailedError):
            counts["pf"] += 1
            if paid:
                assert by_token[paid[0]].outcome == "provisioning_failed"
            else:
                assert phantom_failures, f"{where}: a failure that no charge backs"
        elif isinstance(error, OutcomeUnknownError):
            counts["unknown"] += 1
            assert tokens, f"{where}: unknown outcome without a confirmed token"
            assert error.preview_token == tokens[-1], f"{where}: not its last token"
        else:
            assert not paid, f"{where}: {error!r} reported, but a charge exists"
    missing = set(by_token) - reported
    assert not missing, f"{len(missing)} charge(s) never reported"
    return counts


def check_error(error: BaseException, secrets: Iterable[str]) -> None:
    """An error of ours: in the tree, no secret in its text or repr, pickles."""
    assert isinstance(error, SendblueError), f"{type(error)} escaped the hierarchy"
    text = f"{error}\n{error!r}"
    for secret in secrets:
        assert secret not in text, "a secret in an error's text"
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(clone) is type(error)


async def provision_once(
    client: LinesClient, recorder: Recorder, secrets: Iterable[str]
) -> str:
    """One provision(): ``"line"``, or the class name of its error (`check_error`).

    Bounded at 15 s, a guard against hanging, not a measure.
    """
    provisioner = Provisioner(
        client, no_lines_retry=NO_LINES_RETRY, **recorder.callbacks()
    )
    with anyio.fail_after(15):
        try:
            await provisioner.provision()
        except SendblueError as error:
            check_error(error, secrets)
            return type(error).__name__
    return "line"


class ThreadedSandbox:
    """A `Sandbox` served from a thread with its own event loop, as a server would be.

    The test's loop then holds only the client's tasks, so "no task is left
    running" can be checked exactly, and the server's work does not count as
    steps of the client's loop. Use `call` to touch the sandbox: it runs a
    function in the sandbox's loop and returns its result.
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._sandbox: Sandbox[Any] | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> ThreadedSandbox:
        self._thread.start()
        if not self._ready.wait(10) or self._sandbox is None:
            raise RuntimeError(f"the threaded sandbox did not start: {self._failure}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the threaded sandbox did not stop"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported by __enter__
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Sandbox(**self._options) as sandbox:
            self._sandbox = sandbox
            self._ready.set()
            await self._stop.wait()

    @property
    def url(self) -> str:
        assert self._sandbox is not None
        return self._sandbox.url

    def call(self, function: Callable[[Sandbox[Any]], _T]) -> _T:
        """Run `function(sandbox)` in the sandbox's loop; return what it returns."""
        assert self._loop is not None
        assert self._sandbox is not None
        sandbox = self._sandbox

        async def run() -> _T:
            return function(sandbox)

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(timeout=10)

    def add_account(self, key_id: str, secret: str) -> None:
        """Add an account without limits that matter."""
        account = SandboxAccount(
            key_id, secret, daily_limit=PLENTY, monthly_limit=PLENTY
        )
        self.call(lambda sandbox: sandbox.add_account(account))

    def busy(self) -> int:
        """How many requests the sandbox is still handling."""
        return self.call(lambda sandbox: sandbox.in_flight())

    def charges(self, key_id: str) -> list[Charge]:
        """The ledger of one account."""
        return self.call(
            lambda sandbox: [c for c in sandbox.ledger if c.api_key_id == key_id]
        )
