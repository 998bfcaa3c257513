"""The parser and `main()`: every subcommand, one dispatch, one sentence per failure."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from .. import _logging
from .._version import __version__
from ..errors import ConfigurationError, SendblueError
from ._commands import (
    Command,
    demo_command,
    history_command,
    limits_command,
    plan_command,
    preview_command,
    provision_command,
    reconcile_command,
)
from ._keys import key_argument
from ._render import EXIT_FAILED, EXIT_HUMAN, EXIT_INTERRUPTED, EXIT_NOTHING, explain
from ._settle import configure as configure_settle
from ._terminal import (
    Console,
    Interrupts,
    OutputError,
    Stream,
    mute,
    show_traceback,
    sigterm_as_ctrl_c,
    why_unwritable,
)

_EPILOG = """\
exit codes:
  0    every requested line was bought (or the command succeeded)
  1    some lines were bought, some were not
  2    usage or configuration error, or nothing was bought
  3    an outcome is unknown, or a provisioning failure left a subscription
       without a line: a human must check the account
  4    the output could not be written (stdout closed, e.g. by head) or an
       unexpected error; nothing more was sent (-vv shows the traceback)
  130  interrupted (Ctrl-C or SIGTERM); confirms already sent were waited
       for and reported
  `sandbox` exits 0 when stopped (Ctrl-C or SIGTERM), 1 if it cannot
  listen, 2 for a usage error or a host that is not loopback
  a purchase journal that cannot be opened is exit 2 (nothing was sent)

credentials come from SENDBLUE_API_KEY_ID and SENDBLUE_API_SECRET_KEY (or the
official SDK's SENDBLUE_API_API_KEY / SENDBLUE_API_API_SECRET), else from the
official CLI's ~/.sendblue/credentials.json (folder: SENDBLUE_CONFIG_DIR; refused
unless only its owner can read it); the base URL from --base-url,
SENDBLUE_BASE_URL or SENDBLUE_API_BASE_URL. SENDBLUE_LINES_LOG (or
SENDBLUE_API_LOG) = debug, info or warning sets the log level when -v is not given.

provision, history, reconcile and settle use a purchase journal: --journal, else
SENDBLUE_LINES_JOURNAL, else $XDG_STATE_HOME/sendblue-lines/journal.sqlite3
(~/.local/state/... without XDG_STATE_HOME); a postgresql:// DSN opens a
PostgreSQL journal; --no-journal turns it off.
"""


# -- options ---------------------------------------------------------------------------

#: The most a count may be: far above any account's limits, low enough to print.
MAX_COUNT = 10_000
#: The longest --timeout: one hour per HTTP attempt.
MAX_TIMEOUT = 3600.0
#: The demo's batch is a walk-through, not a load test.
MAX_DEMO_COUNT = 20


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}")
        return value

    parse.__name__ = "count"
    return parse


_positive = _whole(1, MAX_COUNT)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, "
            f"got {text!r}"
        )
    return value


_VERBOSE: dict[str, Any] = {
    "action": "count",
    "default": 0,
    "help": "show the SDK's log on stderr: -v for each step, -vv for every request "
    "(and the traceback of an unexpected error)",
}


class _Parser(argparse.ArgumentParser):
    """argparse, except that a failed write of the help is not silently dropped.

    argparse swallows an OSError while printing `--help` or `--version` and
    exits 0 with nothing shown; `main()` finds a closed stdout and says so.
    """

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            (file or sys.stderr).write(message)


_JOURNAL: dict[str, Any] = {
    "metavar": "PATH|DSN",
    "help": "the purchase journal: a SQLite file, or a postgresql:// DSN (default: "
    "SENDBLUE_LINES_JOURNAL, else $XDG_STATE_HOME/sendblue-lines/journal.sqlite3)",
}
_NO_JOURNAL: dict[str, Any] = {
    "action": "store_true",
    "help": "record nothing: no journal, no reconcile before provision",
}


def _journal_options(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """--journal and --no-journal, one excluding the other."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--journal", **{**_JOURNAL, **defaults})
    group.add_argument("--no-journal", **{**_NO_JOURNAL, **defaults})


_LOG_FORMAT: dict[str, Any] = {
    "choices": ("text", "json"),
    "default": "text",
    "help": "the SDK's log on stderr as text (default) or one JSON object a line, "
    "with the sendblue_ keys",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `sendblue-lines`, with every subcommand."""
    parser: argparse.ArgumentParser = _Parser(
        prog="sendblue-lines",
        description="Buy Sendblue phone lines through the API, safely.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--base-url",
        help="the API's base URL (default: SENDBLUE_BASE_URL or production)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        help="seconds per HTTP attempt, above 0 and at most 3600 (default 30)",
    )
    parser.add_argument("-v", "--verbose", **_VERBOSE)
    parser.add_argument("--log-format", **_LOG_FORMAT)
    _journal_options(parser)
    # -v is also accepted after the command; SUPPRESS keeps a subcommand
    # without it from resetting a -v given before the command.
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v", "--verbose", **{**_VERBOSE, "default": argparse.SUPPRESS}
    )
    verbosity.add_argument(
        "--log-format", **{**_LOG_FORMAT, "default": argparse.SUPPRESS}
    )
    # --journal and --no-journal are also accepted after the commands that
    # use the journal; SUPPRESS keeps them from resetting the ones before.
    journaling = argparse.ArgumentParser(add_help=False)
    _journal_options(journaling, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, handler, what in (
        ("limits", limits_command, "show the daily and monthly limits"),
        ("plan", plan_command, "how many of N lines can be bought now, and why"),
        (
            "preview",
            preview_command,
            "check eligibility without buying (spends nothing)",
        ),
    ):
        command = sub.add_parser(name, help=what, parents=[verbosity])
        if name == "plan":
            command.add_argument("count", type=_positive, metavar="N")
        command.add_argument("--json", action="store_true", help="print JSON")
        command.set_defaults(handler=handler)

    provision = sub.add_parser(
        "provision",
        help="buy lines (asks first; journaled, reconciles first)",
        parents=[verbosity, journaling],
    )
    provision.add_argument(
        "--count",
        type=_positive,
        default=1,
        help=f"lines to buy, 1 to {MAX_COUNT} (default 1); with --key, the key's total",
    )
    provision.add_argument(
        "--key",
        type=key_argument,
        help="the reason the lines are for (needs the journal): --count is then "
        "its total, and only what it lacks is bought",
    )
    provision.add_argument(
        "--concurrency", type=_positive, default=3, help="purchases at once (default 3)"
    )
    provision.add_argument(
        "--yes", action="store_true", help="do not ask (needed without a terminal)"
    )
    provision.add_argument(
        "--json", action="store_true", help="one JSON object per outcome on stdout"
    )
    provision.set_defaults(handler=provision_command)

    for name, handler, what in (
        (
            "history",
            history_command,
            "every purchase in the journal and its state (reads the journal only)",
        ),
        (
            "reconcile",
            reconcile_command,
            "settle the purchases a dead process left open (resends the same token)",
        ),
    ):
        command = sub.add_parser(name, help=what, parents=[verbosity, journaling])
        if name == "history":
            command.add_argument(
                "--key", type=key_argument, help="only the purchases for this key"
            )
        command.add_argument(
            "--json", action="store_true", help="one JSON object per purchase"
        )
        command.set_defaults(handler=handler)
    configure_settle(sub, [verbosity, journaling])

    demo = sub.add_parser(
        "demo",
        parents=[verbosity],
        help="walk through the whole flow against an embedded local sandbox",
        description=(
            "Start a local sandbox on 127.0.0.1 and buy lines from it step by step: "
            "limits, plan, preview, confirm, a re-preview after an expired token, "
            "a batch that meets the daily limit, each kind of error, a process "
            "killed mid-confirm whose purchase reconcile() settles from a journal "
            "in a temporary directory, and one killed buying for a key, which the "
            "key asked again answers with its one line. Nothing is charged; "
            "nothing leaves this machine."
        ),
    )
    demo.add_argument(
        "--count",
        type=_whole(1, MAX_DEMO_COUNT),
        default=3,
        help=f"lines the batch step asks for, 1 to {MAX_DEMO_COUNT} (default 3)",
    )
    demo.set_defaults(handler=demo_command)

    # The sandbox (aiohttp.web) is loaded only for the commands that use it.
    from ..sandbox import _command as sandbox_command

    sandbox_command.configure(sub)
    return parser


@contextmanager
def _logging_to(
    stream: Stream, verbosity: int, log_format: str = "text"
) -> Iterator[None]:
    """Show the SDK's own log on stderr while the command runs.

    Only errors by default: every outcome the SDK would warn about is
    already told by the command in its own sentence, and the same story
    twice is noise. -v adds the SDK's warnings and steps, -vv each HTTP
    attempt. The logger is restored afterwards, so that `main()` called from
    a program or a test leaves logging as it was.
    """
    level = {0: logging.ERROR, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if verbosity == 0:
        with suppress(ConfigurationError):  # the client reports a bad value
            level = _logging.level_from_env() or level
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        _logging.JsonFormatter()
        if log_format == "json"
        else _logging.PrintableFormatter("sendblue-lines: %(levelname)s: %(message)s")
    )
    logger = logging.getLogger("sendblue_lines")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sendblue-lines` with `argv` (default: `sys.argv`); return the exit code.

    Never raises, except `SystemExit` from the parser (`--help`,
    `--version`, a usage error). Every failure is one sentence on stderr
    and one of the documented exit codes.
    """
    console = Console(sys.stdout, sys.stderr)
    args: argparse.Namespace | None = None
    with sigterm_as_ctrl_c() as restore_sigterm:
        try:
            try:
                args = build_parser().parse_args(argv)
            except SystemExit:
                # --help and --version wrote to stdout: a closed stdout is
                # found here, not by Python's last flush at exit.
                console.flush_out()
                raise
            code = _run(args, console, restore_sigterm)
            console.flush_out()
            return code
        except KeyboardInterrupt:
            console.finish()
            console.say("Interrupted; nothing more was sent.")
            return EXIT_INTERRUPTED
        except OutputError as error:
            console.finish()
            console.say(f"Stopped: {error}; nothing more was sent.")
            return EXIT_FAILED
        except BrokenPipeError as error:  # a print() outside the console (sandbox)
            mute(sys.stdout)
            console.finish()
            console.say(f"Stopped: {why_unwritable(error)}; nothing more was sent.")
            return EXIT_FAILED
        except Exception as error:  # noqa: BLE001 - the promise: no traceback, ever
            console.finish()
            console.say(
                f"{explain(error)} Nothing more was sent. Run with -vv to see the "
                "traceback."
            )
            show_traceback(args, console, error)
            return EXIT_FAILED


def _run(
    args: argparse.Namespace,
    console: Console,
    restore_sigterm: Callable[[], None],
) -> int:
    # One dispatch: every subcommand sets `handler`. A coroutine function runs
    # here, on our event loop with our signals and sentences; `sandbox` (a
    # plain function) runs its own event loop and its own signal handlers.
    handler: Command | Callable[[argparse.Namespace], int] | None = getattr(
        args, "handler", None
    )
    if handler is None:
        build_parser().print_help(console.err)
        return EXIT_NOTHING
    with _logging_to(
        console.err,
        int(getattr(args, "verbose", 0)),
        str(getattr(args, "log_format", "text")),
    ):
        try:
            if not inspect.iscoroutinefunction(handler):
                return handler(args)  # type: ignore[call-arg,return-value]
            try:
                return asyncio.run(_guarded(handler, args, console))
            except SendblueError as error:
                console.say(explain(error))
                return EXIT_HUMAN if error.charged else EXIT_NOTHING
        finally:
            restore_sigterm()


async def _guarded(command: Command, args: argparse.Namespace, console: Console) -> int:
    interrupts = Interrupts(console)
    interrupts.install()
    try:
        return await command(args, console, interrupts)
    except asyncio.CancelledError:
        if not interrupts.received:
            raise
        task = asyncio.current_task()
        if task is not None and hasattr(task, "uncancel"):
            task.uncancel()
        console.finish()
        console.say("Interrupted; nothing more was sent.")
        return EXIT_INTERRUPTED
