"""Buying on a terminal: the question before, the batch under Ctrl-C, the summary.

`provision` decides what to buy (`_keys.Goal`); this module says it and
asks (`agreed`), runs the batch so that Ctrl-C, SIGTERM or a stdout that
fails stop new purchases without losing one already sent (`run_batch`), and
sums it up (`summary`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable

from ..errors import SendblueError
from ..provisioner import BatchResult, Plan
from ._keys import Goal, Holding
from ._render import (
    EXIT_FAILED,
    EXIT_HUMAN,
    EXIT_INTERRUPTED,
    explain,
    plan_exact,
    plan_sentence,
)
from ._terminal import Console, Interrupts, Progress, ask, isatty, show_traceback

__all__ = ["agreed", "run_batch", "summary"]


async def agreed(
    yes: bool, console: Console, notice: str, plan: Plan, why: str | None
) -> bool:
    """Say what is about to be bought, and ask; True when the person agreed.

    `notice` says what the run buys; the plan's sentence follows it when
    the limits leave fewer lines than wanted, or say nothing for certain.
    """
    if plan.allowed < plan.requested or not plan_exact(plan):
        notice += " " + plan_sentence(plan, why)
    console.say(notice)
    if yes:
        return True
    if not isatty(sys.stdin):
        console.say(
            "Refusing to buy without a terminal to confirm on; pass --yes to "
            "confirm non-interactively. Nothing was bought."
        )
        return False
    if not await ask("Proceed? [y/N] ", sys.stdin, console):
        console.say("Cancelled; nothing was bought.")
        return False
    return True


async def run_batch(
    args: argparse.Namespace,
    console: Console,
    interrupts: Interrupts,
    progress: Progress,
    buy: Callable[[], Awaitable[BatchResult]],
) -> BatchResult | int:
    """Run the batch: its result, or the exit code of a batch that ended otherwise.

    Otherwise: an error (a `SendblueError` is raised as it is when nothing
    was attempted), stdout failing, or an interrupt.
    """
    result: BatchResult | None = None
    with interrupts.batch() as scope:
        try:
            result = await buy()
        except Exception as error:
            console.finish()
            if (
                isinstance(error, SendblueError)
                and progress.bought + progress.failed == 0
            ):
                raise
            console.say(
                f"{explain(error)} Purchases may have been sent: check the "
                "account before buying again."
            )
            show_traceback(args, console, error)
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
    return result


def summary(
    result: BatchResult,
    goal: Goal,
    held: Holding | None,
    progress: Progress,
    console: Console,
) -> None:
    """The run's last words: what was bought toward what, and what stopped it."""
    if held is not None:
        console.say(goal.summary(held, progress.bought, progress.failed))
    else:
        parts = [f"bought {len(result.lines)} of {goal.total}"]
        if result.errors:
            parts.append(f"{len(result.errors)} failed")
        not_attempted = goal.total - len(result.lines) - len(result.errors)
        if not_attempted:
            parts.append(f"{not_attempted} not attempted")
        console.say("Done: " + ", ".join(parts) + ".")
    # A keyed batch stops by design where the limits or what the run announced
    # end: its stop is worth a word only when it kept announced slots back.
    stop = result.stopped_by
    started = progress.bought + progress.failed
    if stop is not None and (held is None or started < progress.total):
        console.say(f"Stopped early: {explain(stop)}")
