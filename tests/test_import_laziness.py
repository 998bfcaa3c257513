"""`import sendblue_lines` leaves what it does not need unloaded (issue 13).

The Provisioner and its batch machinery, the journal (its protocol, its
stores with sqlite3, asyncpg, the SQL and its rules, and its entries) load
on the first use of their names (PEP 562), and anyio.lowlevel when a batch
ends. Each check runs in a fresh
interpreter, since this one has loaded everything already. Nothing here is
timed: the benchmark (`python -m benchmarks --only import`) measures the cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from types import ModuleType

import pytest

import sendblue_lines
import sendblue_lines.journal

#: Modules a plain `import sendblue_lines` must not load.
LAZY_MODULES = (
    "anyio.lowlevel",
    "asyncpg",
    "sqlite3",
    "sendblue_lines._batch",
    "sendblue_lines._budget",
    "sendblue_lines._results",
    "sendblue_lines._shield",
    "sendblue_lines.provisioner",
    "sendblue_lines.journal._base",
    "sendblue_lines.journal._entry",
    "sendblue_lines.journal._postgres",
    "sendblue_lines.journal._rules",
    "sendblue_lines.journal._schema",
    "sendblue_lines.journal._sqlite",
)
#: The names that load on first use, and where they are offered.
LAZY_NAMES = {
    sendblue_lines: ("Journal", "JournalEntry", "PostgresJournal", "SQLiteJournal"),
    sendblue_lines.journal: (
        "ENTRY_STATES",
        "OUTCOME_STATES",
        "SCHEMA_VERSION",
        "EntryState",
        "JournalEntry",
        "NewSlot",
        "PostgresJournal",
        "SQLiteJournal",
        "redact_dsn",
    ),
}


def loaded_after(code: str, modules: Sequence[str] = LAZY_MODULES) -> set[str]:
    """Which of `modules` a fresh interpreter has loaded after `code`."""
    script = (
        f"import json, sys\n{code}\n"
        f"print(json.dumps([m for m in {tuple(modules)!r} if m in sys.modules]))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter, our script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(done.stdout))


def test_a_plain_import_loads_no_store_and_no_entry() -> None:
    """Importing the package and its journal package, and listing them, loads none."""
    code = (
        "import sendblue_lines, sendblue_lines.journal\n"
        "names = dir(sendblue_lines) + dir(sendblue_lines.journal)\n"
        "assert 'SQLiteJournal' in names and 'PostgresJournal' in names, names\n"
        "sendblue_lines.LinesClient, sendblue_lines.Journal"
    )
    assert loaded_after(code) == set()


def test_a_program_that_only_calls_the_endpoints_loads_no_journal() -> None:
    """`import sendblue_lines` and a LinesClient leave the journal package unloaded.

    Its protocol loads with the first use of `Journal` (or the Provisioner).
    """
    journal = ("sendblue_lines.journal",)
    calls_only = "import sendblue_lines\nsendblue_lines.LinesClient"
    assert loaded_after(calls_only, journal) == set()
    assert loaded_after(f"{calls_only}\nsendblue_lines.Journal", journal) == {
        "sendblue_lines.journal"
    }


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param(
            "import sendblue_lines\nsendblue_lines.SQLiteJournal",
            {"sqlite3", "sendblue_lines.journal._sqlite"},
            id="sqlite-attribute",
        ),
        pytest.param(
            "from sendblue_lines import SQLiteJournal",
            {"sqlite3", "sendblue_lines.journal._sqlite"},
            id="sqlite-from-package",
        ),
        pytest.param(
            "from sendblue_lines.journal import PostgresJournal",
            {"sendblue_lines.journal._postgres"},
            id="postgres-from-journal",
        ),
        pytest.param(
            "from sendblue_lines import JournalEntry",
            {"sendblue_lines.journal._entry"},
            id="entry-from-package",
        ),
    ],
)
def test_a_lazy_name_loads_its_module_on_first_use(
    code: str, expected: set[str]
) -> None:
    """Using one store loads it (and what it needs), not the other one."""
    loaded = loaded_after(code)
    assert loaded >= expected
    if "sqlite3" in expected:
        assert "sendblue_lines.journal._postgres" not in loaded
    if "sendblue_lines.journal._postgres" in expected:
        assert "sqlite3" not in loaded


@pytest.mark.parametrize(
    ("module", "name"),
    [(module, name) for module, names in LAZY_NAMES.items() for name in names],
)
def test_a_lazy_name_is_listed_and_resolves_to_the_one_object(
    module: ModuleType, name: str
) -> None:
    """Each lazy name is in dir() and __all__, and is the journal's own object."""
    assert name in dir(module)
    assert name in module.__all__
    assert getattr(module, name) is getattr(sendblue_lines.journal, name)


@pytest.mark.parametrize(
    "name", ["Batch", "BatchResult", "Plan", "ProvisionOutcome", "Provisioner"]
)
def test_the_provisioner_loads_on_first_use(name: str) -> None:
    """The batch machinery loads with the first of its names, not the journal."""
    loaded = loaded_after(f"from sendblue_lines import {name}")
    assert "sendblue_lines._batch" in loaded
    assert "sqlite3" not in loaded
    assert name in dir(sendblue_lines)
    assert name in sendblue_lines.__all__


def test_an_unknown_name_is_still_an_error() -> None:
    """The lazy lookup answers only for its own names."""
    assert not hasattr(sendblue_lines, "NoSuchJournal")
    assert not hasattr(sendblue_lines.journal, "NoSuchJournal")
    with pytest.raises(ImportError, match="NoSuchJournal"):
        from sendblue_lines.journal import NoSuchJournal  # type: ignore[attr-defined]  # noqa: F401
