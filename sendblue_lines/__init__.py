"""sendblue-lines: buy Sendblue phone lines through the API, safely, from asyncio.

The public surface is what this module exports; everything in a module whose
name starts with an underscore may change without notice.
"""

from __future__ import annotations

from ._batch import Batch
from ._results import BatchResult, Plan, ProvisionOutcome
from ._retry import RetryPolicy
from ._transport import Attempt
from ._version import __version__
from .client import LinesClient
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DailyLimitReachedError,
    DeclinedError,
    JournalError,
    MalformedResponseError,
    MaxLinesReachedError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProvisioningFailedError,
    RateLimitError,
    SendblueError,
    ServerError,
    TokenExpiredError,
    TransportError,
)
from .journal import Journal, JournalEntry, PostgresJournal, SQLiteJournal
from .models import (
    AccountLine,
    LimitWindow,
    LinesState,
    Preview,
    ProvisionedLine,
    ProvisioningLimits,
)
from .provisioner import Provisioner

__all__ = [
    "APIError",
    "AccountLine",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchResult",
    "ConfigurationError",
    "DailyLimitReachedError",
    "DeclinedError",
    "Journal",
    "JournalEntry",
    "JournalError",
    "LimitWindow",
    "LinesClient",
    "LinesState",
    "MalformedResponseError",
    "MaxLinesReachedError",
    "MonthlyLimitReachedError",
    "NoCardOnFileError",
    "NoLinesAvailableError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "Plan",
    "PostgresJournal",
    "Preview",
    "ProvisionOutcome",
    "ProvisionedLine",
    "Provisioner",
    "ProvisioningFailedError",
    "ProvisioningLimits",
    "RateLimitError",
    "RetryPolicy",
    "SQLiteJournal",
    "SendblueError",
    "ServerError",
    "TokenExpiredError",
    "TransportError",
    "__version__",
]
