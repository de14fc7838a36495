"""Durable writes: group commit against commit-per-write, and open time on a big database.

1. 100 concurrent callers increment counters spread over 10,000 sessions in
   commit mode (each reply only after its state committed with
   synchronous=FULL). Baseline in the same run: the same session objects, a
   lock per session, and every write committed in its own transaction on the
   same SQLite store and thread (same settings). Reports writes/s and ack
   latency p50/p99, medians over rounds.
2. Time to open a database of 1,000,000 sessions and answer the first call.

    python benchmarks/bench_durable.py [--quick] [--backend trio|asyncio]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio

import actorstate
from actorstate.backend import parking_for_current_backend
from actorstate.config import Config
from actorstate.model.codec import encode_session
from actorstate.model.session_state import SessionState, check_key
from actorstate.store.interface import SnapshotWrite, WriteOutcome
from actorstate.store.threaded import open_sqlite_store

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CALLERS = 100
SESSIONS = 10_000


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def run_group_commit(path: str, ids: list[str], ops_per_caller: int) -> dict[str, float]:
    config = Config(max_resident=SESSIONS * 2, memory_budget_mb=1024)
    async with actorstate.open_state(path, config=config) as state:
        handles = [state.session(session_id) for session_id in ids]
        for handle in handles:  # activate everything first: measure writes, not loads
            await handle.context()

        return await _drive(lambda index: handles[index].increment(), len(handles), ops_per_caller)


async def run_commit_per_write(path: str, ids: list[str], ops_per_caller: int) -> dict[str, float]:
    config = Config()
    store = await open_sqlite_store(path, parking_for_current_backend())
    states: dict[str, SessionState] = {}
    versions: dict[str, int] = {}
    locks: dict[str, anyio.Lock] = {}
    for session_id in ids:
        row = await store.load(session_id)
        assert row is not None
        from actorstate.model.codec import decode_session

        states[session_id] = decode_session(row.state)
        versions[session_id] = row.version
        locks[session_id] = anyio.Lock()

    async def increment(session_id: str) -> int:
        check_key("counter", config)
        async with locks[session_id]:
            state = states[session_id]
            value = state.increment("counter", 1, time.time(), config)
            write = SnapshotWrite(
                session_id,
                state.client_id,
                versions[session_id],
                encode_session(state),
                state.created_at,
                state.last_activity,
                False,
            )
            (outcome,) = await store.write([write], time.time())
            assert outcome is WriteOutcome.COMMITTED
            versions[session_id] += 1
            return value

    try:
        return await _drive(lambda index: increment(ids[index]), len(ids), ops_per_caller)
    finally:
        await store.close()


async def _drive(
    write: Callable[[int], Awaitable[Any]], sessions: int, ops_per_caller: int
) -> dict[str, float]:
    """CALLERS concurrent callers, each writing to random sessions; rate and ack latencies."""
    latencies: list[float] = []

    async def caller(index: int) -> None:
        rng = random.Random(index)
        for _ in range(ops_per_caller):
            started = time.perf_counter()
            await write(rng.randrange(sessions))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index in range(CALLERS):
            tg.start_soon(caller, index)
    return _summary(CALLERS * ops_per_caller / (time.perf_counter() - started), latencies)


def _summary(rate: float, latencies: list[float]) -> dict[str, float]:
    return {
        "rate": rate,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


async def _make_sessions(path: str, count: int) -> list[str]:
    async with actorstate.open_state(path, config=Config(max_resident=count * 2)) as state:
        return [(await state.create_session()).id for _ in range(count)]


def durable_table(
    backend: str, rounds: int, ops: int, baseline_ops: int, workdir: str
) -> list[dict[str, Any]]:
    path = os.path.join(workdir, f"durable-{backend}.db")
    ids = anyio.run(_make_sessions, path, SESSIONS, backend=backend)
    group, single = [], []
    for _ in range(rounds):
        single.append(anyio.run(run_commit_per_write, path, ids, baseline_ops, backend=backend))
        group.append(anyio.run(run_group_commit, path, ids, ops, backend=backend))
    rows = []
    for name, results in (("group commit", group), ("commit per write", single)):
        rows.append(
            {
                "backend": backend,
                "design": name,
                "rate": statistics.median(r["rate"] for r in results),
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
            }
        )
    return rows


def build_big_database(path: str, count: int) -> str:
    """Write ``count`` realistic small sessions straight into a database; return one id."""

    async def create_schema() -> None:
        async with actorstate.open_state(path):
            pass

    anyio.run(create_schema)
    template = SessionState("00000000-0000-4000-8000-000000000000", "anonymous", time.time())
    template.metadata = {"topic": "billing", "counter": 3}
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    some_id = ""
    batch = []
    now = time.time()
    for index in range(count):
        session_id = str(uuid.uuid4())
        template.id = session_id
        batch.append((session_id, "anonymous", 1, encode_session(template), now, now, None))
        if index == count // 2:
            some_id = session_id
        if len(batch) == 10_000:
            db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return some_id


async def open_and_first_call(path: str, session_id: str) -> tuple[float, float]:
    started = time.perf_counter()
    async with actorstate.open_state(path) as state:
        opened = time.perf_counter()
        context = await state.session(session_id).context()
        answered = time.perf_counter()
        assert context["metadata"]["counter"] == 3
    return opened - started, answered - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 100,000-session open test")
    parser.add_argument("--backend", choices=["trio", "asyncio"], action="append")
    parser.add_argument("--dir", help="where to put the databases (default: a temporary directory)")
    args = parser.parse_args()
    backends = args.backend or ["trio", "asyncio"]
    rounds, ops, baseline_ops = (1, 100, 10) if args.quick else (3, 400, 30)
    big = 100_000 if args.quick else 1_000_000

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        print(
            f"durable writes: {CALLERS} callers over {SESSIONS:,} sessions, commit mode "
            f"(WAL, synchronous=FULL), median of {rounds} rounds; databases in {workdir}\n"
        )
        print(f"{'backend':8} {'design':18} {'writes/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for backend in backends:
            rows = durable_table(backend, rounds, ops, baseline_ops, workdir)
            for row in rows:
                print(
                    f"{row['backend']:8} {row['design']:18} {row['rate']:>10,.0f} "
                    f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
                )
            print(f"{'':8} {'ratio':18} {rows[0]['rate'] / rows[1]['rate']:>9.1f}x")
        path = os.path.join(workdir, "big.db")
        started = time.perf_counter()
        session_id = build_big_database(path, big)
        print(
            f"\nopen a database of {big:,} sessions ({os.path.getsize(path) / 2**20:,.0f} MB, "
            f"built in {time.perf_counter() - started:.0f} s) and answer the first call:"
        )
        for backend in backends:
            opened, answered = anyio.run(open_and_first_call, path, session_id, backend=backend)
            print(
                f"{backend:8} open {opened * 1000:7.1f} ms   first call answered at {answered * 1000:7.1f} ms"
            )


if __name__ == "__main__":
    main()
