"""The command's documented sessions with keys, replayed so that they cannot rot.

docs/cli.md's sessions for `--key` and `settle`, and the nights of the guide
"Buying more than a day allows", are read from their pages. Every
``$ sendblue-lines ...`` line is run (`main(argv)` in a thread, the `cli`
fixture) against a fresh sandbox and journal, in order; every line the
page prints under it must be among the lines the command really printed,
and ``$ echo $?`` must be its exit code. What differs from run to run is
masked on both sides (numbers, ids, tokens, times, the journal's path, a
slot's index, runs of spaces); a "…" left in a documented line stands for
text the page trimmed. A comment after a command says what happened before
it, and the test makes it happen (`BEFORE`): a comment it does not know
fails the test, so a page cannot claim what the test does not do.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from cli_support import InProcess, Result

from sendblue_lines import SQLiteJournal
from sendblue_lines.cli import main
from sendblue_lines.errors import short_token
from sendblue_lines.sandbox import Fault, Sandbox

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLI_PAGE = DOCS / "cli.md"
GUIDE = DOCS / "guides" / "buying-more-than-a-day-allows.md"

COMMAND = re.compile(r"^\$ sendblue-lines (?P<argv>.*?)(?:\s+# (?P<note>.*))?$")
EXIT = "$ echo $?"
SHORT_TOKEN = re.compile(r"lpv_[\w-]{4}…")
PHONE = re.compile(r"\+1\d{10}")
#: What differs from run to run, and what it is shown as on both sides.
MASKS = [
    (SHORT_TOKEN, "SHORT-TOKEN"),
    (re.compile(r"lpv_[\w-]{12,}"), "TOKEN"),
    (PHONE, "PHONE"),
    (re.compile(r"worker_[0-9a-f]+"), "WORKER"),
    (re.compile(r"sub_[0-9a-f]+"), "SUB"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "TIME"),
    (re.compile(r"\S*/journal\.sqlite3"), "PATH"),
    (re.compile(r"slot \d+"), "slot N"),  # slots settle in any order
    (re.compile(r"pid \d+"), "pid N"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\s+"), " "),
]
#: What a comment after a command says happened before it.
BEFORE: dict[str, Callable[[Sandbox[Any]], object]] = {
    "the next day": lambda sandbox: sandbox.clock.advance(hours=25),
    "the confirm's answer is lost": lambda sandbox: sandbox.inject(
        "confirm", Fault.drop_after_commit()
    ),
    "a retry buys nothing more": lambda sandbox: None,
}


@attrs.define
class Step:
    """One documented command: its arguments, its comment, what it printed."""

    argv: list[str]
    note: str | None
    shown: list[str] = attrs.Factory(list)
    code: int | None = None


def section(page: Path, heading: str) -> str:
    """The text under `heading`, up to the next heading of its level or above."""
    after = page.read_text("utf-8").split(heading + "\n", 1)[1]
    level = len(heading.split()[0])
    end = re.search(rf"^#{{1,{level}}} ", after, re.MULTILINE)
    return after if end is None else after[: end.start()]


def sessions(text: str) -> list[list[Step]]:
    """Each ```console block of `text`, as its steps."""
    return [steps(block) for block in re.findall(r"```console\n(.*?)```", text, re.S)]


def steps(block: str) -> list[Step]:
    found: list[Step] = []
    lines = iter(block.splitlines())
    for line in lines:
        command = COMMAND.match(line)
        if line == EXIT:
            found[-1].code = int(next(lines))
        elif command is not None:
            found.append(Step(shlex.split(command["argv"]), command["note"]))
        else:
            found[-1].shown.append(line)
    return found


def masked(line: str) -> str:
    for pattern, shown in MASKS:
        line = pattern.sub(shown, line)
    return line.strip()


def printed(result: Result) -> list[str]:
    """Every line the command printed, on either stream, masked."""
    return [masked(line) for line in (result.out + result.err).splitlines()]


def appears(documented: str, lines: list[str]) -> bool:
    """The documented line is one of `lines`; a "…" in it stands for any text."""
    pattern = ".*".join(re.escape(part) for part in masked(documented).split("…"))
    return any(re.fullmatch(pattern, line) for line in lines)


def check(step: Step, result: Result) -> None:
    lines = printed(result)
    missing = [line for line in step.shown if not appears(line, lines)]
    assert missing == [], (step.argv, missing, lines)
    if step.code is not None:
        assert result.code == step.code, (step.argv, result.err)


def state_journal() -> Path:
    return Path(os.environ["XDG_STATE_HOME"]) / "sendblue-lines" / "journal.sqlite3"


async def real(argv: list[str], sandbox: Sandbox[Any]) -> list[str]:
    """`argv` with the page's token and number replaced by this run's.

    The newest purchase's token, as `history` shows it, and the number of
    the newest charge: what a person would copy from their own history.
    """
    if not any(SHORT_TOKEN.fullmatch(arg) or PHONE.fullmatch(arg) for arg in argv):
        return argv
    async with SQLiteJournal(state_journal()) as journal:
        newest = (await journal.entries())[-1]
    number = str(sandbox.ledger[-1].phone_number)
    token = short_token(newest.preview_token)
    return [
        token if SHORT_TOKEN.fullmatch(arg) else number if PHONE.fullmatch(arg) else arg
        for arg in argv
    ]


@pytest.mark.parametrize(
    "heading", ["### Toward a key's total: `--key`", "## settle"], ids=["key", "settle"]
)
async def test_the_documented_session_is_what_the_command_prints(cli, heading):
    """Each command of the section's session prints the lines the page shows."""
    [session] = sessions(section(CLI_PAGE, heading))
    assert len(session) >= 3
    for step in session:
        if step.note is not None:
            BEFORE[step.note](cli.sandbox)
        check(step, await cli(*await real(step.argv, cli.sandbox)))


def test_the_history_example_is_from_the_settle_session():
    """`history --key`'s example is the settle session's step, line for line."""
    blocks = sessions(section(CLI_PAGE, "## history"))
    [example] = [step for block in blocks for step in block if "--key" in step.argv]
    [session] = sessions(section(CLI_PAGE, "## settle"))
    [same] = [step for step in session if step.argv == example.argv]
    assert example.shown == same.shown


async def test_the_documented_demo_is_what_the_demo_prints(capsys):
    """Every line docs/cli.md shows of `sendblue-lines demo`, its key step too."""
    [[step]] = sessions(section(CLI_PAGE, "## demo"))
    assert step.argv == ["demo"]
    assert any("A key survives a crash" in line for line in step.shown)
    code = await asyncio.wait_for(asyncio.to_thread(main, step.argv), 60)
    check(step, Result(code, capsys.readouterr().out, ""))
    assert code == 0


# -- the guide: a key's total over a month of nights --------------------------------


def nightly_command() -> list[str]:
    """The guide's crontab command; the same in its systemd unit and first block."""
    text = GUIDE.read_text("utf-8")
    crontab = re.search(r"```crontab\n.*?sendblue-lines (provision .*?) >>", text, re.S)
    assert crontab is not None
    command = crontab[1]
    assert f"ExecStart=/opt/sendblue-lines/bin/sendblue-lines {command}\n" in text
    assert f"```bash\nsendblue-lines {command}\n```" in text
    return shlex.split(command)


def table() -> dict[int, tuple[int, int, int]]:
    """The guide's table: night -> (bought, the key holds, exit), ranges expanded."""
    rows = re.finditer(
        r"^\| (?P<first>\d+)(?: to (?P<last>\d+)|(?P<after> and after))? \| "
        r"(?P<bought>\d+) \| (?P<holds>\d+) \| (?P<code>\d+) \|$",
        section(GUIDE, "## How it converges, night by night"),
        re.MULTILINE,
    )
    nights: dict[int, tuple[int, int, int]] = {}
    for row in rows:
        first = int(row["first"])
        # "5 to 30": each of them; "35 and after": that night and the next.
        last = int(row["last"]) if row["last"] else first + bool(row["after"])
        for night in range(first, last + 1):
            nights[night] = (int(row["bought"]), int(row["holds"]), int(row["code"]))
    return nights


async def test_the_nightly_job_converges_as_the_guide_says(cli: InProcess):
    """Every night of the guide's table, and every night it prints, as documented."""
    argv = nightly_command()
    text = GUIDE.read_text("utf-8")
    clock = re.search(r'"advance_seconds": (\d+)', text)
    assert clock is not None
    expected = table()
    assert sorted(expected) == list(range(1, 37))
    results: dict[int, Result] = {}
    for night in sorted(expected):
        results[night] = await cli(*argv)
        cli.sandbox.clock.advance(seconds=int(clock[1]))
    for night, (bought, holds, code) in expected.items():
        result = results[night]
        # What the key holds when the run ends: its last sentence says it.
        said = re.findall(r"holds (\d+) of 20 line\(s\)", result.err)
        assert said, (night, result.err)
        assert (len(result.out.splitlines()), int(said[-1]), result.code) == (
            bought,
            holds,
            code,
        ), night
    assert len(cli.sandbox.ledger) == 20
    [session] = sessions(section(GUIDE, "## What a night prints, and its exit code"))
    for step in session:
        assert step.argv == argv
        assert step.note is not None
        check(step, results[int(step.note.removeprefix("night "))])
