"""`sendblue-lines settle TOKEN (--bought PHONE | --not-bought) [--note TEXT]`.

A person's verdict on a purchase the journal holds as ``unknown``, after
checking the account (`Journal.settle`): recorded as settled by hand, final,
and counted by the purchase's key from then on. It works on the journal
only, like `history`: no credential, nothing sent to Sendblue. A refusal
(the purchase is not unknown, the token names no purchase or several, or is
shorter than 8 characters) is one sentence and exit 2, and nothing changed.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from typing import Any

from ..errors import CUT_MARK, JournalError, short_token
from ..journal import JournalEntry
from ._journal import needed_journal
from ._render import EXIT_NOTHING, EXIT_OK, entry_json, history_table
from ._terminal import Console, Interrupts

__all__ = ["configure", "phone_number", "settle_command", "settled_sentence"]

#: E.164: a plus, a country code that does not start with 0, 15 digits at most.
_E164 = re.compile(r"\+[1-9]\d{1,14}")


def phone_number(text: str) -> str:
    """The type of ``--bought``: a number in E.164, or a usage error."""
    if not _E164.fullmatch(text):
        msg = f"{text!r} is not a phone number in E.164 form, such as +14155551234"
        raise argparse.ArgumentTypeError(msg)
    return text


def configure(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the `settle` command to the subcommands `sub` (argparse's subparsers)."""
    settle = sub.add_parser(
        "settle",
        parents=list(parents),
        help="record what an unknown purchase did, once you checked the account "
        "(the journal only)",
        description="Settle a purchase the journal holds as unknown, by hand: as "
        "bought, with the line's number, or as not bought. Final. Reads and writes "
        "the journal only: no credentials needed, nothing sent.",
    )
    settle.add_argument(
        "token",
        metavar="TOKEN",
        help="the purchase's preview token, or its first 8 characters or more "
        "(as `history` shows them)",
    )
    verdict = settle.add_mutually_exclusive_group(required=True)
    verdict.add_argument(
        "--bought",
        metavar="PHONE",
        type=phone_number,
        help="it bought this line (E.164, as the account shows it)",
    )
    verdict.add_argument(
        "--not-bought", action="store_true", help="it certainly bought nothing"
    )
    settle.add_argument("--note", help="why, kept in the journal as its message")
    settle.add_argument(
        "--json", action="store_true", help="print the settled purchase as JSON"
    )
    settle.set_defaults(handler=settle_command)


async def settle_command(
    args: argparse.Namespace, console: Console, interrupts: Interrupts
) -> int:
    """Settle one unknown purchase by hand; print it as `history` would."""
    # As `history` shows it, cut: a token copied from there keeps working.
    token = args.token.removesuffix(CUT_MARK)
    async with needed_journal(args, "settle") as (journal, _):
        try:
            entry = await journal.settle(
                token,
                phone_number=args.bought,
                not_bought=args.not_bought,
                note=args.note,
            )
        except JournalError as error:
            # A rule's refusal wrote nothing; a failing store may have, and
            # is told as any other.
            if not error.refused:
                raise
            console.say(f"Not settled: {error.message}; nothing changed.")
            return EXIT_NOTHING
    if args.json:
        print(json.dumps(entry_json(entry)), file=console.out)
    else:
        print(history_table([entry]), file=console.out)
        console.say(settled_sentence(entry))
    return EXIT_OK


def settled_sentence(entry: JournalEntry) -> str:
    """One sentence on a purchase settled by hand, and what it does to its key."""
    token = short_token(entry.preview_token)
    if entry.line is not None:
        said = f"Settled {token} by hand as bought: {entry.line.phone_number}"
        then = f"; it is a line of the key {entry.key!r}"
    else:
        said = f"Settled {token} by hand as not bought"
        then = f"; the key {entry.key!r} may buy again in its place"
    return f"{said}. It is final{then if entry.key is not None else ''}."
