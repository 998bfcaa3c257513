"""One handler per subcommand.

limits, plan, preview, provision, history, reconcile and demo (`settle` is
in `_settle`).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from .. import _logging
from .._budget import plan_for
from .._cli_credentials import read_cli_credentials
from .._limits import read_limits
from .._logging import extra
from .._results import ProvisionOutcome, describe
from ..client import LinesClient
from ..errors import OutcomeUnknownError, SendblueError
from ..journal import Journal, JournalEntry
from ..provisioner import Provisioner
from ._buying import agreed, run_batch, summary
from ._journal import needed_journal, opened_journal
from ._keys import Goal, Holding
from ._render import (
    EXIT_HUMAN,
    EXIT_NOTHING,
    EXIT_OK,
    at_utc,
    entry_json,
    exit_code,
    explain,
    history_table,
    iso,
    limits_table,
    plan_exact,
    plan_sentence,
    reconciled_sentence,
    settled_brief,
    window_json,
)
from ._terminal import Console, Interrupts, Progress

logger = _logging.get_logger(_logging.CLI)


# -- the commands --------------------------------------------------------------------


def make_client(args: argparse.Namespace) -> LinesClient:
    found = read_cli_credentials()
    if found is None:
        return LinesClient(base_url=args.base_url, timeout=args.timeout)
    key_id, secret, path = found
    logger.info(
        "using the credentials of Sendblue's CLI from %s", path,
        extra=extra("cli_credentials_file"),
    )  # fmt: skip
    return LinesClient(key_id, secret, base_url=args.base_url, timeout=args.timeout)


async def limits_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    async with make_client(args) as client:
        limits, why = await read_limits(client)
    if args.json:
        data = {
            "known": limits.known,
            "daily": window_json(limits.daily),
            "monthly": window_json(limits.monthly),
        }
        print(json.dumps(data), file=console.out)
    else:
        print(limits_table(limits, why), file=console.out)
    return EXIT_OK


async def plan_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    async with make_client(args) as client:
        limits, why = await read_limits(client)
    plan = plan_for(args.count, limits, None)
    if args.json:
        data = {
            "requested": plan.requested,
            # null, never a guess: unknown limits are the server's to decide.
            "allowed": plan.allowed if plan_exact(plan) else None,
            "binding": plan.binding,
            "next_available_at": iso(plan.next_available_at),
        }
        print(json.dumps(data), file=console.out)
    else:
        if limits.known:
            print(limits_table(plan.limits), file=console.out)
        print(plan_sentence(plan, why), file=console.out)
    return EXIT_OK


async def preview_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    async with make_client(args) as client:
        preview = await client.preview()
    if args.json:
        data = {"eligible": True, "expires_at": preview.expires_at.isoformat()}
        print(json.dumps(data), file=console.out)
    else:
        print(
            "Eligible: a line is available. Confirm would buy it and start a "
            "subscription billed to the card on file; this preview's token expires "
            f"at {at_utc(preview.expires_at)} and was not spent (nothing was bought).",
            file=console.out,
        )
    return EXIT_OK


async def provision_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    async with make_client(args) as client, opened_journal(args) as journal:
        # Settled first: a purchase a dead process left open is told before
        # anything new is announced, so the person decides knowing it.
        human = 0 if journal is None else await settled_first(client, journal, console)
        goal = Goal(args.count)
        try:
            goal = await Goal.read(args.count, args.key, journal, client.api_key_id)
            # Such a purchase, or one the key holds, needs a human: exit 3
            # whatever follows, an error included.
            human += goal.held.needs_human
            code = await _buy(args, console, interrupts, client, journal, goal)
        except SendblueError as error:
            if not human:
                raise
            console.finish()
            said, advice = explain(error), goal.advice()
            console.say(f"{said} {advice}" if advice else said)
            return EXIT_HUMAN
    return EXIT_HUMAN if human else code


async def _buy(
    args: argparse.Namespace,
    console: Console,
    interrupts: Interrupts,
    client: LinesClient,
    journal: Journal | None,
    goal: Goal,
) -> int:
    """What `provision` does once it knows its goal: ask, buy, sum up; its exit code."""
    met = goal.met()
    if met is not None:  # nothing sent, nothing asked
        console.say(met)
        return goal.exit_code()
    limits, why = await read_limits(client)
    plan = plan_for(goal.wanted, limits, None)
    if plan.allowed <= 0:
        console.say(
            f"{plan_sentence(plan, why)} Nothing was bought.{goal.nothing_now()}"
        )
        return goal.exit_code()
    count = min(goal.wanted, plan.allowed)
    if not await agreed(args.yes, console, goal.notice(count), plan, why):
        # A refusal is exit 2, with a key too (see docs/cli.md): a cron job
        # without --yes must not look like progress toward the total.
        return EXIT_NOTHING
    progress = Progress(count, console, args.json, interrupts, key=args.key)
    # `count` at most: never more than the person agreed to, even if the
    # limits free a slot between the plan and now.
    provisioner = Provisioner(
        client, on_outcome=progress, journal=journal, max_lines=count
    )
    buy = functools.partial(goal.buy, provisioner, count, args.concurrency)
    result = await run_batch(args, console, interrupts, progress, buy)
    if isinstance(result, int):
        return result
    # The keyed result speaks of the whole key: no second read of the journal.
    held = None if goal.key is None else Holding.after(result)
    summary(result, goal, held, progress, console)
    if held is None:
        return exit_code(len(result.lines), args.count, progress.needs_human)
    return goal.exit_code(held)


async def settled_first(client: LinesClient, journal: Journal, console: Console) -> int:
    """Settle what dead processes left open and say so; how many ended unknown."""
    found = await settle_orphans(client, journal)
    if found:
        console.say(
            reconciled_sentence([brief for brief, _, _ in found])
            + " See `sendblue-lines history`."
        )
    return sum(1 for _, unknown, _ in found if unknown)


# -- the journal ---------------------------------------------------------------------


async def settle_orphans(
    client: LinesClient, journal: Journal
) -> list[tuple[str, bool, JournalEntry | None]]:
    """Settle the purchases dead processes left open (`Provisioner.reconcile`).

    Returns, for each one settled: a few words for a person, whether it is
    unknown, and its journal entry (None if its outcome could not be
    written: the Provisioner logged why).

    Raises:
        JournalError: the journal could not be read or claimed from.
    """
    outcomes = await Provisioner(client, journal=journal).reconcile()
    if not outcomes:
        return []
    entries = await journal.entries(client.api_key_id)
    by_token = {entry.preview_token: entry for entry in entries}
    by_worker = {
        entry.line.worker_id: entry for entry in entries if entry.line is not None
    }
    found: list[tuple[str, bool, JournalEntry | None]] = []
    for outcome in outcomes:
        entry = _entry_of(outcome, by_token, by_worker)
        unknown = outcome.line is None
        if entry is not None:
            found.append((settled_brief(entry), unknown, entry))
        else:
            # The outcome could not be written (the journal logged why).
            found.append((f"{describe(outcome)} (not in the journal)", unknown, None))
    return found


def _entry_of(
    outcome: ProvisionOutcome,
    by_token: dict[str, JournalEntry],
    by_worker: dict[str | None, JournalEntry],
) -> JournalEntry | None:
    if outcome.line is not None:
        return by_worker.get(outcome.line.worker_id)
    if isinstance(outcome.error, OutcomeUnknownError):
        return by_token.get(outcome.error.preview_token)
    return None


async def history_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    # The journal only: no credential, nothing sent.
    async with needed_journal(args, "history") as (journal, choice):
        entries = await journal.entries(key=args.key)
    if args.json:
        for entry in entries:
            print(json.dumps(entry_json(entry)), file=console.out)
        return EXIT_OK
    if entries:
        print(history_table(entries), file=console.out)
    under = "" if args.key is None else f" under the key {args.key!r}"
    console.say(f"{len(entries)} purchase(s){under} in the journal at {choice.shown}.")
    return EXIT_OK


async def reconcile_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    async with (
        make_client(args) as client,
        needed_journal(args, "reconcile") as (journal, choice),
    ):
        found = await settle_orphans(client, journal)
    entries = [entry for _, _, entry in found if entry is not None]
    if args.json:
        for entry in entries:
            print(json.dumps(entry_json(entry)), file=console.out)
    elif entries:
        print(history_table(entries), file=console.out)
    if not found:
        if not args.json:
            console.say(
                f"Nothing to reconcile: no purchase in the journal at {choice.shown} "
                "was left open by a process that is gone."
            )
        return EXIT_OK
    if not args.json or len(entries) < len(found):
        console.say(reconciled_sentence([brief for brief, _, _ in found]))
    return EXIT_HUMAN if any(unknown for _, unknown, _ in found) else EXIT_OK


async def demo_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    from ._demo import walk_through

    return await walk_through(args.count, console.out)


Command = Callable[[argparse.Namespace, Console, Interrupts], Coroutine[Any, Any, int]]
