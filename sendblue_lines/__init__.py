"""sendblue-lines: buy Sendblue phone lines through the API, safely, from asyncio.

The public surface is what this module exports; everything in a module whose
name starts with an underscore may change without notice.
"""

from __future__ import annotations

import typing

from . import _lazy
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
from .models import (
    AccountLine,
    LimitWindow,
    LinesState,
    Preview,
    ProvisionedLine,
    ProvisioningLimits,
)

# The Provisioner with its batch machinery, and the journal (its protocol,
# its stores and entries, with sqlite3 and their SQL) load on first use
# (PEP 562): a program that only calls the endpoints needs none of them.
# Type checkers see plain imports.
if typing.TYPE_CHECKING:
    from ._batch import Batch
    from .journal import Journal, JournalEntry, PostgresJournal, SQLiteJournal
    from .provisioner import BatchResult, Plan, Provisioner, ProvisionOutcome
else:
    #: Each name loaded on first use, and the module it comes from.
    _LAZY = {
        "Batch": "._batch",
        "BatchResult": ".provisioner",
        "Journal": ".journal",
        "JournalEntry": ".journal",
        "Plan": ".provisioner",
        "PostgresJournal": ".journal",
        "ProvisionOutcome": ".provisioner",
        "Provisioner": ".provisioner",
        "SQLiteJournal": ".journal",
    }
    __getattr__, __dir__ = _lazy.lazy_names(__name__, _LAZY, globals())


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
