"""Ask throughput of session actors against a lock-per-session baseline.

Workload: 100 concurrent callers, each calling ``increment`` in a loop, spread
over 1, 100 and 10,000 sessions. The baseline runs the same operation on the
same ``SessionState`` objects, kept in a dict and guarded by one anyio lock
per session (the usual design). Both run in the same process, alternately,
and the table reports medians of several rounds and their ratio.

Also measured, each in a fresh subprocess: RSS per idle resident session at
100,000 sessions.

    python benchmarks/bench_actors.py [--quick] [--backend trio|asyncio]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import anyio

import actorstate
from actorstate.config import Config
from actorstate.model.session_state import SessionState, check_key

CALLERS = 100


async def run_actor(sessions: int, ops_per_caller: int) -> float:
    config = Config(max_resident=max(10_000, sessions), memory_budget_mb=1024)
    async with actorstate.open_state(config=config) as state:
        handles = [await state.create_session() for _ in range(sessions)]

        async def caller(index: int) -> None:
            for op in range(ops_per_caller):
                await handles[(index + op * CALLERS) % sessions].increment()

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(CALLERS):
                tg.start_soon(caller, index)
        elapsed = time.perf_counter() - start
        total = sum([(await h.context())["metadata"]["counter"] for h in handles])
        assert total == CALLERS * ops_per_caller, total
    return CALLERS * ops_per_caller / elapsed


async def run_lock_baseline(sessions: int, ops_per_caller: int) -> float:
    config = Config()
    states = {}
    locks = {}
    ids = []
    for index in range(sessions):
        session_id = f"{index:08d}-0000-4000-8000-000000000000"
        states[session_id] = SessionState(session_id, "anonymous", time.time())
        locks[session_id] = anyio.Lock()
        ids.append(session_id)

    async def increment(session_id: str, key: str = "counter", by: int = 1) -> int:
        check_key(key, config)
        async with locks[session_id]:
            return states[session_id].increment(key, by, time.time(), config)

    async def caller(index: int) -> None:
        for op in range(ops_per_caller):
            await increment(ids[(index + op * CALLERS) % sessions])

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index in range(CALLERS):
            tg.start_soon(caller, index)
    elapsed = time.perf_counter() - start
    assert sum(s.metadata["counter"] for s in states.values()) == CALLERS * ops_per_caller
    return CALLERS * ops_per_caller / elapsed


def throughput_table(backend: str, rounds: int, ops_per_caller: int) -> list[dict[str, Any]]:
    rows = []
    for sessions in (1, 100, 10_000):
        actor_rates, lock_rates = [], []
        for _ in range(rounds):
            gc.collect()
            lock_rates.append(anyio.run(run_lock_baseline, sessions, ops_per_caller, backend=backend))
            gc.collect()
            actor_rates.append(anyio.run(run_actor, sessions, ops_per_caller, backend=backend))
        actor, lock = statistics.median(actor_rates), statistics.median(lock_rates)
        rows.append(
            {"backend": backend, "sessions": sessions, "actor": actor, "lock": lock, "ratio": actor / lock}
        )
    return rows


async def _fill_sessions(count: int) -> None:
    config = Config(max_resident=count + 1, memory_budget_mb=4096)
    async with actorstate.open_state(config=config) as state:
        gc.collect()
        before = _rss()
        for _ in range(count):
            session = await state.create_session("client")
            await session.increment()
        gc.collect()
        after = _rss()
        stats = state.stats()
        print(
            json.dumps(
                {
                    "rss_per_session": (after - before) / count,
                    "accounted_per_session": stats["accounted_bytes"] / count,
                }
            )
        )


def _rss() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_per_session(backend: str, count: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--fill", str(count), "--backend", backend],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and operations")
    parser.add_argument("--backend", choices=["trio", "asyncio"], action="append")
    parser.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = args.backend or ["trio", "asyncio"]
    if args.fill:
        anyio.run(_fill_sessions, args.fill, backend=backends[0])
        return

    rounds, ops = (3, 200) if args.quick else (5, 1000)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    print(f"ask throughput: {CALLERS} concurrent callers, {ops} increments each, median of {rounds} rounds\n")
    print(f"{'backend':8} {'sessions':>8} {'actors/s':>10} {'lock/s':>10} {'ratio':>6}")
    for backend in backends:
        for row in throughput_table(backend, rounds, ops):
            print(
                f"{row['backend']:8} {row['sessions']:>8} {row['actor']:>10,.0f} {row['lock']:>10,.0f} {row['ratio']:>5.2f}x"
            )
    print("\nmemory: RSS per idle resident session (one counter each), 100,000 sessions")
    for backend in backends:
        result = memory_per_session(backend, 100_000)
        print(
            f"{backend:8} {result['rss_per_session']:>8,.0f} B RSS   {result['accounted_per_session']:>8,.0f} B accounted"
        )


if __name__ == "__main__":
    main()
