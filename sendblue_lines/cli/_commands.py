"""One handler per subcommand.

limits, plan, preview, provision, history, reconcile and demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from .. import _logging
from .._budget import plan_for
from .._cli_credentials import read_cli_credentials
from .._limits import read_limits
from .._logging import extra
from .._results import ProvisionOutcome, describe
from ..client import LinesClient
from ..errors import ConfigurationError, OutcomeUnknownError, SendblueError
from ..journal import Journal, JournalEntry
from ..provisioner import BatchResult, Provisioner
from ._journal import choose_journal, make_journal
from ._render import (
    EXIT_FAILED,
    EXIT_HUMAN,
    EXIT_INTERRUPTED,
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
from ._terminal import Console, Interrupts, Progress, ask, isatty, show_traceback

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
        found = [] if journal is None else await settle_orphans(client, journal)
        if found:
            console.say(
                reconciled_sentence([brief for brief, _, _ in found])
                + " See `sendblue-lines history`."
            )
        # A purchase settled as unknown needs a human: exit 3 whatever follows.
        left_unknown = sum(1 for _, unknown, _ in found if unknown)

        def finish(code: int) -> int:
            return EXIT_HUMAN if left_unknown else code

        progress = Progress(args.count, console, args.json, interrupts)
        provisioner = Provisioner(client, on_outcome=progress, journal=journal)
        limits, why = await read_limits(client)
        plan = plan_for(args.count, limits, None)
        if plan.allowed <= 0:
            console.say(plan_sentence(plan, why) + " Nothing was bought.")
            return finish(EXIT_NOTHING)
        count = min(args.count, plan.allowed)
        notice = (
            f"About to buy {count} line(s). Each one starts a Sendblue subscription "
            "billed to the card on file."
        )
        if count < args.count or not plan_exact(plan):
            notice += " " + plan_sentence(plan, why)
        console.say(notice)
        if not args.yes:
            if not isatty(sys.stdin):
                console.say(
                    "Refusing to buy without a terminal to confirm on; pass --yes to "
                    "confirm non-interactively. Nothing was bought."
                )
                return finish(EXIT_NOTHING)
            if not await ask("Proceed? [y/N] ", sys.stdin, console):
                console.say("Cancelled; nothing was bought.")
                return finish(EXIT_NOTHING)
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
                    if not left_unknown:
                        raise
                    console.finish()
                    console.say(explain(error))
                    return EXIT_HUMAN
                console.finish()
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
        return finish(
            EXIT_HUMAN if progress.unprinted or progress.needs_human else EXIT_FAILED
        )
    if scope.cancelled_caught:
        bought = progress.bought
        listed = ", listed above." if bought else "."
        console.say(f"Interrupted: {bought} line(s) bought before stopping{listed}")
        return finish(EXIT_HUMAN if progress.needs_human else EXIT_INTERRUPTED)
    assert result is not None  # noqa: S101 - set when not interrupted
    summary(result, args.count, console)
    return finish(exit_code(len(result.lines), args.count, progress.needs_human))


def summary(result: BatchResult, requested: int, console: Console) -> None:
    parts = [f"bought {len(result.lines)} of {requested}"]
    if result.errors:
        parts.append(f"{len(result.errors)} failed")
    not_attempted = requested - len(result.lines) - len(result.errors)
    if not_attempted:
        parts.append(f"{not_attempted} not attempted")
    console.say("Done: " + ", ".join(parts) + ".")
    if result.stopped_by is not None:
        console.say(f"Stopped early: {explain(result.stopped_by)}")


# -- the journal ----------------------------------------------------------------------


@asynccontextmanager
async def opened_journal(
    args: argparse.Namespace, *, needed_by: str | None = None
) -> AsyncIterator[Journal | None]:
    """The journal the options choose, open; None with ``--no-journal``.

    Raises:
        ConfigurationError: conflicting options, no state directory, or
            ``--no-journal`` for a command (`needed_by`) that reads the journal.
        JournalError: the journal cannot be opened.
    """
    choice = choose_journal(args)
    if choice is None:
        if needed_by is not None:
            msg = (
                f"`{needed_by}` works on the purchase journal, and --no-journal "
                "turns it off"
            )
            raise ConfigurationError(msg)
        logger.info("no purchase journal (--no-journal): nothing is recorded")
        yield None
        return
    logger.info(
        "purchase journal: %s (from %s)", choice.shown, choice.source,
        extra=extra("cli_journal"),
    )  # fmt: skip
    async with make_journal(choice) as journal:
        yield journal


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
    choice = choose_journal(args)
    async with opened_journal(args, needed_by="history") as journal:
        assert journal is not None  # noqa: S101 - needed_by refuses None
        entries = await journal.entries()
    if args.json:
        for entry in entries:
            print(json.dumps(entry_json(entry)), file=console.out)
        return EXIT_OK
    if entries:
        print(history_table(entries), file=console.out)
    where = choice.shown if choice is not None else "-"
    console.say(f"{len(entries)} purchase(s) in the journal at {where}.")
    return EXIT_OK


async def reconcile_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    choice = choose_journal(args)
    async with (
        make_client(args) as client,
        opened_journal(args, needed_by="reconcile") as journal,
    ):
        assert journal is not None  # noqa: S101 - needed_by refuses None
        found = await settle_orphans(client, journal)
    entries = [entry for _, _, entry in found if entry is not None]
    if args.json:
        for entry in entries:
            print(json.dumps(entry_json(entry)), file=console.out)
    elif entries:
        print(history_table(entries), file=console.out)
    if not found:
        if not args.json:
            where = choice.shown if choice is not None else "-"
            console.say(
                f"Nothing to reconcile: no purchase in the journal at {where} was "
                "left open by a process that is gone."
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
