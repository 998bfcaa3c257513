"""A local Sendblue line-provisioning server for tests, demos and benchmarks.

The sandbox is a real HTTP server (``aiohttp.web``) that keeps the state the
contract describes: accounts, single-use preview tokens valid ten minutes,
rolling daily and monthly limits, inventory, and a ledger of charges. It can
be moved through time and made to misbehave on purpose.

```python
async with Sandbox() as sandbox:
    async with LinesClient(
        api_key_id=sandbox.api_key_id,
        api_secret_key=sandbox.api_secret_key,
        base_url=sandbox.url,
    ) as client:
        ...
    sandbox.clock.advance(hours=25)
    sandbox.inject("confirm", Fault.drop_after_commit())
```

It is written from the contract alone and imports nothing from the client, so
that testing one against the other tests two readings of the contract.
"""

from __future__ import annotations

from ._clock import Clock, ManualClock, RealClock
from ._faults import ENDPOINTS, Endpoint, Fault, FaultQueue
from ._records import EndpointCounters, RequestRecord
from ._server import Sandbox, serve
from ._state import (
    Charge,
    HeldLine,
    LimitsSnapshot,
    SandboxAccount,
    TokenStatus,
    WindowUsage,
)

__all__ = [
    "ENDPOINTS",
    "Charge",
    "Clock",
    "Endpoint",
    "EndpointCounters",
    "Fault",
    "FaultQueue",
    "HeldLine",
    "LimitsSnapshot",
    "ManualClock",
    "RealClock",
    "RequestRecord",
    "Sandbox",
    "SandboxAccount",
    "TokenStatus",
    "WindowUsage",
    "serve",
]
