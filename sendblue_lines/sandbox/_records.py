"""What the sandbox saw: a request log and counters per endpoint.

The log keeps method, path, endpoint, status, time, the fault applied and the
key id of the account that authenticated. Never a header, never a body, so
never the secret. Each confirm and each request a fault was applied to is
also a DEBUG record on the `sendblue_lines.sandbox` logger, with the SDK's
`sendblue_` keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import attrs

from ._clock import Clock
from ._faults import ENDPOINTS

__all__ = ["EndpointCounters", "Observation", "RequestLog", "RequestRecord"]

#: A child of the SDK's logger, named here: the sandbox imports nothing from it.
logger = logging.getLogger("sendblue_lines.sandbox")

#: What a confirm's status means for money, as the sandbox's log says it.
_CONFIRM_OUTCOMES = {200: "bought", 500: "provisioning_failed", None: "unknown"}

#: How many requests the log keeps, the latest; the counters count every one.
REQUESTS_KEPT = 10_000

OTHER = "other"
"""The counters' key for requests that matched no endpoint (404, 405)."""


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request the sandbox handled.

    ``endpoint`` is ``"limits"``, ``"preview"``, ``"confirm"``,
    ``"lines_state"`` or None for a path that matched none. ``status`` is
    the status sent, or None when no answer went out (a dropped or hung
    connection, or a client that left).
    ``at`` is the sandbox clock when the request arrived; ``fault`` the kind
    of fault applied; ``api_key_id`` the key id of the account whose
    credentials were valid, or None.
    """

    method: str
    path: str
    endpoint: str | None
    status: int | None
    at: datetime
    fault: str | None
    api_key_id: str | None


@attrs.define
class EndpointCounters:
    """How many requests reached one endpoint, and which statuses they got.

    ``requests`` counts arrivals, so a request still in progress is counted;
    ``statuses`` counts answers by status (None: no answer went out).
    ``in_flight`` is how many requests are in progress now (arrived, not yet
    answered or dropped), and ``peak_in_flight`` the most there ever were at
    once: the figure to check a client's cap on concurrent requests against.
    ``faults`` counts the requests each kind of fault was applied to.
    """

    requests: int = 0
    statuses: Counter[int | None] = attrs.field(factory=Counter)
    faults: Counter[str] = attrs.field(factory=Counter)
    in_flight: int = 0
    peak_in_flight: int = 0


@attrs.define
class Observation:
    """A request in progress: its status is set once it is answered."""

    status: int | None = None


class RequestLog:
    """The request log (the latest `REQUESTS_KEPT`) and the counters."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.records: deque[RequestRecord] = deque(maxlen=REQUESTS_KEPT)
        self.counters: dict[str, EndpointCounters] = {
            name: EndpointCounters() for name in (*ENDPOINTS, OTHER)
        }
        #: Set whenever a request arrives or ends, for those who wait on counts.
        self.changed = asyncio.Event()

    def in_flight(self) -> int:
        """How many requests are in progress now, on every endpoint."""
        return sum(counters.in_flight for counters in self.counters.values())

    @contextmanager
    def observe(
        self,
        method: str,
        path: str,
        endpoint: str | None,
        *,
        fault: str | None = None,
        api_key_id: str | None = None,
    ) -> Iterator[Observation]:
        """Count a request now; log it, with the status set on it, when it ends."""
        at = self._clock.now()
        counters = self.counters[endpoint or OTHER]
        counters.requests += 1
        counters.in_flight += 1
        counters.peak_in_flight = max(counters.peak_in_flight, counters.in_flight)
        if fault is not None:
            counters.faults[fault] += 1
        self.changed.set()
        observation = Observation()
        try:
            yield observation
        finally:
            counters.in_flight -= 1
            self.changed.set()
            counters.statuses[observation.status] += 1
            self.records.append(
                RequestRecord(
                    method=method,
                    path=path,
                    endpoint=endpoint,
                    status=observation.status,
                    at=at,
                    fault=fault,
                    api_key_id=api_key_id,
                )
            )
            # Confirms (what may charge) and faults (what misbehaved) only:
            # a soak sends tens of thousands of plain requests.
            if endpoint == "confirm" or fault not in (None, "none"):
                logger.debug(
                    "%s %s -> %s%s",
                    method, path, observation.status or "no answer",
                    f" (fault: {fault})" if fault else "",
                    extra=_keys(endpoint, observation.status, fault),
                )  # fmt: skip


def _keys(
    endpoint: str | None, status: int | None, fault: str | None
) -> dict[str, object]:
    """The `sendblue_` keys that the SDK's records carry, for one request."""
    outcome = None
    if endpoint == "confirm":
        outcome = _CONFIRM_OUTCOMES.get(status, "not_bought")
    return {
        "sendblue_event": "sandbox_request",
        "sendblue_slot": None,
        "sendblue_attempt": None,
        "sendblue_status": status,
        "sendblue_outcome": outcome,
        # The sandbox hands tokens out; it does not fingerprint them.
        "sendblue_token_fp": None,
        "sendblue_endpoint": endpoint,
        "sendblue_fault": fault,
    }
