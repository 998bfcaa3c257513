"""Many processes opening one new SQLite journal at once all get it open.

The first open of a new file switches it to WAL, which needs the file's
exclusive lock. SQLite answers "database is locked" at once, without its
busy handler, to an opener that holds the shared lock while another waits
for the exclusive one: 8 threads opening one new file together hit that 49
times in 200, with a 5 s busy timeout. `_switch_to_wal` tries again until
the busy timeout has passed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from sendblue_lines import SQLiteJournal
from sendblue_lines.journal import _sqlite

OPENERS = 8
TRIALS = 25


def _open_together(path: Path) -> list[BaseException]:
    """Open `OPENERS` journals on `path` at one moment; the failures."""
    barrier = threading.Barrier(OPENERS, timeout=30)
    failures: list[BaseException] = []

    async def open_one() -> None:
        journal = SQLiteJournal(path, busy_timeout=10)
        barrier.wait()
        async with journal:
            pass

    def opener() -> None:
        try:
            anyio.run(open_one)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on
            failures.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return failures


def test_openers_of_one_new_file_all_get_it_open(tmp_path: Path) -> None:
    """25 times, 8 openers of a new file at once: none fails, the file is WAL."""
    for trial in range(TRIALS):
        path = tmp_path / f"journal-{trial}.sqlite3"
        failures = _open_together(path)
        assert failures == [], f"trial {trial}: {failures[0]!r}"
        with contextlib.closing(sqlite3.connect(path)) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


class _Locked:
    """A connection whose WAL switch is refused `times` times, then granted."""

    def __init__(self, times: int, error: str = "database is locked") -> None:
        self.left = times
        self.error = error
        self.tries = 0

    def execute(self, statement: str) -> Any:
        assert statement == "PRAGMA journal_mode = WAL"
        self.tries += 1
        if self.left > 0:
            self.left -= 1
            raise sqlite3.OperationalError(self.error)
        return self

    def fetchone(self) -> tuple[str]:
        return ("wal",)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the switch makes, on a clock that each pause moves on."""
    now = [1000.0]
    made: list[float] = []

    def sleep(seconds: float) -> None:
        made.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(_sqlite.time, "sleep", sleep)
    monkeypatch.setattr(_sqlite._clock, "monotonic", lambda: now[0])
    return made


def test_a_locked_switch_is_tried_again_with_growing_pauses(
    pauses: list[float],
) -> None:
    """Refused 8 times: tried 9 times, pausing 1, 2, 4 ... ms, at most 50 ms."""
    connection = _Locked(8)
    assert _sqlite._switch_to_wal(connection, timeout=5.0) == "wal"  # type: ignore[arg-type]
    assert connection.tries == 9
    assert pauses == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05]


def test_a_switch_still_locked_at_the_timeout_raises(pauses: list[float]) -> None:
    """Locked for good: the error is raised once the pauses reach the timeout."""
    connection = _Locked(10_000)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        _sqlite._switch_to_wal(connection, timeout=0.5)  # type: ignore[arg-type]
    assert 0.45 <= sum(pauses) <= 0.5
    assert connection.tries == len(pauses) + 1


def test_another_failure_of_the_switch_is_not_tried_again(
    pauses: list[float],
) -> None:
    """Only "locked" is waited out: any other error is raised at once."""
    connection = _Locked(1, error="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        _sqlite._switch_to_wal(connection, timeout=5.0)  # type: ignore[arg-type]
    assert connection.tries == 1
    assert pauses == []
