"""What the sandbox remembers: accounts, preview tokens, the ledger, inventory.

Everything here is synchronous on purpose. A confirm checks and commits
without ever yielding to the event loop, so any number of concurrent confirms
are serialised by the loop itself and can never oversell a limit or the
inventory.
"""

from __future__ import annotations

import bisect
import hmac
import itertools
import json
import secrets
from collections import ChainMap, OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

import attrs

from ._clock import Clock, format_timestamp

__all__ = [
    "DAILY_WINDOW",
    "DEFAULT_API_KEY_ID",
    "MONTHLY_WINDOW",
    "PREVIEW_MESSAGE",
    "TOKENS_KEPT",
    "TOKEN_LIFETIME",
    "Charge",
    "HeldLine",
    "LimitsShape",
    "LimitsSnapshot",
    "Refusal",
    "SandboxAccount",
    "SandboxState",
    "TokenStatus",
    "WindowUsage",
    "error_body",
    "json_object",
    "limits_body",
    "new_secret",
    "signed_in",
]

DEFAULT_API_KEY_ID = "sandbox-key-id"
TOKEN_LIFETIME = timedelta(minutes=10)
#: Spent and expired tokens remembered (the latest); older ones are unknown.
TOKENS_KEPT = 10_000
DAILY_WINDOW = timedelta(hours=24)
MONTHLY_WINDOW = timedelta(days=30)
ELIGIBLE_PLAN = "inbound_only"
PREVIEW_MESSAGE = (
    "Call the confirm endpoint with this token within 10 minutes "
    "to complete the purchase."
)

TokenStatus = Literal["unknown", "unused", "used", "expired"]
Outcome = Literal["provisioned", "provisioning_failed"]


@attrs.define
class SandboxAccount:
    """A Sendblue account as the sandbox sees it.

    Credentials are fixed once made; ``plan``, ``card_on_file`` and the two
    limits can be changed while the sandbox runs (``account.card_on_file =
    False``) and the next request sees the change. Only the ``inbound_only``
    plan may buy lines. The secret is left out of the repr.
    """

    api_key_id: str = attrs.field(on_setattr=attrs.setters.frozen)
    api_secret_key: str = attrs.field(repr=False, on_setattr=attrs.setters.frozen)
    plan: str = "inbound_only"
    card_on_file: bool = True
    daily_limit: int = 3
    monthly_limit: int = 10


def new_secret() -> str:
    """Return a fresh, unguessable secret for a sandbox account."""
    return "sandbox-secret-" + secrets.token_urlsafe(24)


@attrs.frozen(kw_only=True)
class Charge:
    """A charge in the sandbox ledger: one confirm that moved money.

    ``outcome`` is ``"provisioned"`` for a bought line, or
    ``"provisioning_failed"`` when a subscription was created but no line came
    of it (then ``phone_number`` and ``worker_id`` are ``None``).
    """

    preview_token: str
    api_key_id: str
    charged_at: datetime
    outcome: Outcome
    phone_number: str | None
    worker_id: str | None
    subscription_id: str

    @property
    def provisioned(self) -> bool:
        """Whether this charge bought a line (and counts against the limits)."""
        return self.outcome == "provisioned"


@attrs.frozen(kw_only=True)
class HeldLine:
    """A line an account holds, as ``GET /api/v2/lines/state`` lists it.

    ``source`` is ``"api"`` for a line bought through confirm (it has a
    charge in the ledger) or ``"elsewhere"`` for one added with
    `SandboxState.add_line`, as if bought on the dashboard.
    """

    api_key_id: str
    worker_id: str
    sendblue_number: str
    acquired_at: datetime
    source: Literal["api", "elsewhere"]

    def body(self) -> dict[str, Any]:
        """Return this line as an item of the endpoint's ``data``."""
        return {
            "worker_id": self.worker_id,
            "sendblue_number": self.sendblue_number,
            "assignment": "assigned",
            "status": "ONLINE",
            "status_changed_at": format_timestamp(self.acquired_at),
            "degraded_since": None,
            "effective_until": None,
        }


@attrs.frozen(kw_only=True)
class WindowUsage:
    """One rolling window of an account's limits at one instant."""

    limit: int
    used: int
    next_available_at: datetime | None
    """When the oldest purchase counted in the window leaves it, if any."""

    @property
    def remaining(self) -> int:
        """How many more lines the window allows now (never negative)."""
        return max(self.limit - self.used, 0)


@attrs.frozen(kw_only=True)
class LimitsSnapshot:
    """An account's two rolling windows at one instant."""

    daily: WindowUsage
    monthly: WindowUsage


LimitsShape = Literal["canonical", "flat"] | Callable[[LimitsSnapshot], Any]


class Refusal(Exception):
    """An error answer of the API, with the spec's status, code and message."""

    def __init__(self, status: int, error: str | None, message: str) -> None:
        super().__init__(status, error, message)
        self.status = status
        self.error = error
        self.message = message

    def body(self) -> dict[str, str]:
        """Return the spec's error body for this refusal."""
        return error_body(self.error, self.message)


def error_body(error: str | None, message: str) -> dict[str, str]:
    """Return the spec's error body; ``error`` is left out when None."""
    body = {"status": "ERROR"}
    if error is not None:
        body["error"] = error
    body["message"] = message
    return body


def signed_in(account: SandboxAccount | None) -> SandboxAccount:
    """Return the account the credential headers matched (the API's and ours).

    Raises:
        Refusal: 401 when they matched none (``account`` is None).
    """
    if account is None:
        raise Refusal(401, None, "Invalid API credentials")
    return account


def json_object(raw: bytes, message: str) -> dict[str, Any]:
    """Parse ``raw`` as a JSON object.

    Raises:
        Refusal: 400 with ``message`` when it is not one.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise Refusal(400, None, message)
    return body


@attrs.define
class _Token:
    value: str
    api_key_id: str
    expires_at: datetime
    used: bool = False


def _digest_equal(given: str, expected: str) -> bool:
    # compare_digest refuses non-ASCII str, and headers can hold anything.
    return hmac.compare_digest(
        given.encode("utf-8", "backslashreplace"),
        expected.encode("utf-8", "backslashreplace"),
    )


class SandboxState:
    """The sandbox's accounts, tokens, ledger and inventory, and the rules on them.

    Methods answer with the body of a success or raise `Refusal` with
    the spec's error.
    """

    def __init__(self, clock: Clock, inventory: int | None = None) -> None:
        self.clock = clock
        self.accounts: dict[str, SandboxAccount] = {}
        self.ledger: list[Charge] = []
        self.lines: list[HeldLine] = []
        # Unspent tokens in the order issued; spent and expired ones move to
        # `_retired`, which keeps the latest TOKENS_KEPT, so a long run is bounded.
        self._tokens: dict[str, _Token] = {}
        self._retired: OrderedDict[str, _Token] = OrderedDict()
        self._known = ChainMap(self._tokens, self._retired)
        # Times of successful purchases per key id, sorted, so that a limits
        # check stays cheap however long the ledger grows.
        self._bought: dict[str, list[datetime]] = {}
        self._inventory: int | None = None
        self.set_inventory(inventory)
        self._numbers = itertools.count(5551000)

    # -- accounts -------------------------------------------------------

    def add_account(self, account: SandboxAccount) -> SandboxAccount:
        """Register ``account``.

        Raises:
            ValueError: another account already uses that key id.
        """
        if account.api_key_id in self.accounts:
            msg = f"an account with key id {account.api_key_id!r} already exists"
            raise ValueError(msg)
        self.accounts[account.api_key_id] = account
        return account

    def authenticate(self, headers: Mapping[str, str]) -> SandboxAccount | None:
        """Return the account the two credential headers name, or None if they don't."""
        api_key_id = headers.get("sb-api-key-id")
        api_secret_key = headers.get("sb-api-secret-key")
        if api_key_id is None or api_secret_key is None:
            return None
        account = self.accounts.get(api_key_id)
        if account is None or not _digest_equal(api_secret_key, account.api_secret_key):
            return None
        return account

    # -- inventory ------------------------------------------------------

    @property
    def inventory(self) -> int | None:
        """Lines left to sell, or None for unlimited."""
        return self._inventory

    def set_inventory(self, lines: int | None) -> None:
        """Set how many lines are left to sell (None: unlimited).

        Raises:
            ValueError: ``lines`` is negative.
        """
        if lines is not None and lines < 0:
            msg = f"inventory cannot be negative, got {lines}"
            raise ValueError(msg)
        self._inventory = lines

    # -- limits ---------------------------------------------------------

    def _window(
        self, account: SandboxAccount, now: datetime, span: timedelta, limit: int
    ) -> WindowUsage:
        # A purchase made at t counts while now < t + span: at exactly t + span
        # it has left the window, as a token expires at exactly its expiry.
        # Found by bisection, not copied out: a long-running sandbox (a soak,
        # a benchmark) holds every purchase, and each limits read and preview
        # looks at both windows.
        times = self._bought.get(account.api_key_id, [])
        oldest = bisect.bisect_right(times, now - span)
        return WindowUsage(
            limit=limit,
            used=len(times) - oldest,
            next_available_at=times[oldest] + span if oldest < len(times) else None,
        )

    def limits(self, account: SandboxAccount) -> LimitsSnapshot:
        """Return the account's rolling windows as they stand now."""
        now = self.clock.now()
        return LimitsSnapshot(
            daily=self._window(account, now, DAILY_WINDOW, account.daily_limit),
            monthly=self._window(account, now, MONTHLY_WINDOW, account.monthly_limit),
        )

    def _check_eligible(self, account: SandboxAccount) -> None:
        if account.plan != ELIGIBLE_PLAN:
            raise Refusal(
                403,
                None,
                "Buying lines through the API requires the inbound_only (Agent) plan",
            )
        if not account.card_on_file:
            raise Refusal(
                402,
                "no_card_on_file",
                "No card on file: add a payment method before buying lines",
            )
        limits = self.limits(account)
        if limits.daily.remaining == 0:
            raise Refusal(
                429,
                "daily_limit_reached",
                f"Maximum {account.daily_limit} lines can be added per day via API",
            )
        if limits.monthly.remaining == 0:
            raise Refusal(
                429,
                "monthly_limit_reached",
                f"Maximum {account.monthly_limit} lines can be added per month via API",
            )
        if self._inventory == 0:
            raise Refusal(503, "no_lines_available", "No lines are available right now")

    # -- the flow -------------------------------------------------------

    def preview(self, account: SandboxAccount) -> dict[str, str]:
        """Check eligibility and issue a preview token bound to ``account``.

        Raises:
            Refusal: 403 plan, 402 card, 429 daily/monthly, 503 inventory.
        """
        self._check_eligible(account)
        now = self.clock.now()
        tokens = self._tokens.values()
        for stale in list(itertools.takewhile(lambda t: t.expires_at <= now, tokens)):
            self._retire(stale)
        token = _Token(
            value="lpv_" + secrets.token_urlsafe(24),
            api_key_id=account.api_key_id,
            expires_at=now + TOKEN_LIFETIME,
        )
        self._tokens[token.value] = token
        return {
            "status": "OK",
            "preview_token": token.value,
            "expires_at": format_timestamp(token.expires_at),
            "message": PREVIEW_MESSAGE,
        }

    def confirm(
        self,
        account: SandboxAccount,
        preview_token: str,
        *,
        fail_provisioning: bool = False,
    ) -> dict[str, Any]:
        """Spend ``preview_token`` and buy a line for ``account``.

        A token of another account is refused and left as it was. Any other
        confirm that reaches a live token spends it, whatever happens next.

        Raises:
            Refusal: 410 unknown, used or expired token; 403 token of another
                account or wrong plan; 402 card; 429 limits; 503 inventory;
                500 ``provisioning_failed`` when ``fail_provisioning`` is set
                (a charge without a line is then in the ledger).
        """
        token = self._spend(account, preview_token)
        now = self.clock.now()
        self._check_eligible(account)
        failed = fail_provisioning
        charge = Charge(
            preview_token=token.value,
            api_key_id=account.api_key_id,
            charged_at=now,
            outcome="provisioning_failed" if failed else "provisioned",
            phone_number=None if failed else f"+1415{next(self._numbers):07d}",
            worker_id=None if failed else "worker_" + secrets.token_hex(8),
            subscription_id="sub_" + secrets.token_hex(12),
        )
        self.ledger.append(charge)
        if failed:
            raise Refusal(
                500,
                "provisioning_failed",
                f"Subscription {charge.subscription_id} was created, "
                "but provisioning the line failed",
            )
        bisect.insort(self._bought.setdefault(account.api_key_id, []), now)
        self.lines.append(
            HeldLine(
                api_key_id=account.api_key_id,
                worker_id=str(charge.worker_id),
                sendblue_number=str(charge.phone_number),
                acquired_at=now,
                source="api",
            )
        )
        if self._inventory is not None:
            self._inventory -= 1
        return {
            "status": "OK",
            "phone_number": charge.phone_number,
            "worker_id": charge.worker_id,
            "subscription_id": charge.subscription_id,
        }

    def _spend(self, account: SandboxAccount, preview_token: str) -> _Token:
        """Spend a live token of `account`; refuse any other and leave it as it was.

        Raises:
            Refusal: 410 unknown, used or expired token; 403 another account's.
        """
        token = self._known.get(preview_token)
        if token is None:
            raise Refusal(410, "token_expired", "Preview token is invalid or expired")
        if token.api_key_id != account.api_key_id:
            raise Refusal(403, None, "This preview token belongs to another account")
        if token.used:
            raise Refusal(410, "token_expired", "Preview token was already used")
        if self.clock.now() >= token.expires_at:
            raise Refusal(410, "token_expired", "Preview token has expired")
        token.used = True
        self._retire(token)
        return token

    def _retire(self, token: _Token) -> None:
        self._tokens.pop(token.value, None)
        self._retired[token.value] = token
        if len(self._retired) > TOKENS_KEPT:
            self._retired.popitem(last=False)

    # -- the account's lines ----------------------------------------------

    def add_line(
        self,
        account: SandboxAccount,
        *,
        sendblue_number: str | None = None,
        worker_id: str | None = None,
    ) -> HeldLine:
        """Give ``account`` a line bought elsewhere (the dashboard, another tool).

        It shows in ``GET /api/v2/lines/state`` but is not a charge of the
        API: it is not in the ledger and does not count against the limits.
        """
        line = HeldLine(
            api_key_id=account.api_key_id,
            worker_id=worker_id or "worker_" + secrets.token_hex(8),
            sendblue_number=sendblue_number or f"+1415{next(self._numbers):07d}",
            acquired_at=self.clock.now(),
            source="elsewhere",
        )
        self.lines.append(line)
        return line

    def lines_state(self, account: SandboxAccount) -> dict[str, Any]:
        """Return the body of ``GET /api/v2/lines/state``: the account's lines now.

        Any valid credentials may read it; the plan and the card do not matter.
        """
        return {
            "status": "OK",
            "snapshot_at": format_timestamp(self.clock.now()),
            "data": [
                line.body()
                for line in self.lines
                if line.api_key_id == account.api_key_id
            ],
        }

    def token_status(self, preview_token: str) -> TokenStatus:
        """Say whether ``preview_token`` is unknown, unused, used or expired."""
        token = self._known.get(preview_token)
        if token is None:
            return "unknown"
        if token.used:
            return "used"
        if self.clock.now() >= token.expires_at:
            return "expired"
        return "unused"


def _window_body(usage: WindowUsage, window: str) -> dict[str, Any]:
    return {
        "limit": usage.limit,
        "used": usage.used,
        "remaining": usage.remaining,
        "window": window,
        "next_available_at": None
        if usage.next_available_at is None
        else format_timestamp(usage.next_available_at),
    }


def limits_body(snapshot: LimitsSnapshot, shape: LimitsShape) -> Any:
    """Render ``snapshot`` as the body of ``GET /accounts/limits``.

    ``"canonical"`` and ``"flat"`` are the spec's two shapes; a callable gets
    the snapshot and returns any JSON-serialisable body.
    """
    if callable(shape):
        return shape(snapshot)
    if shape == "flat":
        return {
            "status": "OK",
            "limits": {
                "api_provision_daily": snapshot.daily.limit,
                "api_provision_monthly": snapshot.monthly.limit,
            },
            "usage": {
                "api_provision_daily": snapshot.daily.used,
                "api_provision_monthly": snapshot.monthly.used,
            },
        }
    return {
        "status": "OK",
        "limits": {
            "api_provision_daily": _window_body(snapshot.daily, "rolling_24h"),
            "api_provision_monthly": _window_body(snapshot.monthly, "rolling_30d"),
        },
    }
