"""`provision --key K --count N`: a key's total, what the key holds, what a run says.

A key names why lines are bought (an agent, an order of 20), and the
journal keeps it. With ``--key``, N is the key's *total*, not a number of
new lines: the key's purchases that bought or may have bought (bought,
pending, unknown, provisioning_failed) count against it, so a run from cron
buys only what is missing, as the limits allow, and a run whose total is
met asks nothing and sends nothing. The exit code is computed against the
total: 0 when the key holds N lines, 1 when it holds some, 2 when it holds
none, 3 when a purchase under it is unknown or charged without a line (a
human must look, whatever else happened). So a total met by purchases
still pending exits 1 or 2, by the lines it holds, and one met by an
unknown exits 3. A refusal to buy (no --yes without a terminal, or a no
at the question) is 2, as without a key.
"""

from __future__ import annotations

import argparse
import shlex
from collections import Counter
from collections.abc import Sequence

import attrs

from .._config import key_problem
from .._journaling import holding
from ..errors import outcome_of
from ..journal import Journal, JournalEntry
from ..provisioner import BatchResult, Provisioner
from ._journal import journal_off
from ._render import EXIT_NOTHING, exit_code

__all__ = ["Goal", "Holding", "key_argument"]


def key_argument(text: str) -> str:
    """The type of ``--key``: a usable key, or a usage error saying what is wrong."""
    problem = key_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


@attrs.frozen
class Holding:
    """What one key's purchases hold: its lines, and what else counts toward it."""

    counted: int = 0  # the purchases that fill the key's total: bought or may have
    lines: int = 0
    unknown: int = 0
    failed: int = 0  # provisioning_failed: a subscription without a line

    @classmethod
    def of(cls, entries: Sequence[JournalEntry]) -> Holding:
        """Count the key's entries as the SDK counts them toward its total."""
        states = Counter(entry.state for entry in entries)
        return cls(
            counted=holding(entries),
            lines=states["bought"],
            unknown=states["unknown"],
            failed=states["provisioning_failed"],
        )

    @classmethod
    def after(cls, result: BatchResult) -> Holding:
        """What a keyed `provision_many`'s `result` says its key holds after it.

        `result.lines` is every line under the key; `result.errors` holds
        the key's purchases that charged or may have, and this run's that
        bought nothing. Of the total, what neither those nor `not_attempted`
        account for is counted too: other runs' purchases still in flight.
        """
        outcomes = Counter(outcome_of(error) for error in result.errors)
        lines = len(result.lines)
        unknown, failed = outcomes["unknown"], outcomes["provisioning_failed"]
        counted = result.requested - result.not_attempted - outcomes["not_bought"]
        # Never fewer than it shows: other runs may have filled the total
        # past what `not_attempted` (never below 0) can tell.
        return cls(
            counted=max(counted, lines + unknown + failed),
            lines=lines,
            unknown=unknown,
            failed=failed,
        )

    @property
    def pending(self) -> int:
        """Purchases counted that neither hold a line nor charged: still in flight."""
        return self.counted - self.lines - self.unknown - self.failed

    @property
    def needs_human(self) -> int:
        """Purchases that charged, or may have, without a line to show for it."""
        return self.unknown + self.failed

    def missing(self, total: int) -> int:
        """How many lines the key lacks of `total`."""
        return max(total - self.counted, 0)

    def words(self, total: int) -> str:
        """``holds 3 of 5 line(s)``, and what else counts toward the total."""
        text = f"holds {self.lines} of {total} line(s)"
        others = [
            f"{number} {state}"
            for state, number in (
                ("pending", self.pending),
                ("unknown", self.unknown),
                ("provisioning_failed", self.failed),
            )
            if number
        ]
        if others:
            text += (
                f", plus {self.counted - self.lines} purchase(s) counted toward it "
                f"({', '.join(others)})"
            )
        return text

    def advice(self, key: str) -> str:
        """What a person must do about the key's charges without a line ('' if none)."""
        said = []
        if self.unknown:
            said.append(
                f"{self.unknown} purchase(s) under the key ended unknown: check the "
                "account, then record what you find with `sendblue-lines settle "
                "TOKEN --bought PHONE` (or `--not-bought`); `sendblue-lines history "
                f"--key {shlex.quote(key)}` lists them."
            )
        if self.failed:
            said.append(
                f"{self.failed} purchase(s) under the key created a subscription "
                "without a line: take it up with Sendblue support."
            )
        return " ".join(said)


@attrs.frozen
class Goal:
    """What one `provision` run buys toward: N new lines, or a key's total of N.

    `held` is what the key held when the run began (nothing without a key).
    """

    total: int
    key: str | None = None
    held: Holding = Holding()

    @classmethod
    async def read(
        cls, total: int, key: str | None, journal: Journal | None, account: str
    ) -> Goal:
        """The goal of a run: with a key, what the journal holds under it now.

        Raises:
            ConfigurationError: a key without a journal (``--no-journal``).
            JournalError: the journal could not be read.
        """
        if key is None:
            return cls(total)
        if journal is None:
            raise journal_off("provision --key")
        return cls(total, key, Holding.of(await journal.entries(account, key=key)))

    @property
    def wanted(self) -> int:
        """How many lines are missing: all N, or what the key lacks of its total."""
        return self.held.missing(self.total)

    def notice(self, count: int) -> str:
        """The sentence before buying: how many this run may buy, toward what."""
        toward = (
            ""
            if self.key is None
            else f" toward the key {self.key!r}, which {self.held.words(self.total)}"
        )
        return (
            f"About to buy {count} line(s){toward}. Each one starts a Sendblue "
            "subscription billed to the card on file."
        )

    def met(self) -> str | None:
        """The sentence of a run whose key's total is met already; None if not."""
        if self.key is None or self.wanted > 0:
            return None
        # Purchases that may have bought count until a person settles them.
        met = (
            "its total is met"
            if self.held.lines >= self.total
            else "nothing more is bought for it until those are settled"
        )
        held = self.held.words(self.total)
        said = f"The key {self.key!r} {held}: {met}; nothing was bought."
        advice = self.advice()
        return f"{said} {advice}" if advice else said

    def nothing_now(self) -> str:
        """What follows "nothing was bought" when the limits leave no room now."""
        if self.key is None:
            return ""
        return f" The key {self.key!r} {self.held.words(self.total)}."

    def exit_code(self, held: Holding | None = None) -> int:
        """The exit code of a run that bought nothing, or of a keyed run.

        Against the key's total when there is a key: `held` is what the key
        holds after the run (default: before it). Without a key, a run that
        bought nothing exits 2.
        """
        if self.key is None:
            return EXIT_NOTHING
        now = self.held if held is None else held
        return exit_code(now.lines, self.total, now.needs_human)

    def advice(self) -> str:
        """What a person must do about the key's charges without a line ('' if none)."""
        return "" if self.key is None else self.held.advice(self.key)

    async def buy(
        self, provisioner: Provisioner, count: int, concurrency: int
    ) -> BatchResult:
        """Buy `count` lines (with a key: toward its total, `count` at most).

        `provisioner` caps its purchases at `count` (``max_lines``). With a
        key the total N goes to `provision_many`, so that the journal holds
        the key within it whatever runs alongside, and the cap keeps this
        run within what it announced even if the limits free a slot meanwhile.
        """
        if self.key is None:
            return await provisioner.provision_many(count, concurrency=concurrency)
        return await provisioner.provision_many(
            self.total, concurrency=concurrency, key=self.key
        )

    def summary(self, held: Holding, bought: int, failed: int) -> str:
        """The keyed run's last sentence: what the key holds, what this run did."""
        assert self.key is not None  # noqa: S101 - only keyed runs sum up here
        parts = [f"this run bought {bought}"]
        if failed:
            parts.append(f"{failed} failed")
        missing = held.missing(self.total)
        if missing:
            parts.append(f"{missing} still to buy")
        said = (
            f"Done: the key {self.key!r} {held.words(self.total)}; "
            + ", ".join(parts)
            + "."
        )
        advice = held.advice(self.key)
        return f"{said} {advice}" if advice else said
