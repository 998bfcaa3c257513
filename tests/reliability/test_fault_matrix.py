"""Every fault the sandbox can inject, at every step, for provision() and a batch.

The steps are the limits read, the preview, the first send of the confirm,
the resend of an unclear confirm (the first send gets a proxy's 502 that the
server never processed, the resend gets the fault) and every send of the
confirm (the fault three times). Each cell states what the caller must get,
and how many charges the sandbox's ledger must then hold; every cell then
checks the ledger invariants (`check_ledger`): every charge reported exactly
once through `on_outcome`, one slot never charged twice, nothing previewed
after a confirm that may have charged.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from reliability_support import (
    FAULTS,
    NO_LINES_RETRY,
    Recorder,
    check_error,
    check_ledger,
    connect,
    kind,
    provision_once,
)

from sendblue_lines import (
    AuthenticationError,
    NoCardOnFileError,
    NoLinesAvailableError,
    PermissionDeniedError,
    Provisioner,
    ProvisionOutcome,
    RateLimitError,
)
from sendblue_lines.sandbox import Fault, ManualClock, Sandbox

STEPS = ("limits", "preview", "confirm", "resend", "every_confirm")

LINE = ("line", 1)
UNKNOWN_CHARGED = ("OutcomeUnknownError", 1)
UNKNOWN_UNCHARGED = ("OutcomeUnknownError", 0)
UNKNOWN_EITHER = ("OutcomeUnknownError", None)
FAILED_CHARGED = ("ProvisioningFailedError", 1)
PHANTOM_FAILURE = ("ProvisioningFailedError", 0)


def refused(name: str) -> tuple[str, int]:
    """A typed error that bought nothing."""
    return (name, 0)


AUTH = refused("AuthenticationError")
MALFORMED = refused("MalformedResponseError")
REDIRECTED = refused("ServerError")

#: fault -> what provision() gives at each step of STEPS, and the charges.
#: The rules behind each column:
#: - limits: the read is advisory. Account and network errors are raised
#:   (5xx and network failures after the retries); an answer we cannot use,
#:   or a status the contract does not give this endpoint, means "unknown"
#:   and the purchase goes on.
#: - preview: transient failures are retried, other errors raised; nothing
#:   can be charged.
#: - confirm: a clear refusal bought nothing; an unclear send is resent with
#:   the same token; a 2xx that cannot be read, or a refusal after an unclear
#:   send, is an unknown outcome; 410 on a first send re-previews.
#: - resend / every_confirm: the same, after an unclear first send / for all
#:   three sends of the token.
EXPECTED: dict[str, tuple[tuple[str, int | None], ...]] = {
    # fault: (limits, preview, confirm, resend, every_confirm)
    "400": (LINE, refused("BadRequestError"), refused("BadRequestError"),
            UNKNOWN_UNCHARGED, refused("BadRequestError")),
    "401": (AUTH, AUTH, AUTH, UNKNOWN_UNCHARGED, AUTH),
    "402_no_card": (refused("NoCardOnFileError"),) * 3
    + (UNKNOWN_UNCHARGED, refused("NoCardOnFileError")),
    "403": (refused("PermissionDeniedError"),) * 3
    + (UNKNOWN_UNCHARGED, refused("PermissionDeniedError")),
    "410_expired": (LINE, refused("TokenExpiredError"), LINE, UNKNOWN_UNCHARGED,
                    refused("TokenExpiredError")),
    "429_daily": (refused("DailyLimitReachedError"),) * 3
    + (UNKNOWN_UNCHARGED, refused("DailyLimitReachedError")),
    "429_monthly": (refused("MonthlyLimitReachedError"),) * 3
    + (UNKNOWN_UNCHARGED, refused("MonthlyLimitReachedError")),
    "503_no_lines": (refused("NoLinesAvailableError"), LINE, LINE,
                     UNKNOWN_UNCHARGED, refused("NoLinesAvailableError")),
    "500": (LINE, LINE, LINE, LINE, UNKNOWN_UNCHARGED),
    # provisioning_failed is believed wherever it comes from (a false alarm
    # costs less than a double charge): never retried, reported as money moved,
    # even where the contract says nothing can be charged.
    "500_provisioning_failed": (PHANTOM_FAILURE, PHANTOM_FAILURE, FAILED_CHARGED,
                                FAILED_CHARGED, FAILED_CHARGED),
    "drop_before": (LINE, LINE, LINE, LINE, UNKNOWN_UNCHARGED),
    "drop_after_commit": (LINE, LINE, UNKNOWN_CHARGED, UNKNOWN_CHARGED,
                          UNKNOWN_CHARGED),
    # A delayed confirm still commits later unless the token was spent first:
    # with every send delayed, the first one commits before the third times out.
    "delay": (LINE, LINE, LINE, LINE, UNKNOWN_EITHER),
    "hang": (LINE, LINE, LINE, LINE, UNKNOWN_UNCHARGED),
    "hang_after_commit": (LINE, LINE, UNKNOWN_CHARGED, UNKNOWN_CHARGED,
                          UNKNOWN_CHARGED),
    "malformed": (LINE, MALFORMED, UNKNOWN_UNCHARGED, UNKNOWN_UNCHARGED,
                  UNKNOWN_UNCHARGED),
    "malformed_after_commit": (LINE, MALFORMED, UNKNOWN_CHARGED, UNKNOWN_CHARGED,
                               UNKNOWN_CHARGED),
    "html": (LINE, MALFORMED, UNKNOWN_UNCHARGED, UNKNOWN_UNCHARGED,
             UNKNOWN_UNCHARGED),
    "html_after_commit": (LINE, MALFORMED, UNKNOWN_CHARGED, UNKNOWN_CHARGED,
                          UNKNOWN_CHARGED),
    "proxy_502": (LINE, LINE, LINE, LINE, UNKNOWN_UNCHARGED),
    "proxy_502_after_commit": (LINE, LINE, UNKNOWN_CHARGED, UNKNOWN_CHARGED,
                               UNKNOWN_CHARGED),
    "redirect": (REDIRECTED, REDIRECTED, LINE, LINE, UNKNOWN_UNCHARGED),
    "redirect_after_commit": (REDIRECTED, REDIRECTED, UNKNOWN_CHARGED,
                              UNKNOWN_CHARGED, UNKNOWN_CHARGED),
    "oversized": (LINE, MALFORMED, UNKNOWN_UNCHARGED, UNKNOWN_UNCHARGED,
                  UNKNOWN_UNCHARGED),
    "oversized_after_commit": (LINE, MALFORMED, UNKNOWN_CHARGED, UNKNOWN_CHARGED,
                               UNKNOWN_CHARGED),
    "drip": (LINE, LINE, LINE, LINE, UNKNOWN_UNCHARGED),
    "drip_after_commit": (LINE, LINE, UNKNOWN_CHARGED, UNKNOWN_CHARGED,
                          UNKNOWN_CHARGED),
    "non_utf8": (LINE, MALFORMED, UNKNOWN_UNCHARGED, UNKNOWN_UNCHARGED,
                 UNKNOWN_UNCHARGED),
    "nested_10000": (LINE, MALFORMED, UNKNOWN_UNCHARGED, UNKNOWN_UNCHARGED,
                     UNKNOWN_UNCHARGED),
    "500_after_commit": (LINE, LINE, UNKNOWN_CHARGED, UNKNOWN_CHARGED,
                         UNKNOWN_CHARGED),
}  # fmt: skip

#: Errors about the account: a batch starts no slot after one.
ACCOUNT_LEVEL = (
    AuthenticationError,
    NoCardOnFileError,
    PermissionDeniedError,
    RateLimitError,
    NoLinesAvailableError,
)
BATCH_SIZE = 3

#: Every fault at every step; a plain run takes one cell per fault, on a
#: diagonal that meets every step too, and the sweep the whole product.
CELLS = [
    pytest.param(
        fault,
        step,
        id=f"{fault}-at-{step}",
        marks=() if step == STEPS[row % len(STEPS)] else pytest.mark.sweep,
    )
    for row, fault in enumerate(FAULTS)
    for step in STEPS
]


def test_every_fault_kind_has_a_row() -> None:
    """The table covers exactly the faults of the catalogue, at every step."""
    assert set(EXPECTED) == set(FAULTS)
    assert all(len(row) == len(STEPS) for row in EXPECTED.values())


def inject(sandbox: Sandbox[Any], fault: str, step: str) -> None:
    make = FAULTS[fault]
    if step in ("limits", "preview"):
        sandbox.inject(step, make(step))  # type: ignore[arg-type]
    elif step == "confirm":
        sandbox.inject("confirm", make("confirm"))
    elif step == "resend":
        sandbox.inject("confirm", Fault.proxy_502())
        sandbox.inject("confirm", make("confirm"))
    else:
        sandbox.inject("confirm", make("confirm"), times=3)


def phantom(fault: str, step: str) -> bool:
    """A cell where the server claims a failed provisioning without charging."""
    return fault == "500_provisioning_failed" and step in ("limits", "preview")


def check_traffic(sandbox: Sandbox[Any], recorder: Recorder) -> None:
    """Bounded sends, nothing followed, every request authenticated."""
    tokens = sum(len(t) for t in recorder.tokens.values())
    assert sandbox.counters["confirm"].requests <= 3 * max(tokens, 1)
    assert sandbox.counters["other"].requests == 0, "a redirect was followed"
    assert all(r.api_key_id is not None for r in sandbox.requests)


@pytest.mark.parametrize(("fault", "step"), CELLS)
async def test_provision(
    sandbox: Sandbox[ManualClock], secret_canary: Any, fault: str, step: str
) -> None:
    """provision() under one fault at one step: the stated outcome, ledger whole."""
    expected, charges = EXPECTED[fault][STEPS.index(step)]
    recorder = Recorder()
    inject(sandbox, fault, step)
    async with connect(sandbox) as client:
        got = await provision_once(client, recorder, secret_canary.secrets)
    await sandbox.aclose()  # anything still delayed or hanging is dropped
    assert got == expected
    assert [kind(o) for o in recorder.outcomes] == [got]
    counts = check_ledger(
        sandbox.ledger, recorder, phantom_failures=phantom(fault, step)
    )
    if charges is not None:
        assert counts["charges"] == charges
    check_traffic(sandbox, recorder)


@pytest.mark.parametrize(("fault", "step"), CELLS)
async def test_batch(
    sandbox: Sandbox[ManualClock], secret_canary: Any, fault: str, step: str
) -> None:
    """provision_many(3) with the fault hitting its first slot (or its limits read)."""
    expected, charges = EXPECTED[fault][STEPS.index(step)]
    recorder = Recorder()
    inject(sandbox, fault, step)

    def on_outcome(outcome: ProvisionOutcome) -> None:
        # Faults slot 0 left unused (it stopped before its third send) are not
        # for the next slots: the cell is about slot 0.
        sandbox.faults.clear()
        recorder.on_outcome(outcome)

    async with connect(sandbox) as client:
        provisioner = Provisioner(
            client,
            no_lines_retry=NO_LINES_RETRY,
            approve=recorder.approve,
            on_outcome=on_outcome,
        )
        with anyio.fail_after(15):
            result = await provisioner.provision_many(BATCH_SIZE, concurrency=1)
    await sandbox.aclose()
    for error in result.errors + [result.stopped_by] * bool(result.stopped_by):
        check_error(error, secret_canary.secrets)
    kinds = [kind(o) for o in sorted(recorder.outcomes, key=lambda o: o.index)]
    if step == "limits":
        if expected == "line":
            assert kinds == ["line"] * BATCH_SIZE
        else:
            # A failed limits read starts no slot and raises nothing.
            assert kinds == []
            assert type(result.stopped_by).__name__ == expected
            assert result.not_attempted == BATCH_SIZE
        expected_charges: int | None = BATCH_SIZE * (expected == "line")
    else:
        assert kinds[0] == expected
        stopped = expected != "line" and issubclass(
            type(recorder.outcomes[0].error), ACCOUNT_LEVEL
        )
        if stopped:
            assert kinds == [expected]
            assert result.stopped_by is recorder.outcomes[0].error
            assert result.not_attempted == BATCH_SIZE - 1
        else:
            assert kinds[1:] == ["line"] * (BATCH_SIZE - 1)
            assert result.stopped_by is None
        expected_charges = (
            None if charges is None else charges + (0 if stopped else BATCH_SIZE - 1)
        )
    assert [o.index for o in result.outcomes] == sorted(recorder.by_index())
    counts = check_ledger(
        sandbox.ledger, recorder, phantom_failures=phantom(fault, step)
    )
    if expected_charges is not None:
        assert counts["charges"] == expected_charges
    assert result.charged == counts["lines"] + counts["pf"] + counts["unknown"]
    check_traffic(sandbox, recorder)
