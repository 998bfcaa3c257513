"""`sendblue-lines demo`: the real flow, walked through against an embedded sandbox.

Nothing leaves 127.0.0.1 and nothing is charged: the sandbox is a local
server with fake credentials. Each step prints what it does and what came
back, so a newcomer sees limits, plan, preview, confirm, a re-preview after
an expired token, a batch that meets the daily limit, what each error
looks like, and two crashes (`_demo_crash`): a real `sendblue-lines
provision` child process, killed with SIGKILL while its confirm is held
unprocessed by the sandbox, whose purchase `reconcile()` then settles from
the journal it left; and one buying for a key, which the key asked again
answers with its one line (each journal in a temporary directory, never
the user's own state directory).
"""

from __future__ import annotations

from typing import Any, Protocol

from .._logging import printable_lines
from ..client import LinesClient
from ..errors import SendblueError
from ..models import Preview
from ..provisioner import Provisioner
from ..sandbox import Fault, Sandbox, SandboxAccount
from ._demo_crash import crash_and_reconcile, key_survives_a_crash
from ._render import EXIT_OK, explain, limits_table, plan_sentence


class Writer(Protocol):
    """Where the demo writes: any text stream."""

    def write(self, text: str, /) -> int:
        """Write `text`."""
        ...


class _Narrator:
    def __init__(self, out: Writer) -> None:
        self.out = out
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        print(f"\n== {self.step}. {text}", file=self.out)

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def indent(self, text: str) -> None:
        # What a step found quotes the server's answers: one printable line each.
        for line in printable_lines(text, None).splitlines():
            print("   " + line, file=self.out)


async def walk_through(count: int, out: Writer) -> int:
    """Walk through the flow against a fresh sandbox, narrating to `out`."""
    say = _Narrator(out)
    # The daily limit leaves room for the two single purchases below, then
    # for one line fewer than the batch asks: the batch meets the limit.
    account = SandboxAccount(
        "demo-key-id",
        "demo-secret-not-real",
        daily_limit=count + 1,
        monthly_limit=max(10, count + 6),
    )
    async with Sandbox(accounts=[account]) as sandbox:
        say.say(f"A local Sendblue sandbox is serving on {sandbox.url}.")
        say.say(
            f"Its fake account may buy {account.daily_limit} lines a day and "
            f"{account.monthly_limit} a month; nothing here is charged."
        )
        async with LinesClient(
            sandbox.api_key_id,
            account.api_secret_key,
            base_url=sandbox.url,
        ) as client:
            await _one_line_by_hand(say, client, count)
            await _expired_token(say, sandbox, client)
            await _batch(say, client, count)
            sandbox.clock.advance(hours=25)
            say.title("What each error looks like (the clock moved 25 hours on)")
            await _show_errors(say, sandbox, client, account)
            say.title("A crash mid-confirm, and reconcile()")
            await crash_and_reconcile(say.indent, sandbox, client)
            # A new day, so that the daily limit leaves the key its line.
            sandbox.clock.advance(hours=25)
            say.title("A key survives a crash (the clock moved 25 hours on)")
            await key_survives_a_crash(say.indent, sandbox, client)
        _ledger(say, sandbox)
    say.say("\nDone. Point LinesClient at https://api.sendblue.com to do it for real.")
    return EXIT_OK


async def _one_line_by_hand(say: _Narrator, client: LinesClient, count: int) -> None:
    """Limits, a plan, then one purchase through the client's two calls."""
    say.title("Limits: GET /accounts/limits")
    say.indent(limits_table(await client.get_limits()))

    say.title(f"Plan: how many of {count} lines could be bought now?")
    plan = await Provisioner(client).plan(count)
    say.indent(plan_sentence(plan))

    say.title("Preview: eligibility and a single-use token (charges nothing)")
    preview = await client.preview()
    say.indent(f"{preview!r}  (the repr shows only the token's prefix)")
    say.title("Confirm: spend the token, charge the card, get the line")
    line = await client.confirm(preview)
    say.indent(f"bought {line.phone_number} (worker {line.worker_id})")


async def _expired_token(
    say: _Narrator, sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """A token that expired while it waited for approval: a second preview buys."""
    say.title("An expired token: the Provisioner previews again by itself")
    slow = _SlowApprover(sandbox)
    line = await Provisioner(client, approve=slow).provision()
    counts = sandbox.counters
    say.indent(
        "the first token waited 11 minutes for approval, so confirm got 410 "
        "token_expired;"
    )
    say.indent(
        f"the Provisioner previewed again and bought {line.phone_number} "
        f"({counts['preview'].requests} previews, "
        f"{counts['confirm'].requests} confirms so far, "
        f"{len(sandbox.purchases())} lines bought)"
    )


async def _batch(say: _Narrator, client: LinesClient, count: int) -> None:
    """A batch one line larger than the daily limit leaves: it stops there."""
    say.title(f"A batch of {count} that meets the daily limit")
    seen: list[str] = []
    batch = Provisioner(client, on_outcome=lambda o: seen.append(_brief(o)))
    result = await batch.provision_many(count, concurrency=3)
    for text in seen:
        say.indent(text)
    summary = f"bought {len(result.lines)} of {result.requested}"
    if result.not_attempted:
        summary += f"; {result.not_attempted} not attempted (nothing was sent)"
    say.indent(summary)
    if result.stopped_by is not None:
        say.indent(f"stopped by: {explain(result.stopped_by)}")


def _ledger(say: _Narrator, sandbox: Sandbox[Any]) -> None:
    """The sandbox's own record of every charge, against what we were told."""
    charges = sandbox.ledger
    bought = sum(1 for charge in charges if charge.phone_number is not None)
    say.title("The sandbox's ledger: every charge was reported to us")
    say.indent(
        f"{len(charges)} charges: {bought} lines, "
        f"{len(charges) - bought} subscription(s) without a line"
    )


class _SlowApprover:
    """An `approve` callback that takes 11 minutes (of sandbox time) the first time."""

    def __init__(self, sandbox: Sandbox[Any]) -> None:
        self.sandbox = sandbox
        self.calls = 0

    def __call__(self, preview: Preview) -> bool:
        self.calls += 1
        if self.calls == 1:
            self.sandbox.clock.advance(minutes=11)
        return True


def _brief(outcome: Any) -> str:
    if outcome.line is not None:
        return f"slot {outcome.index}: bought {outcome.line.phone_number}"
    return f"slot {outcome.index}: {type(outcome.error).__name__}"


async def _show_errors(
    say: _Narrator,
    sandbox: Sandbox[Any],
    client: LinesClient,
    account: SandboxAccount,
) -> None:
    async def attempt(label: str, action: Any) -> None:
        try:
            result = await action
        except SendblueError as error:
            say.indent(f"{label}: {type(error).__name__}")
            say.indent(f"    {explain(error)}")
        else:
            say.indent(f"{label}: {result!r}")

    async with LinesClient(
        account.api_key_id, "a-wrong-secret", base_url=sandbox.url
    ) as wrong:
        await attempt("wrong credentials", wrong.get_limits())

    sandbox.inject("confirm", Fault.drop_after_commit())
    await attempt(
        "connection lost after the purchase",
        Provisioner(client).provision(),
    )
    say.indent("    (no new preview: it could have bought a second line)")

    sandbox.inject("confirm", Fault.provisioning_failed())
    await attempt("provisioning failed", Provisioner(client).provision())

    sandbox.set_inventory(0)
    await attempt("no lines available", client.preview())
    sandbox.set_inventory(None)

    account.card_on_file = False
    await attempt("no card on file", client.preview())
    account.card_on_file = True
