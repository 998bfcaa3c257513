"""Our loggers, the `sendblue_` keys on their records, and the opt-in stderr handler.

Loggers, all under `sendblue_lines` (which has a `NullHandler`, as a library's
top logger should): `sendblue_lines.http` (the client and its transport),
`sendblue_lines.provisioner` (purchases and batches), `sendblue_lines.journal`
(durable purchase records), `sendblue_lines.sandbox` (the local server; it
names its logger itself, importing nothing from here) and `sendblue_lines.cli`.

Every record of the client-side loggers carries the same keys, so that a
JSON log or a log processor can rely on them: `sendblue_event` (what
happened, a short snake_case name), `sendblue_slot`, `sendblue_attempt`,
`sendblue_status` (an HTTP status), `sendblue_outcome` (`bought`,
`not_bought`, `provisioning_failed`, `unknown`) and `sendblue_token_fp` (the
token's fingerprint, never the token). A key that does not apply is None.
The slot, the attempt and the fingerprint come from the purchase running in
the record's context (`_telemetry`), so a record from deep in the transport
still says which purchase it is about.

`SENDBLUE_LINES_LOG=debug|info|warning` (or the official SDK's
`SENDBLUE_API_LOG`) installs a stderr handler on `sendblue_lines`, at that
level, when the application has configured no handler (none on the root
logger, none of its own on ours); `level_from_env` reads the variable, for
the CLI too.

Text from elsewhere (the server, a journal) reaches a person only through
`printable` (one line, control characters escaped, cut) or
`printable_lines` (a traceback, line by line). `PrintableFormatter` puts
every record through them, and `TextFormatter`, the stderr handler's, adds
the keys at the end. `JsonFormatter`, for log processors, writes one JSON
object per record, in which JSON escapes such text.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Final

from . import _telemetry
from .errors import ConfigurationError, excerpt

__all__ = [
    "CLI",
    "HTTP",
    "KEYS",
    "LOG_VARIABLES",
    "PROVISIONER",
    "JsonFormatter",
    "PrintableFormatter",
    "TextFormatter",
    "configure_from_env",
    "extra",
    "get_logger",
    "level_from_env",
    "printable",
    "printable_lines",
]

ROOT: Final = "sendblue_lines"
HTTP: Final = "sendblue_lines.http"
PROVISIONER: Final = "sendblue_lines.provisioner"
JOURNAL: Final = "sendblue_lines.journal"
SANDBOX: Final = "sendblue_lines.sandbox"
CLI: Final = "sendblue_lines.cli"

PREFIX: Final = "sendblue_"
#: The keys every record of ours carries (None where they do not apply).
KEYS: Final = (
    "sendblue_event",
    "sendblue_slot",
    "sendblue_attempt",
    "sendblue_status",
    "sendblue_outcome",
    "sendblue_token_fp",
)
#: Looked up in this order; the second is the official Sendblue SDK's.
LOG_VARIABLES: Final = ("SENDBLUE_LINES_LOG", "SENDBLUE_API_LOG")
_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
}

logging.getLogger(ROOT).addHandler(logging.NullHandler())


class _PurchaseKeys(logging.Filter):
    """Give every record the `sendblue_` keys, from its call and its context."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _telemetry.current()
        fields = record.__dict__
        fields.setdefault("sendblue_event", None)
        fields.setdefault("sendblue_status", None)
        if fields.get("sendblue_slot") is None:
            fields["sendblue_slot"] = scope.slot if scope is not None else None
        if fields.get("sendblue_attempt") is None:
            fields["sendblue_attempt"] = scope.attempt if scope is not None else None
        if fields.get("sendblue_token_fp") is None:
            fields["sendblue_token_fp"] = scope.token_fp if scope is not None else None
        if fields.get("sendblue_outcome") is None:
            fields["sendblue_outcome"] = scope.outcome if scope is not None else None
        return True


_KEYS_FILTER: Final = _PurchaseKeys()


def get_logger(name: str) -> logging.Logger:
    """One of our child loggers, with the filter that adds the `sendblue_` keys."""
    logger = logging.getLogger(name)
    if _KEYS_FILTER not in logger.filters:
        logger.addFilter(_KEYS_FILTER)
    return logger


def extra(event: str, **fields: object) -> dict[str, object]:
    """The `extra=` of a record: its event and any keys, each with our prefix."""
    data: dict[str, object] = {PREFIX + "event": event}
    for key, value in fields.items():
        data[PREFIX + key] = value
    return data


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and `sendblue_` keys.

    Made for log processors: the keys are always there (None when they do
    not apply), values are JSON types, and an exception becomes its type and
    text (our exceptions never carry a credential).
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as one line of JSON."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in KEYS:
            data[key] = getattr(record, key, None)
        for key, value in record.__dict__.items():
            if key.startswith(PREFIX) and key not in data:
                data[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


#: How many characters of one piece of text from elsewhere (the server, a
#: journal) are shown to a person in a sentence or a table cell.
SHOWN_LIMIT = 200
#: How many characters of one log line, or one traceback line, are shown.
LOG_LIMIT = 1000


def printable(text: object, limit: int | None = SHOWN_LIMIT) -> str:
    r"""`text` as one line a terminal shows as it is, cut at `limit` characters.

    The one sanitiser of text from elsewhere, for whatever a person reads:
    every character that `str.isprintable` refuses (C0 and C1 controls,
    DEL, line separators, bidi and other format characters) is shown as its
    escape (``\x1b``, ``\u202e``); past `limit` (None: no cut) the rest is
    cut, and counted.
    """
    shown = str(text)
    if not shown.isprintable():
        shown = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
            for c in shown
        )
    return shown if limit is None else excerpt(shown, limit) or ""


def printable_lines(text: str, limit: int | None = LOG_LIMIT) -> str:
    """`text` of many lines (a traceback), each one through `printable`."""
    return "\n".join(printable(line, limit) for line in text.splitlines())


class PrintableFormatter(logging.Formatter):
    """A formatter for people: each record one line, through `printable`.

    A record may quote the server; a traceback keeps its lines, each one
    through `printable` too.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record's line and its traceback's, made printable.

        `logging.Formatter` caches a traceback's text on the record for the
        handlers after it: ours is made here, and the record's cache is left
        as it was, so that we never print another formatter's raw text nor
        hand our escaped one to the application's handlers.
        """
        cached = record.exc_text
        # A record rebuilt from elsewhere (a SocketHandler's) has only the text.
        record.exc_text = (
            None if record.exc_info else cached and printable_lines(cached)
        )
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The record's line, made printable."""
        return printable(super().formatMessage(record), LOG_LIMIT)

    def formatException(self, ei: Any) -> str:
        """The traceback, each of its lines made printable."""
        return printable_lines(super().formatException(ei))


class TextFormatter(PrintableFormatter):
    """`sendblue-lines: LEVEL logger: message [key=value ...]` for people."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as one line, its known `sendblue_` keys at the end."""
        message = super().format(record)
        text = f"sendblue-lines: {record.levelname} {record.name}: {message}"
        shown = [
            f"{key[len(PREFIX) :]}={value}"
            for key in KEYS
            if (value := getattr(record, key, None)) is not None
        ]
        return f"{text} [{' '.join(shown)}]" if shown else text


_installed: logging.Handler | None = None


def level_from_env(env: Mapping[str, str] | None = None) -> int | None:
    """The level asked for by `SENDBLUE_LINES_LOG` / `SENDBLUE_API_LOG`, or None.

    Raises:
        ConfigurationError: the variable holds something other than debug,
            info or warning (any case).
    """
    environ = os.environ if env is None else env
    for name in LOG_VARIABLES:
        value = environ.get(name)
        if value:
            level = _LEVELS.get(value.strip().lower())
            if level is None:
                raise ConfigurationError(
                    f"{name} must be one of debug, info or warning, not {value!r}"
                )
            return level
    return None


def configure_from_env(env: Mapping[str, str] | None = None) -> logging.Handler | None:
    """Install the stderr handler that the environment asks for, once.

    Does nothing when no variable is set, when the application configured a
    handler (on the root logger or on ours), or when one was installed
    already. Returns the handler installed now, if any.

    Raises:
        ConfigurationError: a variable holds an unknown level.
    """
    global _installed
    level = level_from_env(env)
    if level is None or _installed is not None:
        return None
    ours = logging.getLogger(ROOT)
    own = [h for h in ours.handlers if not isinstance(h, logging.NullHandler)]
    if logging.getLogger().handlers or own:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter())
    ours.addHandler(handler)
    ours.setLevel(level)
    _installed = handler
    return handler
