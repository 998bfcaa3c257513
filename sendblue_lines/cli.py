"""The `sendblue-lines` command: limits, plan, preview, provision, sandbox, demo.

A thin layer over the public API. Every error is printed as one sentence
(what happened, what to do), never a traceback and never a credential.

Exit codes:

- 0: every requested line was bought (or the command did what it was asked);
- 1: some lines were bought, some were not;
- 2: a usage or configuration error, or nothing was bought;
- 3: an outcome is unknown, or a provisioning failure left a subscription
  without a line: a human must check the account;
- 130: interrupted (Ctrl-C); confirms already sent were waited for and what
  they bought was printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import IO, Any, TextIO

import anyio

from . import _logging
from ._cli_credentials import read_cli_credentials
from ._logging import extra
from ._version import __version__
from .client import LinesClient
from .errors import (
    AuthenticationError,
    ConfigurationError,
    DailyLimitReachedError,
    MalformedResponseError,
    MonthlyLimitReachedError,
    NoCardOnFileError,
    NoLinesAvailableError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProvisioningFailedError,
    RateLimitError,
    SendblueError,
    TokenExpiredError,
    TransportError,
)
from .models import LimitWindow, ProvisioningLimits
from .provisioner import BatchResult, Plan, Provisioner, ProvisionOutcome

logger = _logging.get_logger(_logging.CLI)

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_NOTHING = 2
EXIT_HUMAN = 3
EXIT_INTERRUPTED = 130

_EPILOG = """\
exit codes:
  0    every requested line was bought (or the command succeeded)
  1    some lines were bought, some were not
  2    usage or configuration error, or nothing was bought
  3    an outcome is unknown, or a provisioning failure left a subscription
       without a line: a human must check the account
  130  interrupted; confirms already sent were waited for and reported

credentials come from SENDBLUE_API_KEY_ID and SENDBLUE_API_SECRET_KEY (or the
official SDK's SENDBLUE_API_API_KEY / SENDBLUE_API_API_SECRET), else from the
official CLI's ~/.sendblue/credentials.json (folder: SENDBLUE_CONFIG_DIR; refused
unless only its owner can read it); the base URL from --base-url,
SENDBLUE_BASE_URL or SENDBLUE_API_BASE_URL. SENDBLUE_LINES_LOG (or
SENDBLUE_API_LOG) = debug, info or warning sets the log level when -v is not given.
"""


def explain(error: BaseException) -> str:
    """One sentence for a person: what happened and what to do.

    Never includes a credential: our errors never carry one.
    """
    if isinstance(error, OutcomeUnknownError):
        return (
            f"A confirm was sent but its answer was lost ({error.reason}); a line was "
            f"most likely bought. Check the account before buying again "
            f"(token {error.preview_token[:8]}…, first sent "
            f"{error.first_sent_at:%Y-%m-%d %H:%M:%S} UTC, {error.attempts} send(s))."
        )
    if isinstance(error, ProvisioningFailedError):
        return (
            "Sendblue created a subscription but could not provision the line "
            f"({error.message}); contact Sendblue support with this answer: "
            f"{json.dumps(error.body)}."
        )
    if isinstance(error, AuthenticationError):
        return (
            "Sendblue rejected the credentials (401); check SENDBLUE_API_KEY_ID and "
            "SENDBLUE_API_SECRET_KEY."
        )
    if isinstance(error, PermissionDeniedError):
        return (
            f"Sendblue refused (403: {error.message}); only accounts on the "
            "inbound_only / Agent plan can buy lines through the API."
        )
    if isinstance(error, NoCardOnFileError):
        return "The account has no card on file (402); add one in Sendblue, then retry."
    if isinstance(error, RateLimitError):
        which = (
            "daily"
            if isinstance(error, DailyLimitReachedError)
            else "monthly"
            if isinstance(error, MonthlyLimitReachedError)
            else "provisioning"
        )
        when = (
            f" The next slot opens at {_when(error.next_available_at)}."
            if error.next_available_at
            else ""
        )
        # Not "nothing was bought": a batch stopped by the limit may have
        # bought lines before it.
        return (
            f"The {which} limit is reached ({error.message}); no more lines can be "
            f"bought until it frees a slot.{when}"
        )
    if isinstance(error, NoLinesAvailableError):
        return "Sendblue has no line available right now (503); try again later."
    if isinstance(error, TokenExpiredError):
        return "The preview token expired or was used (410); nothing was bought."
    if isinstance(error, ConfigurationError):
        return f"Configuration error: {error.message}."
    if isinstance(error, TransportError):
        return f"Could not reach Sendblue: {error.message}; check the network and URL."
    if isinstance(error, MalformedResponseError):
        return f"Sendblue's answer could not be read ({error.message})."
    if isinstance(error, SendblueError):
        return f"Sendblue refused: {error}."
    return f"Unexpected error ({type(error).__name__}): {error}."


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


def _cell(value: int | None) -> str:
    return "?" if value is None else str(value)


def limits_table(limits: ProvisioningLimits) -> str:
    """Render the limits as a small text table (or say they are unknown)."""
    if not limits.known:
        return (
            "Limits unknown: the server answered in a shape we do not know; it still "
            "enforces them at preview and confirm."
        )
    rows = [("window", "limit", "used", "remaining", "next slot")]
    named: list[tuple[str, LimitWindow | None]] = [
        ("daily (24 h)", limits.daily),
        ("monthly (30 d)", limits.monthly),
    ]
    for name, window in named:
        if window is None:
            rows.append((name, "?", "?", "?", "-"))
        else:
            rows.append(
                (
                    name,
                    _cell(window.limit),
                    _cell(window.used),
                    _cell(window.remaining),
                    _when(window.next_available_at),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )


def _window_json(window: LimitWindow | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "limit": window.limit,
        "used": window.used,
        "remaining": window.remaining,
        "next_available_at": window.next_available_at.isoformat()
        if window.next_available_at
        else None,
    }


def _plan_sentence(plan: Plan) -> str:
    if plan.allowed >= plan.requested:
        return f"All {plan.requested} requested line(s) can be bought now."
    names = {"daily": "the daily limit", "monthly": "the monthly limit"}
    binding = names.get(plan.binding or "", "this Provisioner's max_lines")
    why = f" {binding} allows {plan.allowed}" if plan.binding else ""
    when = (
        f"; the next slot opens at {_when(plan.next_available_at)}"
        if plan.next_available_at
        else ""
    )
    return f"{plan.allowed} of {plan.requested} line(s) can be bought now:{why}{when}."


def outcome_json(outcome: ProvisionOutcome) -> dict[str, Any]:
    """The JSON object printed for one settled slot by `provision --json`."""
    if outcome.line is not None:
        return {
            "index": outcome.index,
            "outcome": "bought",
            "phone_number": outcome.line.phone_number,
            "worker_id": outcome.line.worker_id,
            "subscription_id": outcome.line.subscription_id,
        }
    error = outcome.error
    kind = (
        "unknown"
        if isinstance(error, OutcomeUnknownError)
        else "provisioning_failed"
        if isinstance(error, ProvisioningFailedError)
        else "failed"
    )
    data: dict[str, Any] = {
        "index": outcome.index,
        "outcome": kind,
        "error": type(error).__name__,
        "message": explain(error) if error is not None else None,
    }
    if isinstance(error, OutcomeUnknownError):
        data["preview_token"] = error.preview_token
        data["first_sent_at"] = error.first_sent_at.isoformat()
    if isinstance(error, ProvisioningFailedError):
        data["body"] = error.body
    return data


class _Progress:
    """Progress on stderr: a live line on a terminal, one line per outcome otherwise."""

    def __init__(self, total: int, stream: TextIO, out: TextIO, as_json: bool) -> None:
        self.total = total
        self.stream = stream
        self.out = out
        self.as_json = as_json
        self.live = stream.isatty()
        self.bought = 0
        self.failed = 0
        self.needs_human = 0

    def __call__(self, outcome: ProvisionOutcome) -> None:
        if outcome.line is not None:
            self.bought += 1
        else:
            self.failed += 1
            if isinstance(
                outcome.error, (OutcomeUnknownError, ProvisioningFailedError)
            ):
                self.needs_human += 1
        # stdout first: a bought line must be printed even if stderr breaks.
        if self.as_json:
            print(json.dumps(outcome_json(outcome)), file=self.out, flush=True)
        elif outcome.line is not None:
            line = outcome.line
            print(
                f"{line.phone_number}\t{line.worker_id}\t{line.subscription_id}",
                file=self.out,
                flush=True,
            )
        self._show(outcome)

    def _show(self, outcome: ProvisionOutcome) -> None:
        done = self.bought + self.failed
        if self.live:
            self.stream.write(
                f"\r[{done}/{self.total}] bought {self.bought}, failed {self.failed}"
            )
            if outcome.error is not None:
                self.stream.write(
                    f"\n  slot {outcome.index}: {explain(outcome.error)}\n"
                )
        elif outcome.line is not None:
            self.stream.write(
                f"[{done}/{self.total}] slot {outcome.index}: bought "
                f"{outcome.line.phone_number}\n"
            )
        else:
            error = outcome.error
            self.stream.write(
                f"[{done}/{self.total}] slot {outcome.index}: "
                f"{explain(error) if error else 'failed'}\n"
            )
        self.stream.flush()

    def finish(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def _exit_code(bought: int, requested: int, needs_human: int) -> int:
    if needs_human:
        return EXIT_HUMAN
    if bought >= requested:
        return EXIT_OK
    return EXIT_PARTIAL if bought else EXIT_NOTHING


def _make_client(args: argparse.Namespace) -> LinesClient:
    found = read_cli_credentials()
    if found is None:
        return LinesClient(base_url=args.base_url, timeout=args.timeout)
    key_id, secret, path = found
    logger.info(
        "using the credentials of Sendblue's CLI from %s", path,
        extra=extra("cli_credentials_file"),
    )  # fmt: skip
    return LinesClient(key_id, secret, base_url=args.base_url, timeout=args.timeout)


async def _cmd_limits(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    async with _make_client(args) as client:
        limits = await client.get_limits()
    if args.json:
        data = {
            "known": limits.known,
            "daily": _window_json(limits.daily),
            "monthly": _window_json(limits.monthly),
        }
        print(json.dumps(data), file=out)
    else:
        print(limits_table(limits), file=out)
    return EXIT_OK


async def _cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    async with _make_client(args) as client:
        plan = await Provisioner(client).plan(args.count)
    if args.json:
        data = {
            "requested": plan.requested,
            "allowed": plan.allowed,
            "binding": plan.binding,
            "next_available_at": plan.next_available_at.isoformat()
            if plan.next_available_at
            else None,
        }
        print(json.dumps(data), file=out)
    else:
        print(limits_table(plan.limits), file=out)
        print(_plan_sentence(plan), file=out)
    return EXIT_OK


async def _cmd_preview(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    async with _make_client(args) as client:
        preview = await client.preview()
    if args.json:
        data = {"eligible": True, "expires_at": preview.expires_at.isoformat()}
        print(json.dumps(data), file=out)
    else:
        print(
            "Eligible: a line is available. Confirm would buy it and start a "
            "subscription billed to the card on file; this preview's token expires "
            f"at {_when(preview.expires_at)} and was not spent (nothing was bought).",
            file=out,
        )
    return EXIT_OK


def _ask(question: str, stdin: IO[str], err: TextIO) -> bool:
    # Interruptible before the question shows: a Ctrl-C in reply to it must
    # find the handler in place.
    with _interruptible():
        err.write(question)
        err.flush()
        answer = stdin.readline()
    return answer.strip().lower() in ("y", "yes")


@contextmanager
def _interruptible() -> Iterator[None]:
    """Let one Ctrl-C stop a blocking read at once (KeyboardInterrupt).

    asyncio.run's own SIGINT handler only cancels the main task, which cannot
    run while the loop is blocked in readline(): the first Ctrl-C at the
    prompt did nothing. A SIGINT that is ignored (SIG_IGN) stays ignored, and
    outside the main thread (main() called from a thread) nothing changes.
    """
    previous = signal.getsignal(signal.SIGINT)
    ours = previous not in (signal.SIG_IGN, None)
    if ours:
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        except ValueError:  # not the main thread: signals are not ours
            ours = False
    try:
        yield
    finally:
        if ours:
            signal.signal(signal.SIGINT, previous)


async def _cmd_provision(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    async with _make_client(args) as client:
        progress = _Progress(args.count, err, out, args.json)
        provisioner = Provisioner(client, on_outcome=progress)
        plan = await provisioner.plan(args.count)
        if plan.allowed <= 0:
            print(_plan_sentence(plan) + " Nothing was bought.", file=err)
            return EXIT_NOTHING
        count = min(args.count, plan.allowed)
        notice = (
            f"About to buy {count} line(s). Each one starts a Sendblue subscription "
            "billed to the card on file."
        )
        if count < args.count:
            notice += " " + _plan_sentence(plan)
        print(notice, file=err)
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    "Refusing to buy without a terminal to confirm on; pass --yes to "
                    "confirm non-interactively. Nothing was bought.",
                    file=err,
                )
                return EXIT_NOTHING
            if not _ask("Proceed? [y/N] ", sys.stdin, err):
                print("Cancelled; nothing was bought.", file=err)
                return EXIT_NOTHING
        progress.total = count
        result: BatchResult | None = None
        with anyio.CancelScope() as scope:
            _on_interrupt(scope.cancel, err)
            # `count`, not `args.count`: never more than the person agreed to,
            # even if the limits free a slot between the plan and the batch.
            result = await provisioner.provision_many(
                count, concurrency=args.concurrency
            )
        progress.finish()
    if scope.cancelled_caught:
        print(
            f"Interrupted: {progress.bought} line(s) bought before stopping; confirms "
            "already sent were waited for and are listed above.",
            file=err,
        )
        return EXIT_HUMAN if progress.needs_human else EXIT_INTERRUPTED
    assert result is not None  # noqa: S101 - set when not interrupted
    _summary(result, args.count, err)
    return _exit_code(len(result.lines), args.count, progress.needs_human)


def _summary(result: BatchResult, requested: int, err: TextIO) -> None:
    parts = [f"bought {len(result.lines)} of {requested}"]
    if result.errors:
        parts.append(f"{len(result.errors)} failed")
    not_attempted = requested - len(result.lines) - len(result.errors)
    if not_attempted:
        parts.append(f"{not_attempted} not attempted")
    print("Done: " + ", ".join(parts) + ".", file=err)
    if result.stopped_by is not None:
        print(f"Stopped early: {explain(result.stopped_by)}", file=err)


def _on_interrupt(cancel: Callable[[], object], err: TextIO) -> None:
    """Turn SIGINT and SIGTERM into a cancel of the running batch.

    The wait for confirms already sent can last up to their timeouts, so the
    person is told at once why the command does not end yet.
    """

    def stop() -> None:
        print(
            "Stopping: no new purchase starts; waiting for the answers to confirms "
            "already sent (each may have bought a line).",
            file=err,
            flush=True,
        )
        cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


Command = Callable[[argparse.Namespace, TextIO, TextIO], Coroutine[Any, Any, int]]

_VERBOSE: dict[str, Any] = {
    "action": "count",
    "default": 0,
    "help": "show the SDK's log on stderr: -v for each step, -vv for every request",
}


_LOG_FORMAT: dict[str, Any] = {
    "choices": ("text", "json"),
    "default": "text",
    "help": "the SDK's log on stderr as text (default) or one JSON object a line, "
    "with the sendblue_ keys",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `sendblue-lines`, with every subcommand."""
    parser = argparse.ArgumentParser(
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
        type=float,
        default=30.0,
        help="seconds per HTTP attempt (default 30)",
    )
    parser.add_argument("-v", "--verbose", **_VERBOSE)
    parser.add_argument("--log-format", **_LOG_FORMAT)
    # -v is also accepted after the command; SUPPRESS keeps a subcommand
    # without it from resetting a -v given before the command.
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v", "--verbose", **{**_VERBOSE, "default": argparse.SUPPRESS}
    )
    verbosity.add_argument(
        "--log-format", **{**_LOG_FORMAT, "default": argparse.SUPPRESS}
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    limits = sub.add_parser(
        "limits", help="show the daily and monthly limits", parents=[verbosity]
    )
    limits.add_argument("--json", action="store_true", help="print JSON")
    limits.set_defaults(coroutine=_cmd_limits)

    plan = sub.add_parser(
        "plan",
        help="how many of N lines can be bought now, and why",
        parents=[verbosity],
    )
    plan.add_argument("count", type=_positive, metavar="N")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(coroutine=_cmd_plan)

    preview = sub.add_parser(
        "preview",
        help="check eligibility without buying (spends nothing)",
        parents=[verbosity],
    )
    preview.add_argument("--json", action="store_true", help="print JSON")
    preview.set_defaults(coroutine=_cmd_preview)

    provision = sub.add_parser(
        "provision", help="buy lines (asks first)", parents=[verbosity]
    )
    provision.add_argument("--count", type=_positive, default=1, help="lines to buy")
    provision.add_argument(
        "--concurrency", type=_positive, default=3, help="purchases at once (default 3)"
    )
    provision.add_argument(
        "--yes", action="store_true", help="do not ask (needed without a terminal)"
    )
    provision.add_argument(
        "--json", action="store_true", help="one JSON object per outcome on stdout"
    )
    provision.set_defaults(coroutine=_cmd_provision)

    demo = sub.add_parser(
        "demo",
        parents=[verbosity],
        help="walk through the whole flow against an embedded local sandbox",
        description=(
            "Start a local sandbox on 127.0.0.1 and buy lines from it step by step: "
            "limits, plan, preview, confirm, a re-preview after an expired token, "
            "a batch that meets the daily limit, and each kind of error. Nothing "
            "is charged; nothing leaves this machine."
        ),
    )
    demo.add_argument(
        "--count", type=_positive, default=3, help="lines the batch step asks for"
    )
    demo.set_defaults(handler=_run_demo)

    # The sandbox (aiohttp.web) is loaded only for the commands that use it.
    from .sandbox import _command as sandbox_command

    sandbox_command.configure(sub)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import walk_through

    return asyncio.run(walk_through(args.count, sys.stdout))


@contextmanager
def _logging_to_stderr(args: argparse.Namespace) -> Iterator[None]:
    """Show the SDK's own log on stderr while the command runs.

    Only errors by default: every outcome the SDK would warn about is
    already told by the command in its own sentence, and the same story
    twice is noise. -v adds the SDK's warnings and steps, -vv each HTTP
    attempt. The logger is restored afterwards, so that `main()` called from
    a program or a test leaves logging as it was.
    """
    verbosity = int(getattr(args, "verbose", 0))
    level = {0: logging.ERROR, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if verbosity == 0:
        with suppress(ConfigurationError):  # the client reports a bad value
            level = _logging.level_from_env() or level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _logging.JsonFormatter()
        if getattr(args, "log_format", "text") == "json"
        else logging.Formatter("sendblue-lines: %(levelname)s: %(message)s")
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
    """Run `sendblue-lines` with `argv` (default: `sys.argv`); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "coroutine", None)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if command is None and handler is None:
        parser.print_help(sys.stderr)
        return EXIT_NOTHING
    with _logging_to_stderr(args):
        return _run(command, handler, args)


def _run(
    command: Command | None,
    handler: Callable[[argparse.Namespace], int] | None,
    args: argparse.Namespace,
) -> int:
    if command is None:
        # Subcommands that run their own event loop (sandbox, demo).
        assert handler is not None  # noqa: S101 - main() checked
        return handler(args)
    try:
        return asyncio.run(command(args, sys.stdout, sys.stderr))
    except SendblueError as error:
        print(explain(error), file=sys.stderr)
        if isinstance(error, (OutcomeUnknownError, ProvisioningFailedError)):
            return EXIT_HUMAN
        return EXIT_NOTHING
    except KeyboardInterrupt:
        print("Interrupted; nothing more was sent.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
