"""Which purchase journal the command uses, and opening it.

The command journals by default, in the user's state directory:
``$XDG_STATE_HOME/sendblue-lines/journal.sqlite3``, else
``~/.local/state/sendblue-lines/journal.sqlite3`` (the directory is created,
mode 0700, when missing). ``--journal`` beats `SENDBLUE_LINES_JOURNAL`, which
beats that default; ``--no-journal`` turns journaling off. A value that
starts with ``postgresql://`` or ``postgres://`` is a PostgreSQL DSN, anything
else a SQLite path. A DSN is shown only through `redact_dsn`: its password
never reaches the output.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import attrs

from .. import _logging
from .._logging import extra
from ..errors import ConfigurationError, JournalError
from ..journal import Journal, PostgresJournal, SQLiteJournal, redact_dsn

__all__ = [
    "JOURNAL_VARIABLE",
    "JournalChoice",
    "choose_journal",
    "default_journal_path",
    "journal_off",
    "make_journal",
    "needed_journal",
    "opened_journal",
]

logger = _logging.get_logger(_logging.CLI)

JOURNAL_VARIABLE: Final = "SENDBLUE_LINES_JOURNAL"
STATE_VARIABLE: Final = "XDG_STATE_HOME"
FILE_NAME: Final = "journal.sqlite3"
FOLDER_NAME: Final = "sendblue-lines"
DSN_SCHEMES: Final = ("postgresql://", "postgres://")


@attrs.frozen(repr=False)
class JournalChoice:
    """The journal chosen: a SQLite path or a PostgreSQL DSN, and who chose it.

    `source` is ``"--journal"``, the variable's name, or ``"default"``. The
    repr and `shown` never hold a DSN's password.
    """

    location: str
    source: str

    @property
    def postgres(self) -> bool:
        """True for a PostgreSQL DSN, False for a SQLite path."""
        return self.location.lower().startswith(DSN_SCHEMES)

    @property
    def shown(self) -> str:
        """Where the journal is, safe to print (a DSN without its password)."""
        return redact_dsn(self.location) if self.postgres else self.location

    def __repr__(self) -> str:
        return f"JournalChoice({self.shown!r}, source={self.source!r})"


def default_journal_path(environ: Mapping[str, str] | None = None) -> Path:
    """The default journal file: under `$XDG_STATE_HOME`, else `~/.local/state`.

    A relative or empty `XDG_STATE_HOME` is ignored, as the XDG base
    directory specification asks.

    Raises:
        ConfigurationError: no state directory can be found (no usable
            `XDG_STATE_HOME` and no home directory).
    """
    env = os.environ if environ is None else environ
    state = env.get(STATE_VARIABLE, "")
    if state and os.path.isabs(state):
        base = Path(state)
    else:
        home = env.get("HOME") or None
        try:
            base = (Path(home) if home else Path.home()) / ".local" / "state"
        except RuntimeError:
            msg = (
                "no home directory to keep the purchase journal in; set "
                f"{STATE_VARIABLE} or pass --journal PATH (or --no-journal)"
            )
            raise ConfigurationError(msg) from None
    return base / FOLDER_NAME / FILE_NAME


def choose_journal(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> JournalChoice | None:
    """The journal the options and environment choose; None for ``--no-journal``.

    ``--journal`` beats `SENDBLUE_LINES_JOURNAL`, which beats the default
    path; an empty variable counts as unset.

    Raises:
        ConfigurationError: ``--journal`` and ``--no-journal`` together, an
            empty ``--journal``, or no state directory for the default.
    """
    env = os.environ if environ is None else environ
    flag: str | None = getattr(args, "journal", None)
    off = bool(getattr(args, "no_journal", False))
    if off and flag is not None:
        msg = "--journal and --no-journal contradict each other; pass one of them"
        raise ConfigurationError(msg)
    if off:
        return None
    if flag is not None:
        if not flag.strip():
            msg = "--journal needs a path or a postgresql:// DSN, not an empty value"
            raise ConfigurationError(msg)
        return JournalChoice(flag, "--journal")
    variable = env.get(JOURNAL_VARIABLE, "")
    if variable.strip():
        return JournalChoice(variable, JOURNAL_VARIABLE)
    return JournalChoice(str(default_journal_path(env)), "default")


def make_journal(choice: JournalChoice) -> Journal:
    """Build (not open) the journal `choice` names.

    For the default path, the state directory is created with mode 0700
    when missing; a path the user chose must have its directory already.

    Raises:
        JournalError: the default state directory cannot be created.
    """
    if choice.postgres:
        return PostgresJournal(choice.location)
    if choice.source == "default":
        folder = Path(choice.location).parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(
                f"SQLite journal {choice.location}: cannot create its directory "
                f"{folder}: {exc.strerror or exc}",
                backend="sqlite",
                location=choice.location,
                operation="create the journal's directory",
            ) from exc
    return SQLiteJournal(choice.location)


def journal_off(command: str) -> ConfigurationError:
    """The error of `command`, which works on the journal, under ``--no-journal``."""
    return ConfigurationError(
        f"`{command}` works on the purchase journal, and --no-journal turns it off"
    )


@asynccontextmanager
async def opened_journal(args: argparse.Namespace) -> AsyncIterator[Journal | None]:
    """The journal the options choose, open; None with ``--no-journal``.

    Raises:
        ConfigurationError: conflicting options, or no state directory.
        JournalError: the journal cannot be opened.
    """
    choice = choose_journal(args)
    if choice is None:
        logger.info("no purchase journal (--no-journal): nothing is recorded")
        yield None
        return
    async with _opened(choice) as journal:
        yield journal


@asynccontextmanager
async def needed_journal(
    args: argparse.Namespace, command: str
) -> AsyncIterator[tuple[Journal, JournalChoice]]:
    """The journal `command` works on, open, and the choice that named it.

    Raises:
        ConfigurationError: conflicting options, no state directory, or
            ``--no-journal``.
        JournalError: the journal cannot be opened.
    """
    choice = choose_journal(args)
    if choice is None:
        raise journal_off(command)
    async with _opened(choice) as journal:
        yield journal, choice


def _opened(choice: JournalChoice) -> Journal:
    """The journal `choice` names, to open with ``async with``; logged."""
    logger.info(
        "purchase journal: %s (from %s)", choice.shown, choice.source,
        extra=extra("cli_journal"),
    )  # fmt: skip
    return make_journal(choice)
