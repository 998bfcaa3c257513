"""One handler per subcommand: limits, plan, preview, provision, demo."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .. import _logging
from .._budget import plan_for
from .._cli_credentials import read_cli_credentials
from .._logging import extra
from ..client import LinesClient
from ..errors import SendblueError
from ..provisioner import BatchResult, Provisioner, read_limits
from ._render import (
    EXIT_FAILED,
    EXIT_HUMAN,
    EXIT_INTERRUPTED,
    EXIT_NOTHING,
    EXIT_OK,
    at_utc,
    exit_code,
    explain,
    limits_table,
    plan_exact,
    plan_sentence,
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
            "next_available_at": plan.next_available_at.isoformat()
            if plan.next_available_at
            else None,
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
    async with make_client(args) as client:
        progress = Progress(args.count, console, args.json, interrupts)
        provisioner = Provisioner(client, on_outcome=progress)
        limits, why = await read_limits(client)
        plan = plan_for(args.count, limits, None)
        if plan.allowed <= 0:
            console.say(plan_sentence(plan, why) + " Nothing was bought.")
            return EXIT_NOTHING
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
                return EXIT_NOTHING
            if not await ask("Proceed? [y/N] ", sys.stdin, console):
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
    summary(result, args.count, console)
    return exit_code(len(result.lines), args.count, progress.needs_human)


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


async def demo_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    from ._demo import walk_through

    return await walk_through(args.count, console.out)


Command = Callable[[argparse.Namespace, Console, Interrupts], Coroutine[Any, Any, int]]
