"""Reading the limits as the Provisioner and the command do: advisory, never blocking.

The contract documents the limits endpoint but not its body: an answer we
cannot use says "limits unknown", never an error, since the server enforces
its limits at preview and confirm anyway.
"""

from __future__ import annotations

from .client import LinesClient
from .errors import APIError, MalformedResponseError
from .models import ProvisioningLimits

__all__ = ["UNKNOWN_SHAPE", "read_limits"]

#: Why the limits are unknown when the answer has a shape we do not know.
UNKNOWN_SHAPE = "the server answered in a shape we do not know"


async def read_limits(client: LinesClient) -> tuple[ProvisioningLimits, str | None]:
    """Read the limits: an answer we cannot use gives unknown limits, and why.

    The limits read is advisory (the server enforces the limits anyway), so
    an unreadable body, a shape we do not know, or a refusal the contract
    does not give this endpoint (400, 404, 405, 410, ...) gives unknown
    limits and a reason, never an error: the endpoint's shape is an
    assumption, and it must not block a purchase that preview and confirm
    may well allow. The Provisioner and the CLI read the limits this way.

    Raises:
        APIError: a refusal about the account (`SendblueError.account_level`:
            401, 402, 403, 429), or an answer that is not a refusal (a
            `ServerError` after the retries, `NoLinesAvailableError`).
        TransportError: the read failed on every try.
    """
    try:
        limits = await client.get_limits()
    except MalformedResponseError as error:
        return ProvisioningLimits(), f"its answer could not be read ({error.message})"
    except APIError as error:
        if error.account_level or not error.refused:
            raise
        return ProvisioningLimits(), f"GET /accounts/limits answered {error}"
    return limits, None if limits.known else UNKNOWN_SHAPE
