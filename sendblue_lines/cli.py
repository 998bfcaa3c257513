"""The `sendblue-lines` command: limits, plan, preview, provision, sandbox, demo.

A thin layer over the public API. Every failure, of any kind, is printed as
one sentence (what happened, what to do) with a documented exit code, never
a traceback (`-vv` adds it) and never a credential. SIGTERM is read as
Ctrl-C at every step.

Exit codes:

- 0: every requested line was bought (or the command did what it was asked);
- 1: some lines were bought, some were not;
- 2: a usage or configuration error, or nothing was bought;
- 3: an outcome is unknown, or a provisioning failure left a subscription
  without a line: a human must check the account;
- 4: the command could not finish for a reason outside Sendblue's answers:
  its output could not be written (stdout closed, e.g. by `head`), or an
  unexpected error; nothing more was sent;
- 130: interrupted (Ctrl-C or SIGTERM); confirms already sent were waited
  for and what they bought was printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from types import FrameType
from typing import IO, Any, TextIO

import anyio

from . import _logging
from ._cli_credentials import read_cli_credentials
from ._logging import extra
from ._planning import plan_for
from ._version import __version__
from .client import LinesClient
from .errors import (
    APIError,
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
EXIT_FAILED = 4
EXIT_INTERRUPTED = 130

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
        # The body holds the server's message: quoting it apart would say it twice.
        return (
            "Sendblue created a subscription but could not provision the line; "
            f"contact Sendblue support with this answer: {json.dumps(error.body)}."
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
        return _explain_limit(error)
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
    detail = str(error).rstrip(".")
    return (
        f"Unexpected error ({type(error).__name__}{': ' + detail if detail else ''})."
    )


def _explain_limit(error: RateLimitError) -> str:
    which = (
        "daily"
        if isinstance(error, DailyLimitReachedError)
        else "monthly"
        if isinstance(error, MonthlyLimitReachedError)
        else "provisioning"
    )
    # The SDK's own pre-check words its message for a log, with the next slot
    # in it: we name the next slot once, below, in the command's format.
    why = (
        "as GET /accounts/limits said before buying"
        if error.limits is not None
        else error.message
    )
    # Not "nothing was bought": a batch stopped by the limit may have bought
    # lines before it.
    until = (
        f"the next slot opens at {_when(error.next_available_at)}"
        if error.next_available_at
        else "it frees a slot"
    )
    return (
        f"The {which} limit is reached ({why}); no more lines can be bought "
        f"until {until}."
    )


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


def _cell(value: int | None) -> str:
    return "?" if value is None else str(value)


_UNKNOWN_SHAPE = "the server answered in a shape we do not know"


def limits_table(limits: ProvisioningLimits, why: str | None = None) -> str:
    """Render the limits as a small text table (or say they are unknown, and why)."""
    if not limits.known:
        return (
            f"Limits unknown: {why or _UNKNOWN_SHAPE}; the server still enforces "
            "them, and decides at preview and confirm how many lines it allows."
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


#: Limits-read refusals that concern the account: an error, never "unknown".
#: The same rule as the Provisioner's, so that `limits` and `plan` agree.
_ACCOUNT_STATUSES = frozenset({401, 402, 403, 429})


async def _read_limits(client: LinesClient) -> tuple[ProvisioningLimits, str | None]:
    """The limits, or unknown limits and why: never an error for an odd answer.

    `limits`, `plan` and `provision` read them this way, as the Provisioner
    does: an unreadable body or a status the contract does not give this
    endpoint (404, ...) means the limits are unknown and the server decides.
    """
    try:
        limits = await client.get_limits()
    except MalformedResponseError as error:
        return ProvisioningLimits(), f"its answer could not be read ({error.message})"
    except APIError as error:
        if error.status in _ACCOUNT_STATUSES or not 400 <= error.status < 500:
            raise
        return ProvisioningLimits(), f"GET /accounts/limits answered {error}"
    return limits, None if limits.known else _UNKNOWN_SHAPE


def _unknown_parts(limits: ProvisioningLimits) -> list[str]:
    """What the limits read leaves unknown, window by window ([] when all is known)."""
    parts = []
    for name, window in (("daily", limits.daily), ("monthly", limits.monthly)):
        if window is None:
            parts.append(f"the {name} window is unknown")
        elif window.remaining is None:
            parts.append(f"what is left of the {name} window is unknown")
    return parts


def _plan_exact(plan: Plan) -> bool:
    """True when the limits read says `plan.allowed` for certain."""
    return plan.allowed == 0 or not _unknown_parts(plan.limits)


def _plan_sentence(plan: Plan, why: str | None = None) -> str:
    """One sentence on what the plan allows; never "all fit" when it cannot know."""
    if not plan.limits.known:
        return (
            f"The limits are unknown ({why or _UNKNOWN_SHAPE}): the server decides, "
            f"at preview and confirm, how many of the {plan.requested} line(s) "
            "it allows."
        )
    names = {"daily": "the daily limit", "monthly": "the monthly limit"}
    binding = names.get(plan.binding or "", "this Provisioner's max_lines")
    when = (
        f"; the next slot opens at {_when(plan.next_available_at)}"
        if plan.next_available_at
        else ""
    )
    if plan.allowed <= 0:
        return f"No line can be bought now: {binding} is reached{when}."
    unknown = _unknown_parts(plan.limits)
    if unknown:
        # Only an upper bound is known: the rest is the server's to decide.
        why_not = f": {binding} allows {plan.allowed}" if plan.binding else ""
        return (
            f"At most {plan.allowed} of {plan.requested} line(s) can be bought "
            f"now{why_not}; {' and '.join(unknown)}, so the server decides."
        )
    if plan.allowed >= plan.requested:
        return f"All {plan.requested} requested line(s) can be bought now."
    return (
        f"{plan.allowed} of {plan.requested} line(s) can be bought now: "
        f"{binding} allows {plan.allowed}{when}."
    )


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


# -- the terminal: stdout, stderr and the live progress line ---------------------


class OutputError(Exception):
    """Stdout could not be written (closed by the reader, a full disk, ...)."""


class _Console:
    """Stdout and stderr as the command writes them.

    Text the stream cannot encode is escaped rather than raised; a stdout
    that fails raises `OutputError`; a stderr that fails is given up quietly
    (there is nowhere left to say so). On a terminal, the live progress line
    on stderr is wiped before anything else is written, to either stream,
    and drawn again after it, so that it never shares a line with a result.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.raw_out = out
        self.raw_err = err
        self.live = _isatty(err)
        self.status = ""
        self.drawn = 0
        self.out_broken = False
        self.err_broken = False
        self.out = _Stream(self, is_out=True)
        self.err = _Stream(self, is_out=False)

    def show(self, status: str) -> None:
        """Draw `status` as the live line (on a terminal only)."""
        if not self.live:
            return
        self.status = status
        self._wipe()
        self._draw()

    def finish(self) -> None:
        """Wipe the live line for good: the summary that follows says the same."""
        self._wipe()
        self.status = ""

    def say(self, text: str) -> None:
        """One line on stderr."""
        self.err.write(text + "\n")
        self.err.flush()

    def _wipe(self) -> None:
        if self.drawn:
            self._raw_err("\r" + " " * self.drawn + "\r")
            self.drawn = 0

    def _draw(self) -> None:
        if self.live and self.status and not self.drawn:
            self._raw_err("\r" + self.status)
            self.drawn = len(self.status)

    def write(self, text: str, *, is_out: bool) -> None:
        self._wipe()
        if is_out:
            self._raw_out(text)
        else:
            self._raw_err(text)
        if text.endswith("\n"):
            if is_out:
                self.flush_out()
            self._draw()

    def flush_out(self) -> None:
        if self.out_broken:
            return
        try:
            self.raw_out.flush()
        except (OSError, ValueError) as error:
            self._out_failed(error)

    def flush_err(self) -> None:
        if not self.err_broken:
            try:
                self.raw_err.flush()
            except (OSError, ValueError):
                self.err_broken = True

    def _raw_out(self, text: str) -> None:
        if self.out_broken:
            raise OutputError("stdout was closed")
        try:
            _write(self.raw_out, text)
        except (OSError, ValueError) as error:
            self._out_failed(error)

    def _out_failed(self, error: BaseException) -> None:
        self.out_broken = True
        _mute(self.raw_out)
        raise OutputError(_why_unwritable(error)) from error

    def _raw_err(self, text: str) -> None:
        if self.err_broken:
            return
        try:
            _write(self.raw_err, text)
            self.raw_err.flush()
        except (OSError, ValueError):
            self.err_broken = True
            _mute(self.raw_err)


class _Stream:
    """One of the console's two streams, as the file `print()` and logging use."""

    def __init__(self, console: _Console, *, is_out: bool) -> None:
        self.console = console
        self.is_out = is_out

    def write(self, text: str) -> int:
        self.console.write(text, is_out=self.is_out)
        return len(text)

    def flush(self) -> None:
        if self.is_out:
            self.console.flush_out()
        else:
            self.console.flush_err()

    def isatty(self) -> bool:
        return _isatty(self.console.raw_out if self.is_out else self.console.raw_err)


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:
        # A stream that cannot encode a character (an ASCII locale, a
        # legacy code page) gets it escaped: a message is never lost to it.
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def _mute(stream: IO[str]) -> None:
    """Point a broken stream's descriptor at /dev/null.

    Python flushes stdout once more at exit; on a closed pipe that prints
    "Exception ignored ... BrokenPipeError" and exits 120. Nothing we wrote
    is lost by this: the reader is gone.
    """
    with suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


def _why_unwritable(error: BaseException) -> str:
    if isinstance(error, BrokenPipeError):
        return "stdout was closed by the program reading it"
    return f"stdout could not be written ({type(error).__name__}: {error})"


class _Progress:
    """Progress on stderr: a live line on a terminal, one line per outcome otherwise.

    Every outcome goes to stdout first. If stdout fails, the outcome is
    written whole to stderr instead and the batch is stopped as by Ctrl-C:
    a line bought must be shown somewhere.
    """

    def __init__(
        self, total: int, console: _Console, as_json: bool, interrupts: _Interrupts
    ) -> None:
        self.total = total
        self.console = console
        self.as_json = as_json
        self.interrupts = interrupts
        self.bought = 0
        self.failed = 0
        self.needs_human = 0
        self.unprinted = 0

    def __call__(self, outcome: ProvisionOutcome) -> None:
        if outcome.line is not None:
            self.bought += 1
        else:
            self.failed += 1
            if isinstance(
                outcome.error, (OutcomeUnknownError, ProvisioningFailedError)
            ):
                self.needs_human += 1
        printed = self._print(outcome)
        self._show(outcome, printed)

    def _print(self, outcome: ProvisionOutcome) -> bool:
        if self.console.out_broken:
            printed = False
        else:
            try:
                if self.as_json:
                    print(json.dumps(outcome_json(outcome)), file=self.console.out)
                elif outcome.line is not None:
                    print(_row(outcome), file=self.console.out)
                printed = True
            except OutputError as error:
                self.interrupts.stop(
                    f"Stopping: {error}; no new purchase starts, and the outcomes of "
                    "confirms already sent are written here."
                )
                printed = False
        if not printed and outcome.line is not None:
            self.unprinted += 1
        return printed

    def _show(self, outcome: ProvisionOutcome, printed: bool) -> None:
        done = self.bought + self.failed
        console = self.console
        if not printed and outcome.line is not None:
            console.say(f"slot {outcome.index}: bought {_row(outcome)}")
        elif not console.live and outcome.line is not None:
            console.say(
                f"[{done}/{self.total}] slot {outcome.index}: bought "
                f"{outcome.line.phone_number}"
            )
        if outcome.error is not None:
            prefix = "" if console.live else f"[{done}/{self.total}] "
            console.say(f"{prefix}slot {outcome.index}: {explain(outcome.error)}")
        console.show(
            f"[{done}/{self.total}] bought {self.bought}, failed {self.failed}"
        )


def _row(outcome: ProvisionOutcome) -> str:
    line = outcome.line
    assert line is not None  # noqa: S101 - only called for a bought slot
    return f"{line.phone_number}\t{line.worker_id}\t{line.subscription_id}"


def _exit_code(bought: int, requested: int, needs_human: int) -> int:
    if needs_human:
        return EXIT_HUMAN
    if bought >= requested:
        return EXIT_OK
    return EXIT_PARTIAL if bought else EXIT_NOTHING


# -- Ctrl-C and SIGTERM ---------------------------------------------------------------


class _Interrupts:
    """SIGINT and SIGTERM, both read as Ctrl-C, for the whole run of a command.

    Outside a batch the first signal cancels the command's task once (as
    asyncio.run does for Ctrl-C): every await ends, `async with` blocks
    close, and the command exits 130. Inside a batch it cancels the batch's
    scope instead: no new purchase starts, confirms already sent are waited
    for (the Provisioner shields them) and printed. After the batch the
    command only has its summary left to print, and finishes it.
    """

    def __init__(self, console: _Console) -> None:
        self.console = console
        self.received = False
        self.finishing = False
        self._task: asyncio.Task[Any] | None = None
        self._batch: anyio.CancelScope | None = None
        self._stopped = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for number in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(number, self._on_signal)

    def _on_signal(self) -> None:
        first = not self.received
        self.received = True
        if self.finishing:
            return
        if self._batch is not None:
            self.stop(
                "Stopping: no new purchase starts; waiting for the answers to "
                "confirms already sent (each may have bought a line)."
            )
        elif first and self._task is not None:
            self._task.cancel()

    def stop(self, why: str) -> None:
        """Stop the batch: say why once, then cancel its scope."""
        if not self._stopped:
            self._stopped = True
            self.console.say(why)
        if self._batch is not None:
            self._batch.cancel()

    @contextmanager
    def batch(self) -> Iterator[anyio.CancelScope]:
        """A scope for the batch, which a signal cancels instead of the task."""
        with anyio.CancelScope() as scope:
            self._batch = scope
            try:
                yield scope
            finally:
                self._batch = None
                self.finishing = True


def _raise_interrupt(number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[Callable[[], None]]:
    """Read SIGTERM as Ctrl-C (a KeyboardInterrupt) while no event loop runs.

    While a command's loop runs, `_Interrupts` handles both signals; when
    the loop closes, asyncio resets SIGTERM to its default (death without a
    word), so the yielded function puts ours back. Outside the main thread
    (main() called from a thread) signals are not ours, and nothing changes.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:
        yield lambda: None
        return

    def again() -> None:
        signal.signal(signal.SIGTERM, _raise_interrupt)

    try:
        yield again
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the commands --------------------------------------------------------------------


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


async def _cmd_limits(
    args: argparse.Namespace, console: _Console, interrupts: _Interrupts
) -> int:
    async with _make_client(args) as client:
        limits, why = await _read_limits(client)
    if args.json:
        data = {
            "known": limits.known,
            "daily": _window_json(limits.daily),
            "monthly": _window_json(limits.monthly),
        }
        print(json.dumps(data), file=console.out)
    else:
        print(limits_table(limits, why), file=console.out)
    return EXIT_OK


async def _cmd_plan(
    args: argparse.Namespace, console: _Console, interrupts: _Interrupts
) -> int:
    async with _make_client(args) as client:
        limits, why = await _read_limits(client)
    plan = plan_for(args.count, limits, None)
    if args.json:
        data = {
            "requested": plan.requested,
            # null, never a guess: unknown limits are the server's to decide.
            "allowed": plan.allowed if _plan_exact(plan) else None,
            "binding": plan.binding,
            "next_available_at": plan.next_available_at.isoformat()
            if plan.next_available_at
            else None,
        }
        print(json.dumps(data), file=console.out)
    else:
        if limits.known:
            print(limits_table(plan.limits), file=console.out)
        print(_plan_sentence(plan, why), file=console.out)
    return EXIT_OK


async def _cmd_preview(
    args: argparse.Namespace, console: _Console, interrupts: _Interrupts
) -> int:
    async with _make_client(args) as client:
        preview = await client.preview()
    if args.json:
        data = {"eligible": True, "expires_at": preview.expires_at.isoformat()}
        print(json.dumps(data), file=console.out)
    else:
        print(
            "Eligible: a line is available. Confirm would buy it and start a "
            "subscription billed to the card on file; this preview's token expires "
            f"at {_when(preview.expires_at)} and was not spent (nothing was bought).",
            file=console.out,
        )
    return EXIT_OK


async def _ask(question: str, stdin: IO[str], console: _Console) -> bool:
    """Ask on stderr, read the answer from `stdin`; True for y or yes.

    On a real terminal the answer is awaited with the event loop running, so
    that Ctrl-C and SIGTERM cancel the wait like any other. A stdin the loop
    cannot watch is read blocking, with both signals raising meanwhile.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    try:
        descriptor = stdin.fileno()
        loop.add_reader(descriptor, readable)
    except (AttributeError, NotImplementedError, OSError, ValueError):
        with _interruptible():
            console.err.write(question)
            console.err.flush()
            answer = stdin.readline()
    else:
        try:
            console.err.write(question)
            console.err.flush()
            await ready
        finally:
            loop.remove_reader(descriptor)
        answer = stdin.readline()
    return answer.strip().lower() in ("y", "yes")


@contextmanager
def _interruptible() -> Iterator[None]:
    """Let one Ctrl-C or SIGTERM stop a blocking read at once (KeyboardInterrupt).

    The loop's own handlers cannot run while it is blocked in readline().
    A signal that is ignored (SIG_IGN) stays ignored, and outside the main
    thread (main() called from a thread) nothing changes.
    """
    saved = []
    for number, handler in (
        (signal.SIGINT, signal.default_int_handler),
        (signal.SIGTERM, _raise_interrupt),
    ):
        previous = signal.getsignal(number)
        if previous in (signal.SIG_IGN, None):
            continue
        try:
            signal.signal(number, handler)
        except ValueError:  # not the main thread: signals are not ours
            continue
        saved.append((number, previous))
    try:
        yield
    finally:
        for number, previous in saved:
            signal.signal(number, previous)


async def _cmd_provision(
    args: argparse.Namespace, console: _Console, interrupts: _Interrupts
) -> int:
    async with _make_client(args) as client:
        progress = _Progress(args.count, console, args.json, interrupts)
        provisioner = Provisioner(client, on_outcome=progress)
        limits, why = await _read_limits(client)
        plan = plan_for(args.count, limits, None)
        if plan.allowed <= 0:
            console.say(_plan_sentence(plan, why) + " Nothing was bought.")
            return EXIT_NOTHING
        count = min(args.count, plan.allowed)
        notice = (
            f"About to buy {count} line(s). Each one starts a Sendblue subscription "
            "billed to the card on file."
        )
        if count < args.count or not _plan_exact(plan):
            notice += " " + _plan_sentence(plan, why)
        console.say(notice)
        if not args.yes:
            if not _isatty(sys.stdin):
                console.say(
                    "Refusing to buy without a terminal to confirm on; pass --yes to "
                    "confirm non-interactively. Nothing was bought."
                )
                return EXIT_NOTHING
            if not await _ask("Proceed? [y/N] ", sys.stdin, console):
                console.say("Cancelled; nothing was bought.")
                return EXIT_NOTHING
        progress.total = count
        result: BatchResult | None = None
        with interrupts.batch() as scope:
            try:
                # `count`, not `args.count`: never more than the person agreed
                # to, even if the limits free a slot between the plan and now.
                result = await provisioner.provision_many(
                    count, concurrency=args.concurrency
                )
            except Exception as error:
                if (
                    isinstance(error, SendblueError)
                    and progress.bought + (progress.failed) == 0
                ):
                    raise
                console.finish()
                console.say(
                    f"{explain(error)} Purchases may have been sent: check the "
                    "account before buying again."
                )
                _traceback(args, console, error)
                return EXIT_HUMAN
        console.finish()
    if progress.unprinted or console.out_broken:
        console.say(
            f"Stdout failed: {progress.bought} line(s) bought, "
            f"{progress.unprinted} of them written to stderr only."
        )
        return EXIT_HUMAN if progress.unprinted or progress.needs_human else EXIT_FAILED
    if scope.cancelled_caught:
        bought = progress.bought
        listed = ", listed above." if bought else "."
        console.say(f"Interrupted: {bought} line(s) bought before stopping{listed}")
        return EXIT_HUMAN if progress.needs_human else EXIT_INTERRUPTED
    assert result is not None  # noqa: S101 - set when not interrupted
    _summary(result, args.count, console)
    return _exit_code(len(result.lines), args.count, progress.needs_human)


def _summary(result: BatchResult, requested: int, console: _Console) -> None:
    parts = [f"bought {len(result.lines)} of {requested}"]
    if result.errors:
        parts.append(f"{len(result.errors)} failed")
    not_attempted = requested - len(result.lines) - len(result.errors)
    if not_attempted:
        parts.append(f"{not_attempted} not attempted")
    console.say("Done: " + ", ".join(parts) + ".")
    if result.stopped_by is not None:
        console.say(f"Stopped early: {explain(result.stopped_by)}")


async def _cmd_demo(
    args: argparse.Namespace, console: _Console, interrupts: _Interrupts
) -> int:
    from ._demo import walk_through

    return await walk_through(args.count, console.out)


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


Command = Callable[
    [argparse.Namespace, _Console, _Interrupts], Coroutine[Any, Any, int]
]

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
    provision.add_argument(
        "--count",
        type=_positive,
        default=1,
        help=f"lines to buy, 1 to {MAX_COUNT} (default 1)",
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
        "--count",
        type=_whole(1, MAX_DEMO_COUNT),
        default=3,
        help=f"lines the batch step asks for, 1 to {MAX_DEMO_COUNT} (default 3)",
    )
    demo.set_defaults(coroutine=_cmd_demo)

    # The sandbox (aiohttp.web) is loaded only for the commands that use it.
    from .sandbox import _command as sandbox_command

    sandbox_command.configure(sub)
    return parser


@contextmanager
def _logging_to(
    stream: _Stream, verbosity: int, log_format: str = "text"
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


def _traceback(
    args: argparse.Namespace | None, console: _Console, error: BaseException
) -> None:
    """At -vv, the traceback of an unexpected error, after its one sentence."""
    if int(getattr(args, "verbose", 0) or 0) >= 2:
        console.err.write("".join(traceback.format_exception(error)))
        console.err.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sendblue-lines` with `argv` (default: `sys.argv`); return the exit code.

    Never raises, except `SystemExit` from the parser (`--help`,
    `--version`, a usage error). Every failure is one sentence on stderr
    and one of the documented exit codes.
    """
    console = _Console(sys.stdout, sys.stderr)
    args: argparse.Namespace | None = None
    with _sigterm_as_ctrl_c() as restore_sigterm:
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
            _mute(sys.stdout)
            console.finish()
            console.say(f"Stopped: {_why_unwritable(error)}; nothing more was sent.")
            return EXIT_FAILED
        except Exception as error:  # noqa: BLE001 - the promise: no traceback, ever
            console.finish()
            console.say(
                f"{explain(error)} Nothing more was sent. Run with -vv to see the "
                "traceback."
            )
            _traceback(args, console, error)
            return EXIT_FAILED


def _run(
    args: argparse.Namespace,
    console: _Console,
    restore_sigterm: Callable[[], None],
) -> int:
    command: Command | None = getattr(args, "coroutine", None)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if command is None and handler is None:
        build_parser().print_help(console.err)
        return EXIT_NOTHING
    with _logging_to(
        console.err,
        int(getattr(args, "verbose", 0)),
        str(getattr(args, "log_format", "text")),
    ):
        try:
            if command is None:
                # `sandbox` runs its own event loop and its own signal handlers.
                assert handler is not None  # noqa: S101 - checked above
                return handler(args)
            try:
                return asyncio.run(_guarded(command, args, console))
            except SendblueError as error:
                console.say(explain(error))
                if isinstance(error, (OutcomeUnknownError, ProvisioningFailedError)):
                    return EXIT_HUMAN
                return EXIT_NOTHING
        finally:
            restore_sigterm()


async def _guarded(
    command: Command, args: argparse.Namespace, console: _Console
) -> int:
    interrupts = _Interrupts(console)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
