"""The journal's rules, decided once for every backend; the backends hold the SQL.

What may be reserved, which entries a reservation counts, what an outcome may
overwrite and how its values are written: each backend asks here and only
runs the statements. A broken rule raises `Refused`, which `Journal` turns
into a `JournalError` that says nothing was written (`refusing`).

The fleet race (design invariant 8). A process reads ``GET /accounts/limits``
and then reserves. A purchase of another process that charged after the
server answered that read, and was settled before the reservation, is in
neither the read's ``used`` nor the journal's open purchases. So a
reservation also counts the entries that may have charged (`CHARGED_STATES`)
and were settled after a *mark* (`Journal.mark`), read before the limits
were. Marks and outcomes share one order, the journal's own order of
settled purchases, never a clock: an outcome is written after its confirm's
answer came, so one at or before the mark charged before the limits request
was sent, and the server counts it; one after the mark may be missing from
the read, and is counted here.

Who may write an outcome. An entry has one owner at a time: the process that
wrote its intent, until a survivor's `Journal.claim_orphans` takes it over
(its lease ran out, perhaps while its confirm was still in flight). An
outcome written with ``owner=`` is checked against the entry's owner, in the
transaction that writes it:

- the owner writes any outcome (within the rules for final states);
- another process may write only a *proof of a charge* (`PROOF_STATES`:
  ``"bought"`` with its line, ``"provisioning_failed"``): a line was bought
  whoever learnt it, and that fact is worth more than the ``"unknown"`` the
  new owner may hold; it never changes the owner;
- another process's ``"not_bought"`` or ``"unknown"`` is not applied: the
  entry is returned as it stands, still the other owner's. A refusal the
  first owner meets after a takeover proves nothing (the new owner may have
  resent the same token and bought with it), so ``"not_bought"`` never
  overwrites a claim; and ``"unknown"`` adds nothing the owner will not
  record itself.

An outcome written without ``owner=`` is not checked against the owner (the
behaviour before owners were checked); the Provisioner always passes its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, overload

import attrs

from .._config import key_problem
from ..models import ProvisionedLine
from ._entry import OUTCOME_STATES, EntryState

__all__ = [
    "BY_HAND",
    "CHARGED_STATES",
    "FINAL_STATES",
    "KEY_STATES",
    "PROOF_STATES",
    "Intent",
    "Outcome",
    "Refused",
    "Settlement",
    "SlotRequest",
    "check_account",
    "check_token_free",
    "storable",
    "utc",
]

#: States that an outcome may not change once written.
FINAL_STATES = frozenset({"bought", "not_bought", "provisioning_failed"})
#: Outcomes that prove a charge: recorded whoever learnt them (see above).
PROOF_STATES = frozenset({"bought", "provisioning_failed"})
#: Settled states whose confirm may have charged (and so count on the limits).
CHARGED_STATES: tuple[EntryState, ...] = ("bought", "provisioning_failed", "unknown")
#: Stored states that fill a key's total: slots and purchases that may buy
#: or may have bought.
KEY_STATES = ("reserved", "pending", *CHARGED_STATES)
#: What a settlement by hand writes as `error_code`, so that it shows.
BY_HAND = "settled_by_hand"


class Refused(Exception):
    """A journal rule was broken; a backend raises it as a `JournalError`."""


@overload
def utc(moment: datetime) -> datetime: ...
@overload
def utc(moment: None) -> None: ...
@overload
def utc(moment: datetime | None) -> datetime | None: ...
def utc(moment: datetime | None) -> datetime | None:
    """`moment` as an aware UTC time (a naive one is taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def check_account(bound: str | None, account: str) -> None:
    """Refuse `account` on a journal bound to another key id."""
    if bound is not None and account != bound:
        msg = f"it is bound to the account with key id {bound!r}, not {account!r}"
        raise Refused(msg)


@attrs.frozen(kw_only=True)
class SlotRequest:
    """A checked reservation: who wants how many slots, within what room and total.

    With `key`, the key's purchases that bought or may have bought
    (`KEY_STATES`) and its reserved slots stay within `total`, counted in the
    same transaction as the room.
    """

    account: str
    owner: str
    wanted: int
    room: int | None
    since: int | None
    key: str | None = None
    total: int | None = None

    @classmethod
    def of(
        cls,
        account: str,
        owner: str,
        wanted: int,
        room: int | None,
        since: int | None,
        *,
        key: str | None = None,
        total: int | None = None,
    ) -> SlotRequest:
        """Check a reservation's counts and key.

        Raises:
            Refused: a negative count, a key that is not usable, a total
                without a key.
        """
        for what, count in (("slots", wanted), ("room", room), ("total", total)):
            if count is not None and count < 0:
                msg = f"the {what} cannot be negative ({count})"
                raise Refused(msg)
        if key is not None:
            problem = key_problem(key)
            if problem is not None:
                raise Refused(problem)
        elif total is not None:
            msg = "a total goes with a key"
            raise Refused(msg)
        return cls(
            account=account, owner=owner, wanted=wanted, room=room, since=since,
            key=key, total=total,
        )  # fmt: skip

    def granted(self, counted: int, keyed: int) -> int:
        """How many slots fit when `counted` take room and `keyed` fill the total."""
        fit = self.wanted
        if self.room is not None:
            fit = min(fit, self.room - counted)
        if self.total is not None:
            fit = min(fit, self.total - keyed)
        return max(0, fit)


@attrs.frozen(kw_only=True)
class Intent:
    """A checked intent: the token about to be confirmed in a reserved slot.

    `slot_id` is None when the slot is reserved in the intent's transaction.
    """

    slot_id: int | None
    preview_token: str
    expires_at: datetime
    first_sent_at: datetime | None

    @classmethod
    def of(
        cls,
        slot_id: int | None,
        preview_token: str,
        expires_at: datetime,
        first_sent_at: datetime | None,
    ) -> Intent:
        """Check an intent on its own (before the slot is read).

        Raises:
            Refused: a token that a store cannot hold exactly: resending a
                token changed to store it would confirm another token.
        """
        if "\x00" in preview_token:
            msg = (
                "the preview token holds a NUL character, which a journal cannot store"
            )
            raise Refused(msg)
        return cls(
            slot_id=slot_id, preview_token=preview_token, expires_at=expires_at,
            first_sent_at=first_sent_at,
        )  # fmt: skip

    def check_slot(self, state: str | None) -> None:
        """Refuse a slot whose stored state is not reserved (None: no such slot)."""
        if state != "reserved":
            msg = (
                f"slot {self.slot_id} is not a reserved slot "
                "(never granted, released, or already used)"
            )
            raise Refused(msg)


def check_token_free(taken: bool) -> None:
    """Refuse a preview token that is already in the journal."""
    if taken:
        msg = "this preview token is already in the journal"
        raise Refused(msg)


@attrs.frozen(kw_only=True)
class Outcome:
    """The checked values an outcome writes, the same for every backend."""

    state: EntryState
    phone_number: str | None
    worker_id: str | None
    subscription_id: str | None
    error_code: str | None
    message: str | None
    attempts: int | None
    first_sent_at: datetime | None
    evidence: str | None  # JSON text; None keeps what is stored

    @classmethod
    def of(
        cls,
        state: EntryState,
        *,
        line: ProvisionedLine | None,
        error_code: str | None,
        message: str | None,
        attempts: int | None,
        first_sent_at: datetime | None,
        evidence: Sequence[Mapping[str, Any]],
    ) -> Outcome:
        """Check an outcome on its own (before the stored state is read).

        Raises:
            Refused: `state` is not an outcome, a line without ``"bought"``
                (or the reverse), or evidence that is not JSON objects.
        """
        if state not in OUTCOME_STATES:
            msg = f"{state!r} is not an outcome: use one of {', '.join(OUTCOME_STATES)}"
            raise Refused(msg)
        if (state == "bought") != (line is not None):
            msg = "a line goes with the state 'bought', and only with it"
            raise Refused(msg)
        return cls(
            state=state,
            phone_number=None if line is None else storable(line.phone_number),
            worker_id=None if line is None else storable(line.worker_id),
            subscription_id=None if line is None else storable(line.subscription_id),
            error_code=storable(error_code),
            message=storable(message),
            attempts=attempts,
            first_sent_at=utc(first_sent_at),
            evidence=_dump_evidence(evidence) if evidence else None,
        )

    def columns(self) -> tuple[object, ...]:
        """The values of the columns both backends write as they are.

        ``state, phone_number, worker_id, subscription_id, error_code,
        message, attempts``, in that order; the times and the evidence each
        backend writes in its own form.
        """
        return (
            self.state, self.phone_number, self.worker_id, self.subscription_id,
            self.error_code, self.message, self.attempts,
        )  # fmt: skip

    def applies_over(
        self, current: str | None, holder: str | None, writer: str | None
    ) -> bool:
        """Tell whether to write this outcome over the stored state `current`.

        `holder` is the entry's owner, `writer` the process writing (None:
        not checked). False: the entry is another owner's and this outcome
        is not a proof of a charge, so it is not applied (see the module's
        rules on who may write an outcome).

        Raises:
            Refused: no intent was recorded for the token (`current` None or
                ``"reserved"``), or a final state would change.
        """
        if current is None or current == "reserved":
            msg = "no intent was recorded for this token"
            raise Refused(msg)
        if writer is not None and writer != holder and self.state not in PROOF_STATES:
            return False
        if current in FINAL_STATES and self.state != current:
            msg = f"the outcome {current!r} is final and cannot become {self.state!r}"
            raise Refused(msg)
        return True


#: The fewest characters of a token that `Journal.settle` takes.
SETTLE_PREFIX = 8


@attrs.frozen(kw_only=True)
class Settlement:
    """A person's checked verdict on an ``"unknown"`` entry (`Journal.settle`)."""

    prefix: str
    state: EntryState
    phone_number: str | None
    message: str

    @classmethod
    def of(
        cls,
        prefix: str,
        *,
        phone_number: str | None,
        not_bought: bool,
        note: str | None,
    ) -> Settlement:
        """Check a verdict on its own, before the entry is read.

        Raises:
            Refused: a token prefix under 8 characters, neither or both of
                a phone number and ``not_bought=True``, an empty number, a
                note that is not text.
        """
        given: object = prefix  # callers outside the type checker's sight
        if not isinstance(given, str) or len(prefix) < SETTLE_PREFIX:
            msg = (
                f"name the purchase by its token, or {SETTLE_PREFIX} of its "
                "first characters at least"
            )
            raise Refused(msg)
        if (phone_number is None) == (not_bought is not True):
            msg = (
                "settle as bought (phone_number=...) or as not bought "
                "(not_bought=True), one of them"
            )
            raise Refused(msg)
        number: object = phone_number
        if number is not None and not (isinstance(number, str) and number.strip()):
            msg = "the phone number of a line settled as bought cannot be empty"
            raise Refused(msg)
        said: object = note
        if said is not None and not isinstance(said, str):
            msg = f"a note is text, not {type(said).__name__}"
            raise Refused(msg)
        return cls(
            prefix=prefix,
            state="bought" if phone_number is not None else "not_bought",
            phone_number=storable(phone_number),
            message=storable(note) or "settled by hand",
        )

    def check(self, found: Sequence[tuple[str, str]]) -> str:
        """The one entry (token, state) the prefix names; refuse any other case.

        A whole token names its own entry even when it begins another's.

        Raises:
            Refused: no entry or several match, or the one that does is not
                ``"unknown"``.
        """
        found = [row for row in found if row[0] == self.prefix] or found
        if not found:
            msg = f"no purchase's token starts with {self.prefix!r}"
            raise Refused(msg)
        if len(found) > 1:
            msg = (
                f"{len(found)} purchases' tokens start with {self.prefix!r}: "
                "give more of it"
            )
            raise Refused(msg)
        ((token, state),) = found
        if state != "unknown":
            msg = (
                f"only an unknown outcome can be settled by hand; this one is {state!r}"
            )
            raise Refused(msg)
        return token


@overload
def storable(text: str) -> str: ...
@overload
def storable(text: None) -> None: ...
def storable(text: str | None) -> str | None:
    """`text` as both stores can hold it: a NUL (which PostgreSQL refuses) escaped.

    Server text reaches the journal (an error's message, a line's ids), and
    valid JSON may carry a NUL; written as the six characters of its JSON
    escape, the facts stay readable instead of failing the write.
    """
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\\u0000")


def _dump_evidence(evidence: Sequence[Mapping[str, Any]]) -> str:
    """Serialise evidence as JSON text, or refuse it."""
    items = []
    given: Sequence[object] = evidence
    for item in given:
        if not isinstance(item, Mapping):
            msg = (
                "the evidence is not JSON: evidence items are JSON objects, "
                f"not {type(item).__name__}"
            )
            raise Refused(msg)
        items.append(dict(item))
    try:
        return json.dumps(items, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        msg = f"the evidence is not JSON: {exc}"
        raise Refused(msg) from None
