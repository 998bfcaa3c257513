"""Purchases for a reason: what a key's journal entries say a purchase must do.

A key names why lines are bought (an agent, an order of 20) and the journal
makes it durable, so that a caller's retry, a restarted replica or two
overlapping cron runs never buy twice for one reason. This module reads a
key's entries and says what a new `provision(key=...)` must do (return the
line, raise the earlier charge, wait for a purchase in flight, buy), and
what a keyed `provision_many` adds up to. Which keys are valid is
`_config.key_problem`'s to say.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import attrs

from . import _logging
from ._config import key_problem
from ._journaling import Recorder, Report, first_sent, holding
from ._logging import extra
from ._results import BatchResult
from .errors import (
    ConfigurationError,
    DeclinedError,
    JournalError,
    OutcomeUnknownError,
    ProvisioningFailedError,
    SendblueError,
    outcome_of,
)
from .journal import HEARTBEAT_SECONDS, JournalEntry
from .models import ProvisionedLine

logger = _logging.get_logger(_logging.PROVISIONER)

__all__ = ["keeper", "provide", "total"]


@attrs.frozen
class Verdict:
    """What the earlier purchases under one key say a new purchase must do.

    `line`: one was bought, return it. `error`: one charged without a line,
    or may have charged, raise it. `waiting`: one is still in flight, wait
    for it. None of them: every earlier purchase certainly bought nothing,
    or there is none: buy.
    """

    line: ProvisionedLine | None = None
    error: SendblueError | None = None
    waiting: JournalEntry | None = None


def verdict(key: str, entries: Sequence[JournalEntry]) -> Verdict:
    """What the entries of `key` (oldest first) say `provision(key=...)` must do.

    A line wins (the key's reason is met), then a charge without a line or
    an unknown outcome (a human must look before anything is bought again),
    then a purchase in flight.
    """
    for entry in entries:
        if entry.state == "bought" and entry.line is not None:
            return Verdict(line=entry.line)
    for entry in entries:
        if entry.state in ("provisioning_failed", "unknown"):
            return Verdict(error=charged_error(key, entry))
    for entry in entries:
        if entry.state == "pending":
            return Verdict(waiting=entry)
    return Verdict()


def charged_error(key: str, entry: JournalEntry) -> SendblueError:
    """The error of an earlier purchase under `key` that charged or may have.

    The same class as when it happened, with its token and times, so that a
    caller's retry meets what the first call met.
    """
    told = entry.message or entry.state
    if entry.state == "provisioning_failed":
        return ProvisioningFailedError(
            f"an earlier purchase under key {key!r} created a subscription without "
            f"a line: {told}",
            body={"status": "ERROR", "error": entry.error_code, "message": told},
        )
    return OutcomeUnknownError.for_token(
        entry.preview_token,
        f"an earlier purchase under key {key!r} ended unknown ({told})",
        first_sent_at=first_sent(entry),
        attempts=entry.attempts,
        evidence=entry.evidence,
    )


#: How many times `provide` may find its key taken by another purchase meanwhile.
_TURNS = 4
#: The first and the longest pause between two looks at a purchase in flight.
_FIRST_PAUSE, _LONGEST_PAUSE = 0.05, 1.0

Buy = Callable[[str], Awaitable[ProvisionedLine]]


async def provide(
    key: str, recorder: Recorder, buy: Buy, report: Report
) -> ProvisionedLine:
    """The one line of `key`: the one bought before (nothing sent), or a new one.

    `buy` buys a line under `key` (its intent refuses it, `DeclinedError`,
    when another purchase took the key meanwhile: then the key's entries
    are read again); `report` tells of what settling a dead owner's purchase
    did. An earlier purchase that charged without a line or may have
    charged is raised again, with its token.

    Raises:
        ProvisioningFailedError, OutcomeUnknownError: an earlier purchase
            under `key` (or, after waiting for it, one in flight).
        JournalError: the journal could not be read.
        SendblueError: what `buy` raised.
    """
    declined: DeclinedError | None = None
    for _ in range(_TURNS):
        earlier = await answer(key, recorder, report)
        if earlier.line is not None:
            logger.info(
                "key %r has its line %s already; nothing was sent", key,
                earlier.line.phone_number, extra=extra("key_answered"),
            )  # fmt: skip
            return earlier.line
        if earlier.error is not None:
            logger.info(
                "key %r: an earlier purchase charged or may have: %s; nothing was "
                "sent", key, earlier.error, extra=extra("key_answered"),
            )  # fmt: skip
            raise earlier.error
        try:
            return await buy(key)
        except DeclinedError as error:
            if verdict(key, await recorder.entries(key)) == Verdict():
                raise  # declined for another reason: the key is still free
            declined = error
    # The key kept changing hands: each turn's preview was declined, unsent.
    assert declined is not None  # noqa: S101 - every turn that ends here sets it
    raise declined


async def answer(key: str, recorder: Recorder, report: Report) -> Verdict:
    """What the key's entries say once none of its purchases is in flight.

    A purchase in flight is waited for; when its owner is gone, it is
    settled first, as `reconcile()` does (the same token, never a new
    preview), and `report` hears what that did. The wait is bounded by the
    client's confirm deadline and the journal's lease.

    Raises:
        OutcomeUnknownError: a purchase under `key` was still in flight, its
            owner alive, when the wait ran out.
        JournalError: the journal could not be read or claimed from.
    """
    bound = recorder.client.confirm_deadline + (recorder.journal.lease or 0.0)
    deadline = anyio.current_time() + bound + HEARTBEAT_SECONDS
    pause = _FIRST_PAUSE
    while True:
        found = verdict(key, await recorder.entries(key))
        entry = found.waiting
        if entry is None:
            return found
        if entry.owner == recorder.owner and not recorder.confirming(
            entry.preview_token
        ):
            # Ours and not in flight: its outcome could not be recorded.
            return Verdict(error=charged_error(key, entry))
        if await recorder.reconcile(report, key):
            continue
        if anyio.current_time() >= deadline:
            raise OutcomeUnknownError.for_token(
                entry.preview_token,
                f"a purchase under key {key!r} was still in flight, held by "
                f"{entry.owner}, after {bound:.0f}s",
                first_sent_at=first_sent(entry),
                attempts=max(entry.attempts, 1),
            )
        await anyio.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)


def keeper(key: str, recorder: Recorder | None) -> Recorder:
    """The recorder that keeps `key`'s purchases: the Provisioner's own.

    Raises:
        ConfigurationError: no journal (`recorder` None), or a key that is
            not usable (`key_problem`).
    """
    problem = key_problem(key)
    if problem is not None:
        raise ConfigurationError(f"key={key!r} cannot be used: {problem}")
    if recorder is None:
        raise ConfigurationError("a key needs a Provisioner with a journal")
    return recorder


async def total(
    key: str,
    count: int,
    recorder: Recorder,
    run: Callable[[int], Awaitable[BatchResult]],
) -> BatchResult:
    """Buy toward `key`'s total `count`: `run` a batch for what is missing.

    The batch's journal reservation holds the key within `count` whatever
    else buys under it meanwhile; the result speaks of the whole total.
    """
    before = await recorder.entries(key)
    result = await run(max(count - holding(before), 0))
    try:
        after: Sequence[JournalEntry] | None = await recorder.entries(key)
    except JournalError as error:
        logger.warning(
            "key %r: the journal could not be read after the batch (%s); the "
            "result counts this call's purchases on what it held before", key,
            error, extra=extra("key_unread"),
        )  # fmt: skip
        after = None
    return keyed_result(key, count, result, before, after)


def keyed_result(
    key: str,
    count: int,
    result: BatchResult,
    before: Sequence[JournalEntry],
    after: Sequence[JournalEntry] | None,
) -> BatchResult:
    """A keyed `provision_many`'s result, said of the key's whole total `count`.

    `before` and `after` are the key's entries when the call began and
    ended (None: `after` could not be read). Every line bought under the
    key, oldest first, this call's included even where the journal could
    not record them; this call's failures, then the charged ones of earlier
    calls; and what nobody has tried yet toward the total.
    """
    earlier = {entry.preview_token for entry in before}
    known = before if after is None else after
    charged = [
        charged_error(key, entry)
        for entry in known
        if entry.preview_token in earlier
        and entry.state in ("unknown", "provisioning_failed")
    ]
    recorded = [entry.line for entry in known if entry.line is not None]
    numbers = {line.phone_number for line in recorded}
    lines = [*recorded, *(li for li in result.lines if li.phone_number not in numbers)]
    tried = sum(1 for error in result.errors if outcome_of(error) == "not_bought")
    held = holding(known)
    if after is None:  # this call's purchases, as its own outcomes tell them
        held += len(result.lines) + len(result.errors) - tried
    return attrs.evolve(
        result,
        requested=count,
        lines=lines,
        errors=[*result.errors, *charged],
        not_attempted=max(count - held - tried, 0),
    )
