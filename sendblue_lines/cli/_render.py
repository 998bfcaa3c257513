"""What the command says: one sentence per error, tables, plans, JSON, exit codes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._limits import UNKNOWN_SHAPE
from .._logging import printable
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    DailyLimitReachedError,
    JournalError,
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
    short_token,
)
from ..journal import JournalEntry
from ..models import LimitWindow, ProvisioningLimits
from ..provisioner import Plan, ProvisionOutcome

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_NOTHING = 2
EXIT_HUMAN = 3
EXIT_FAILED = 4
EXIT_INTERRUPTED = 130


def explain(error: BaseException) -> str:
    """One sentence for a person: what happened and what to do.

    Never includes a credential: our errors never carry one. The server's
    words in it go through `printable`.
    """
    if isinstance(error, OutcomeUnknownError):
        return (
            f"A confirm was sent but its answer was lost ({printable(error.reason)}); "
            "a line was most likely bought. Check the account before buying again "
            f"(token {printable(short_token(error.preview_token))}, first sent "
            f"{error.first_sent_at:%Y-%m-%d %H:%M:%S} UTC, {error.attempts} send(s))."
        )
    if isinstance(error, ProvisioningFailedError):
        # The body holds the server's message: quoting it apart would say it twice.
        return (
            "Sendblue created a subscription but could not provision the line; "
            "contact Sendblue support with this answer: "
            f"{printable(json.dumps(error.body))}."
        )
    if isinstance(error, AuthenticationError):
        return (
            "Sendblue rejected the credentials (401); check SENDBLUE_API_KEY_ID and "
            "SENDBLUE_API_SECRET_KEY."
        )
    if isinstance(error, PermissionDeniedError):
        return (
            f"Sendblue refused (403: {printable(error.message)}); only accounts on the "
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
    if isinstance(error, JournalError):
        # The message names the journal (a DSN without its password).
        return (
            f"The purchase journal failed: {error.message.rstrip('.')}. Fix it, "
            "choose another with --journal, or pass --no-journal to go without one."
        )
    if isinstance(error, TransportError):
        return f"Could not reach Sendblue: {error.message}; check the network and URL."
    if isinstance(error, MalformedResponseError):
        return f"Sendblue's answer could not be read ({error.message})."
    if isinstance(error, SendblueError):
        return f"Sendblue refused: {printable(error)}."
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
        else printable(error.message)
    )
    # Not "nothing was bought": a batch stopped by the limit may have bought
    # lines before it.
    until = (
        f"the next slot opens at {at_utc(error.next_available_at)}"
        if error.next_available_at
        else "it frees a slot"
    )
    return (
        f"The {which} limit is reached ({why}); no more lines can be bought "
        f"until {until}."
    )


def iso(moment: datetime | None) -> str | None:
    """`moment` in ISO 8601 for JSON, or None."""
    return moment.isoformat() if moment else None


def at_utc(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


def _cell(value: int | None) -> str:
    return "?" if value is None else str(value)


def _columns(cells: Sequence[Sequence[str]]) -> str:
    """`cells` as left-aligned columns two spaces apart, without trailing blanks.

    Each cell goes through `printable`: a table is where journal entries and
    the server's words are shown.
    """
    rows = [[printable(cell) for cell in row] for row in cells]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )


def limits_table(limits: ProvisioningLimits, why: str | None = None) -> str:
    """Render the limits as a small text table (or say they are unknown, and why)."""
    if not limits.known:
        return (
            f"Limits unknown: {printable(why or UNKNOWN_SHAPE)}; the server still "
            "enforces them, and decides at preview and confirm how many lines it "
            "allows."
        )
    rows = [["window", "limit", "used", "remaining", "next slot"]]
    for name, window in (
        ("daily (24 h)", limits.daily),
        ("monthly (30 d)", limits.monthly),
    ):
        w = window or LimitWindow()  # every number "?", no next slot
        numbers = map(_cell, (w.limit, w.used, w.remaining))
        rows.append([name, *numbers, at_utc(w.next_available_at)])
    return _columns(rows)


def window_json(window: LimitWindow | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "limit": window.limit,
        "used": window.used,
        "remaining": window.remaining,
        "next_available_at": iso(window.next_available_at),
    }


def _unknown_parts(limits: ProvisioningLimits) -> list[str]:
    """What the limits read leaves unknown, window by window ([] when all is known)."""
    parts = []
    for name, window in (("daily", limits.daily), ("monthly", limits.monthly)):
        if window is None:
            parts.append(f"the {name} window is unknown")
        elif window.remaining is None:
            parts.append(f"what is left of the {name} window is unknown")
    return parts


def plan_exact(plan: Plan) -> bool:
    """True when the limits read says `plan.allowed` for certain."""
    return plan.allowed == 0 or not _unknown_parts(plan.limits)


def plan_sentence(plan: Plan, why: str | None = None) -> str:
    """One sentence on what the plan allows; never "all fit" when it cannot know."""
    if not plan.limits.known:
        return (
            f"The limits are unknown ({printable(why or UNKNOWN_SHAPE)}): the server "
            "decides, at preview and confirm, how many of the "
            f"{plan.requested} line(s) it allows."
        )
    names = {"daily": "the daily limit", "monthly": "the monthly limit"}
    binding = names.get(plan.binding or "", "this Provisioner's max_lines")
    when = (
        f"; the next slot opens at {at_utc(plan.next_available_at)}"
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


def outcome_json(outcome: ProvisionOutcome, key: str | None = None) -> dict[str, Any]:
    """The JSON object printed for one settled slot by `provision --json`.

    `key` is the key the slot bought toward (``provision --key``), or None.
    """
    if outcome.line is not None:
        return {
            "index": outcome.index,
            "outcome": "bought",
            "key": key,
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
        "key": key,
        "error": type(error).__name__,
        "message": explain(error) if error is not None else None,
    }
    if isinstance(error, OutcomeUnknownError):
        data["preview_token"] = error.preview_token
        data["first_sent_at"] = error.first_sent_at.isoformat()
    if isinstance(error, ProvisioningFailedError):
        data["body"] = error.body
    return data


def exit_code(bought: int, requested: int, needs_human: int) -> int:
    if needs_human:
        return EXIT_HUMAN
    if bought >= requested:
        return EXIT_OK
    return EXIT_PARTIAL if bought else EXIT_NOTHING


# -- the journal: history, reconcile and settle --------------------------------------


def entry_json(entry: JournalEntry) -> dict[str, Any]:
    """The JSON object of one journal entry: `history`, `reconcile`, `settle`.

    The token is whole (as `provision --json` gives it, for support); the
    journal holds no credential, so neither does this.
    """
    line = entry.line
    return {
        "preview_token": entry.preview_token,
        "state": entry.state,
        "account": entry.account,
        "key": entry.key,
        "phone_number": None if line is None else line.phone_number,
        "worker_id": None if line is None else line.worker_id,
        "subscription_id": None if line is None else line.subscription_id,
        "error_code": entry.error_code,
        "message": entry.message,
        "created_at": iso(entry.created_at),
        "first_sent_at": iso(entry.first_sent_at),
        "settled_at": iso(entry.settled_at),
        "expires_at": iso(entry.expires_at),
        "attempts": entry.attempts,
        "owner": entry.owner,
        "evidence": [dict(item) for item in entry.evidence],
    }


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment else "-"


def history_table(entries: list[JournalEntry]) -> str:
    """The journal's entries as a text table, oldest first; tokens shortened.

    A key column is added only when an entry has a key, an account column
    only when the entries span more than one account.
    """
    keys = any(entry.key is not None for entry in entries)
    accounts = len({entry.account for entry in entries}) > 1
    head = ["token", "state", "number", "created (UTC)", "settled (UTC)", "error"]
    rows = [head + ["key"] * keys + ["account"] * accounts]
    for entry in entries:
        row = [
            short_token(entry.preview_token),
            entry.state,
            entry.line.phone_number if entry.line is not None else "-",
            _when(entry.created_at),
            _when(entry.settled_at),
            entry.error_code or "-",
        ]
        rows.append(row + [entry.key or "-"] * keys + [entry.account] * accounts)
    return _columns(rows)


def settled_brief(entry: JournalEntry) -> str:
    """A few words on one purchase `reconcile` settled: token, state, number.

    Said through `Console.say`; the server's numbers are cut here, as any
    piece of its text.
    """
    what: str = entry.state
    if entry.line is not None:
        what += f" {printable(entry.line.phone_number)}"
    if entry.state == "unknown":
        numbers = [printable(item.get("sendblue_number")) for item in entry.evidence]
        seen = (
            f"; lines no journal entry accounts for: {', '.join(numbers)}"
            if numbers
            else ""
        )
        what += f" (a human must check the account{seen})"
    return f"{short_token(entry.preview_token)} {what}"


def reconciled_sentence(briefs: list[str]) -> str:
    """One sentence on what `reconcile` settled, from each one's few words."""
    return (
        f"Reconciled {len(briefs)} purchase(s) left open by a process that is "
        f"gone: {'; '.join(briefs)}."
    )
