"""The demo's crash steps: a real `sendblue-lines provision` killed mid-confirm.

The demo runs the command as a child process against its sandbox, which
holds the child's confirm without processing it (as if it were lost on the
way: the token stays unspent), and kills the child with SIGKILL. Then the
journal the child left (in a temporary directory, never the user's own)
shows what survives a crash: `reconcile()` settles the purchase with its
same token; a key asked again answers with its one line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..client import LinesClient
from ..errors import short_token
from ..journal import SQLiteJournal
from ..provisioner import Provisioner
from ..sandbox import Fault, Sandbox

__all__ = ["crash_and_reconcile", "key_survives_a_crash"]

#: Where `sendblue_lines` is imported from: the crash step's child imports it too.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: Seconds the crash step waits for its child process to reach its confirm.
_CHILD_PATIENCE = 60.0
#: The key the demo's child buys for.
_DEMO_KEY = "demo-agent"

#: Prints one indented line of a step.
Tell = Callable[[str], None]


async def crash_and_reconcile(
    tell: Tell, sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """Kill a real `provision` mid-confirm, then settle its purchase from the journal.

    `reconcile()` resends the child's same token: the line is bought once,
    and the journal says which token bought it.
    """
    with _temporary_journal() as path:
        pid = await _killed_child(tell, sandbox, path)
        async with SQLiteJournal(path) as journal:
            [left] = await journal.entries()
            tell(
                f"the journal kept its intent: {short_token(left.preview_token)} "
                f"{left.state}, owner pid {pid} (gone)"
            )
            outcomes = await Provisioner(client, journal=journal).reconcile()
            [entry] = await journal.entries()
    line = entry.line
    got = entry.state if line is None else f"bought {line.phone_number}"
    tell(
        f"reconcile() resent the same token (no new preview): "
        f"{short_token(entry.preview_token)} {got}"
    )
    tell(
        f"{len(outcomes)} purchase settled; the ledger holds "
        f"{_charges(sandbox, entry.preview_token)} charge for that token"
    )


async def key_survives_a_crash(
    tell: Tell, sandbox: Sandbox[Any], client: LinesClient
) -> None:
    """Kill a real `provision --key` mid-confirm; the key asked again has one line.

    `provision(key=...)` finds the key's purchase left open by a process
    that is gone and settles it first with its own token (never a new
    preview): that is the key's line. Asked once more, the key answers from
    the journal and nothing is sent.
    """
    with _temporary_journal() as path:
        await _killed_child(tell, sandbox, path, "--key", _DEMO_KEY)
        async with SQLiteJournal(path) as journal:
            provisioner = Provisioner(client, journal=journal)
            previews = sandbox.counters["preview"].requests
            line = await provisioner.provision(key=_DEMO_KEY)
            [entry] = await journal.entries(key=_DEMO_KEY)
            tell(
                f"asked again, provision(key={_DEMO_KEY!r}) resent the token the "
                f"child left, {short_token(entry.preview_token)} "
                f"({sandbox.counters['preview'].requests - previews} new preview(s)): "
                f"{entry.state} {line.phone_number}"
            )
            sent = _requests(sandbox)
            again = await provisioner.provision(key=_DEMO_KEY)
            tell(
                f"asked once more: {again.phone_number}, the same line, from the "
                f"journal ({_requests(sandbox) - sent} request(s) sent)"
            )
    tell(
        f"the ledger holds {_charges(sandbox, entry.preview_token)} charge for the "
        f"key {_DEMO_KEY!r}"
    )
    tell(
        "(had the child's confirm bought before the kill, the resend would be "
        "refused and the key would answer unknown with that token: never a "
        "second line)"
    )


@contextmanager
def _temporary_journal() -> Iterator[str]:
    """A journal's path in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="sendblue-lines-demo-") as folder:
        yield os.path.join(folder, "journal.sqlite3")


def _charges(sandbox: Sandbox[Any], token: str) -> int:
    """How many charges of the sandbox's ledger spent `token`."""
    return sum(1 for charge in sandbox.ledger if charge.preview_token == token)


def _requests(sandbox: Sandbox[Any]) -> int:
    """Every request the sandbox has had, of any endpoint."""
    return sum(counter.requests for counter in sandbox.counters.values())


async def _killed_child(
    tell: Tell, sandbox: Sandbox[Any], journal_path: str, *argv: str
) -> int:
    """Run ``provision [ARGV] --yes`` as a child; SIGKILL it mid-confirm; its pid.

    The sandbox holds the child's confirm unprocessed (`Fault.hang`), so
    the child dies with its token unspent.
    """
    command = ("provision", *argv, "--yes")
    confirms = sandbox.counters["confirm"].requests
    sandbox.inject("confirm", Fault.hang())
    tell(
        "a child process runs: sendblue-lines --journal TMP/journal.sqlite3 "
        + " ".join(command)
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sendblue_lines.cli", "--journal", journal_path,
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=_child_environment(sandbox),
    )  # fmt: skip
    try:
        arrived = asyncio.ensure_future(
            sandbox.wait_for_requests("confirm", confirms + 1, within=_CHILD_PATIENCE)
        )
        ended = asyncio.ensure_future(process.wait())
        try:
            await asyncio.wait(
                {arrived, ended},
                timeout=_CHILD_PATIENCE,
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
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    tell(
        f"its confirm reached the sandbox, which held it unprocessed (the token "
        f"unspent); pid {process.pid} was killed with SIGKILL"
    )
    return process.pid


def _child_environment(sandbox: Sandbox[Any]) -> dict[str, str]:
    """This process's environment, pointed at `sandbox` (no SENDBLUE_* of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDBLUE_")}
    env.update(
        SENDBLUE_BASE_URL=sandbox.url,
        SENDBLUE_API_KEY_ID=sandbox.api_key_id,
        SENDBLUE_API_SECRET_KEY=sandbox.api_secret_key,
        PYTHONPATH=os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p
        ),
    )
    return env
