"""`sendblue-lines demo`: the real flow, walked through against an embedded sandbox.

Nothing leaves 127.0.0.1 and nothing is charged: the sandbox is a local
server with fake credentials. Each step prints what it does and what came
back, so a newcomer sees limits, plan, preview, confirm, a re-preview after
an expired token, a batch that meets the daily limit, what each error
looks like, and a crash: a real `sendblue-lines provision` child process,
killed with SIGKILL while its confirm is held unanswered by the sandbox,
whose purchase `reconcile()` then settles from the journal it left (in a
temporary directory, never the user's own state directory).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

from ..client import LinesClient
from ..errors import SendblueError, short_token
from ..journal import SQLiteJournal
from ..models import Preview
from ..provisioner import Provisioner
from ..sandbox import Fault, Sandbox, SandboxAccount
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
        for line in text.splitlines():
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

            sandbox.clock.advance(hours=25)
            say.title("What each error looks like (the clock moved 25 hours on)")
            await _show_errors(say, sandbox, client, account)

            say.title("A crash mid-confirm, and reconcile()")
            await _crash_and_reconcile(say, sandbox, client)

        charges = sandbox.ledger
        bought = sum(1 for charge in charges if charge.phone_number is not None)
        say.title("The sandbox's ledger: every charge was reported to us")
        say.indent(
            f"{len(charges)} charges: {bought} lines, "
            f"{len(charges) - bought} subscription(s) without a line"
        )
    say.say("\nDone. Point LinesClient at https://api.sendblue.com to do it for real.")
    return EXIT_OK


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


#: Where `sendblue_lines` is imported from: the crash step's child imports it too.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: Seconds the crash step waits for its child process to reach its confirm.
CHILD_PATIENCE = 60.0


async def _crash_and_reconcile(
    say: _Narrator, sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """Kill a real `provision` mid-confirm, then settle its purchase from the journal.

    The sandbox holds the child's confirm without processing it (the token
    stays unspent), the child is killed with SIGKILL, and `reconcile()`
    resends that same token: the line is bought once, and the journal says
    which token bought it.
    """
    with tempfile.TemporaryDirectory(prefix="sendblue-lines-demo-") as folder:
        path = os.path.join(folder, "journal.sqlite3")
        confirms = sandbox.counters["confirm"].requests
        sandbox.inject("confirm", Fault.hang())
        say.indent(
            "a child process runs: sendblue-lines --journal TMP/journal.sqlite3 "
            "provision --yes"
        )
        pid = await _child_killed_mid_confirm(sandbox, path, confirms)
        say.indent(
            f"its confirm reached the sandbox, which held it unanswered; pid {pid} "
            "was killed with SIGKILL"
        )
        async with SQLiteJournal(path) as journal:
            [left] = await journal.entries()
            say.indent(
                f"the journal kept its intent: {short_token(left.preview_token)} "
                f"{left.state}, owner pid {pid} (gone)"
            )
            outcomes = await Provisioner(client, journal=journal).reconcile()
            [entry] = await journal.entries()
        line = entry.line
        got = entry.state if line is None else f"bought {line.phone_number}"
        say.indent(
            f"reconcile() resent the same token (no new preview): "
            f"{short_token(entry.preview_token)} {got}"
        )
        charges = [c for c in sandbox.ledger if c.preview_token == entry.preview_token]
        say.indent(
            f"{len(outcomes)} purchase settled; the ledger holds {len(charges)} "
            "charge for that token"
        )


async def _child_killed_mid_confirm(
    sandbox: Sandbox[Any], journal_path: str, confirms: int
) -> int:
    """Run `provision --yes` as a child, SIGKILL it once its confirm arrived."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDBLUE_")}
    env.update(
        SENDBLUE_BASE_URL=sandbox.url,
        SENDBLUE_API_KEY_ID=sandbox.api_key_id,
        SENDBLUE_API_SECRET_KEY=sandbox.api_secret_key,
        PYTHONPATH=os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p
        ),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sendblue_lines.cli",
        "--journal",
        journal_path,
        "provision",
        "--yes",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        arrived = asyncio.ensure_future(
            sandbox.wait_for_requests("confirm", confirms + 1, within=CHILD_PATIENCE)
        )
        ended = asyncio.ensure_future(process.wait())
        try:
            await asyncio.wait(
                {arrived, ended},
                timeout=CHILD_PATIENCE,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            arrived.cancel()
            ended.cancel()
        reached = (
            arrived.done() and not arrived.cancelled() and arrived.exception() is None
        )
        if process.returncode is not None or not reached:
            msg = (
                "the demo's child process did not reach its confirm "
                f"(exit status {process.returncode})"
            )
            raise RuntimeError(msg)
        process.kill()
        await process.wait()
        return process.pid
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
