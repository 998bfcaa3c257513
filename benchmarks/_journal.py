"""6. The journal's cost: the same purchases unjournaled, with SQLite, with PostgreSQL.

Durable purchases (issue 12) write to a journal before every confirm and
after it. This scenario shows what that costs beside the unjournaled flow,
measured the same way as the others, and counts the journal's durable
commits per purchase: every write of a journal (`reserve`, `record_intent`,
`record_outcome`, `release`, `renew`, `claim_orphans`) is one transaction
in both backends, so a wrapper that counts those calls counts the commits.

The SQLite journal is a file in a temporary directory, removed after the
run. The PostgreSQL journal uses `SENDBLUE_LINES_TEST_POSTGRES` (default
``postgresql://postgres@127.0.0.1:5432/test``) and a schema of its own,
dropped after the run; without a server the row is skipped, and the reason
printed.
"""

from __future__ import annotations

import asyncio
import gc
import operator
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

from ._measure import order_for_round
from ._peers import OursPeer, Peer
from ._results import Results, Row, Table
from ._server import Server, running_sandbox

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: The writes of a journal: each is one transaction, so one durable commit.
WRITES = frozenset(
    {"reserve", "release", "record_intent", "record_outcome", "renew", "claim_orphans"}
)
NONE, SQLITE, POSTGRES = "no journal", "SQLiteJournal", "PostgresJournal"

Log = Callable[[str], None]


def postgres_dsn() -> str:
    """The PostgreSQL the benchmark may use (the test suite's variable)."""
    return os.environ.get("SENDBLUE_LINES_TEST_POSTGRES", DEFAULT_DSN)


class CountingJournal:
    """A journal that counts its writes (its commits) and forwards everything."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in WRITES:
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.commits += 1
            return await attribute(*args, **kwargs)

        return counted


class _Journaled(OursPeer):
    """Our Provisioner with a journal of one kind, opened and closed with it."""

    kind: ClassVar[str]

    async def open(self) -> None:
        from sendblue_lines import Journal, LinesClient
        from sendblue_lines.provisioner import Provisioner

        Journal.register(CountingJournal)

        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._schema: str | None = None
        inner = await self._open_journal()
        self.journal = CountingJournal(inner)
        self._client = LinesClient(
            self.server.key_id, self.server.secret, base_url=self.server.url
        )
        counting: Any = self.journal  # a registered Journal, unseen by mypy
        self.provisioner = Provisioner(self._client, journal=counting)

    async def _open_journal(self) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        try:
            await self._client.aclose()
        finally:
            await self.journal.aclose()
            await self._drop()

    async def _drop(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()


class SQLitePeer(_Journaled):
    name = SQLITE
    description = "this SDK with SQLiteJournal (a temporary file)"
    kind = "sqlite"

    async def _open_journal(self) -> Any:
        from sendblue_lines.journal import SQLiteJournal

        self._scratch = tempfile.TemporaryDirectory(prefix="sendblue-bench-journal-")
        return await SQLiteJournal(Path(self._scratch.name) / "journal.db").open()


class PostgresPeer(_Journaled):
    name = POSTGRES
    description = "this SDK with PostgresJournal (a schema of its own)"
    kind = "postgres"

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import asyncpg
        except ImportError:
            return "asyncpg is not installed (pip install 'sendblue-lines[postgres]')"

        async def probe() -> None:
            connection = await asyncpg.connect(postgres_dsn(), timeout=5)
            await connection.close()

        try:
            asyncio.run(asyncio.wait_for(probe(), 10))
        except Exception as exc:  # noqa: BLE001 - any failure means no server
            return f"no PostgreSQL answers at the test DSN ({type(exc).__name__})"
        return None

    async def _open_journal(self) -> Any:
        from sendblue_lines.journal import PostgresJournal

        self._schema = "bench_" + uuid.uuid4().hex[:16]
        return await PostgresJournal(postgres_dsn(), schema=self._schema).open()

    async def _drop(self) -> None:
        if self._schema is None:
            return
        import asyncpg

        connection = await asyncpg.connect(postgres_dsn(), timeout=5)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')
        finally:
            await connection.close()


class UnjournaledPeer(OursPeer):
    name = NONE
    description = "this SDK without a journal"


KINDS: tuple[type[Peer], ...] = (UnjournaledPeer, SQLitePeer, PostgresPeer)


def _rows(results: Results, log: Log) -> list[Row]:
    rows = []
    for peer_class in KINDS:
        reason = peer_class.unavailable()
        if reason:
            note = f"{peer_class.name}: not measured: {reason}"
            log(f"  {note}")
            if note not in results.notes:
                results.notes.append(note)
        rows.append(Row(peer_class.name, skipped=reason))
    return rows


def _commits(peer: Peer) -> int:
    journal = getattr(peer, "journal", None)
    return journal.commits if isinstance(journal, CountingJournal) else 0


async def _sequential_round(
    table: Table, server: Server, flows: int, blocks: int, log: Log
) -> dict[str, dict[str, float]]:
    """All kinds open at once, their flows in alternating blocks (A B C, C B A)."""
    peers: dict[str, Peer] = {}
    totals: dict[str, dict[str, float]] = {}
    per_block = max(flows // blocks, 1)
    classes = {c.name: c for c in KINDS}
    try:
        for row in table.rows:
            if row.skipped:
                continue
            peer = classes[row.name](server)
            await peer.open()
            peers[row.name] = peer
            for _ in range(5):
                await peer.provision()
            totals[row.name] = {"wall": 0.0, "cpu": 0.0, "commits": 0.0}
        gc.collect()
        for block in range(blocks):
            for name in order_for_round(list(peers), block):
                peer, total = peers[name], totals[name]
                commits = _commits(peer)
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(per_block):
                    await peer.provision()
                total["wall"] += time.perf_counter() - wall
                total["cpu"] += time.process_time() - cpu
                total["commits"] += _commits(peer) - commits
    finally:
        for name, peer in peers.items():
            await _close(name, peer, log)
    return totals


async def _close(name: str, peer: Peer, log: Log) -> None:
    try:
        await peer.close()
    except Exception as exc:  # noqa: BLE001 - the figures still stand
        log(f"  {name}: closing failed: {exc!r}")


def sequential(
    results: Results, flows: int, blocks: int, rounds: int, log: Log
) -> None:
    """provision() one after the other, zero latency, by journal kind."""
    flows -= flows % blocks
    table = Table(
        title=f"Journal: {flows:,} sequential provision(), zero latency",
        unit="s",
        rows=_rows(results, log),
        params={"flows": flows, "blocks": blocks},
    )
    results.tables["journal_sequential"] = table
    log(f"[6/6] journal: {flows} sequential provision() per kind x {rounds}")
    for round_index in range(rounds):
        with running_sandbox() as server:
            totals = asyncio.run(_sequential_round(table, server, flows, blocks, log))
        for name, total in totals.items():
            row = table.row(name)
            assert row is not None
            row.add(
                total["wall"],
                wall_per_purchase_us=total["wall"] / flows * 1e6,
                cpu_per_purchase_us=total["cpu"] / flows * 1e6,
                commits_per_purchase=total["commits"] / flows,
            )
            log(
                f"  round {round_index + 1}/{rounds} {name:<16} "
                f"{total['wall'] / flows * 1e6:7.0f} µs/purchase, "
                f"{total['commits'] / flows:.2f} commits/purchase"
            )


def batch(
    results: Results,
    count: int,
    concurrency: int,
    latency_ms: int,
    rounds: int,
    log: Log,
) -> None:
    """A batch against latency, by journal kind, interleaved round by round."""
    table = Table(
        title=f"Journal: batch of {count} at concurrency {concurrency}, "
        f"{latency_ms} ms",
        unit="s",
        rows=_rows(results, log),
        params={"count": count, "concurrency": concurrency, "latency_ms": latency_ms},
    )
    results.tables["journal_batch"] = table
    log(
        f"[6/6] journal: batch of {count} at concurrency {concurrency}, "
        f"{latency_ms} ms, x {rounds}"
    )

    async def run_one(peer_class: type[Peer], server: Server) -> dict[str, float]:
        async with peer_class(server) as peer:
            await peer.provision_many(concurrency, concurrency)
            gc.collect()
            commits = _commits(peer)
            wall = time.perf_counter()
            bought = await peer.provision_many(count, concurrency)
            wall = time.perf_counter() - wall
            commits = _commits(peer) - commits
        if bought != count:
            raise RuntimeError(f"bought {bought} of {count}")
        return {"wall": wall, "commits_per_purchase": commits / count}

    classes = {c.name: c for c in KINDS}
    for round_index in range(rounds):
        with running_sandbox(latency_ms=latency_ms) as server:
            for name in order_for_round(list(classes), round_index):
                row = table.row(name)
                assert row is not None
                if row.skipped:
                    continue
                try:
                    measured = asyncio.run(_bounded(run_one(classes[name], server)))
                except Exception as exc:  # noqa: BLE001 - reported as the row's note
                    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    row.skipped = f"failed: {reason}"
                    results.failures.append(f"{table.title} / {name}: {reason}")
                    log(f"  {name}: FAILED {reason}")
                    continue
                row.add(measured.pop("wall"), **measured)
                log(
                    f"  round {round_index + 1}/{rounds} {name:<16} "
                    f"{row.values[-1]:.3f} s"
                )


async def _bounded(work: Coroutine[Any, Any, dict[str, float]]) -> dict[str, float]:
    return await asyncio.wait_for(work, 300)


def paired_ratio(table: Table, name: str, base: str = NONE) -> float | None:
    """The median over rounds of `name` ÷ `base` (both ran in each round)."""
    ratios = table.pairs(name, base, operator.truediv)
    return None if ratios is None else statistics.median(ratios)


def journal(results: Results, settings: Any, log: Log) -> None:
    """Scenario 6: the journal's cost, sequential and in a batch."""
    sequential(
        results,
        settings.journal_flows,
        settings.journal_blocks,
        settings.journal_rounds,
        log,
    )
    batch(
        results,
        settings.batch_count,
        20,
        settings.batch_latency_ms,
        settings.journal_batch_rounds,
        log,
    )
