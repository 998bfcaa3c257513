"""The terminal: streams that may break, the progress line, Ctrl-C and SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import IO, Any, TextIO

import anyio

from .._logging import printable, printable_lines
from ..provisioner import ProvisionOutcome
from ._render import explain, outcome_json

# -- the terminal: stdout, stderr and the live progress line ---------------------


class OutputError(Exception):
    """Stdout could not be written (closed by the reader, a full disk, ...)."""


class Console:
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
        self.live = isatty(err)
        self.status = ""
        self.drawn = 0
        self.out_broken = False
        self.err_broken = False
        self.out = Stream(self, is_out=True)
        self.err = Stream(self, is_out=False)

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
        """One line on stderr, through `printable` (it may quote any text)."""
        self.err.write(printable(text, None) + "\n")
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
        mute(self.raw_out)
        raise OutputError(why_unwritable(error)) from error

    def _raw_err(self, text: str) -> None:
        if self.err_broken:
            return
        try:
            _write(self.raw_err, text)
            self.raw_err.flush()
        except (OSError, ValueError):
            self.err_broken = True
            mute(self.raw_err)


class Stream:
    """One of the console's two streams, as the file `print()` and logging use."""

    def __init__(self, console: Console, *, is_out: bool) -> None:
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
        return isatty(self.console.raw_out if self.is_out else self.console.raw_err)


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:
        # A stream that cannot encode a character (an ASCII locale, a
        # legacy code page) gets it escaped: a message is never lost to it.
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def mute(stream: IO[str]) -> None:
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


def why_unwritable(error: BaseException) -> str:
    if isinstance(error, BrokenPipeError):
        return "stdout was closed by the program reading it"
    return f"stdout could not be written ({type(error).__name__}: {error})"


class Progress:
    """Progress on stderr: one line per outcome, and on a terminal a live line below.

    `key`: the key the purchases are for, in each JSON object (None: none).

    Every outcome goes to stdout first. If stdout fails, the outcome is
    written whole to stderr instead and the batch is stopped as by Ctrl-C:
    a line bought must be shown somewhere.
    """

    def __init__(
        self,
        total: int,
        console: Console,
        as_json: bool,
        interrupts: Interrupts,
        key: str | None = None,
    ) -> None:
        self.total = total
        self.key = key
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
            if outcome.charged:
                self.needs_human += 1
        printed = self._print(outcome)
        self._show(outcome, printed)

    def _print(self, outcome: ProvisionOutcome) -> bool:
        if self.console.out_broken:
            printed = False
        else:
            try:
                if self.as_json:
                    print(
                        json.dumps(outcome_json(outcome, self.key)),
                        file=self.console.out,
                    )
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
        # The same line for each outcome on a terminal as in a pipe: on a
        # terminal the live line is wiped for it and drawn again below it.
        done = self.bought + self.failed
        console = self.console
        step = f"[{done}/{self.total}] slot {outcome.index}"
        if outcome.error is not None:
            console.say(f"{step}: {explain(outcome.error)}")
        elif not printed:  # the row as stdout would have had it, tabs and all
            console.err.write(f"slot {outcome.index}: bought {_row(outcome)}\n")
        elif outcome.line is not None:
            console.say(f"{step}: bought {printable(outcome.line.phone_number)}")
        console.show(
            f"[{done}/{self.total}] bought {self.bought}, failed {self.failed}"
        )


def _row(outcome: ProvisionOutcome) -> str:
    line = outcome.line
    assert line is not None  # noqa: S101 - only called for a bought slot
    fields = (line.phone_number, line.worker_id, line.subscription_id)
    return "\t".join(printable(field) for field in fields)


# -- Ctrl-C and SIGTERM ---------------------------------------------------------------


class Interrupts:
    """SIGINT and SIGTERM, both read as Ctrl-C, for the whole run of a command.

    Outside a batch the first signal cancels the command's task once (as
    asyncio.run does for Ctrl-C): every await ends, `async with` blocks
    close, and the command exits 130. Inside a batch it cancels the batch's
    scope instead: no new purchase starts, confirms already sent are waited
    for (the Provisioner shields them) and printed. After the batch the
    command only has its summary left to print, and finishes it.
    """

    def __init__(self, console: Console) -> None:
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
def sigterm_as_ctrl_c() -> Iterator[Callable[[], None]]:
    """Read SIGTERM as Ctrl-C (a KeyboardInterrupt) while no event loop runs.

    While a command's loop runs, `Interrupts` handles both signals; when
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


async def ask(question: str, stdin: IO[str], console: Console) -> bool:
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
        with interruptible():
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
def interruptible() -> Iterator[None]:
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


def show_traceback(
    args: argparse.Namespace | None, console: Console, error: BaseException
) -> None:
    """At -vv, the traceback of an unexpected error, after its one sentence."""
    if int(getattr(args, "verbose", 0) or 0) >= 2:
        text = "".join(traceback.format_exception(error))
        console.err.write(printable_lines(text) + "\n")
        console.err.flush()
