"""Durable writes: group commit against commit-per-write, closed loop and open loop.

Both systems acknowledge a write only once it is committed (SQLite, WAL,
synchronous=FULL) on the same store; after every run the database file is
read back and each session's counter must equal the increments acknowledged
on it: nothing acknowledged is lost.

- ``durable`` (closed loop): 100 callers each waiting for their reply
  before the next write: how many durable writes per second.
- ``ack-latency`` (open loop): writes arrive at a fixed rate whatever the
  replies do, and each latency runs from the moment the write was due, not
  from when a busy client got round to sending it. A closed-loop client
  slows down with the server and hides its stalls (coordinated omission);
  here a system that cannot keep up shows it as latency that grows.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable

import anyio

import actorstate
from actorstate.config import Config
from benchmarks.baselines.commit_per_write import open_commit_per_write
from benchmarks.databases import copy, stored_counters, template
from benchmarks.suite import (
    P50,
    P99,
    P999,
    RATE,
    BenchmarkFailure,
    Case,
    Figures,
    Plan,
    Scenario,
    latency_figures,
)

GROUP, SINGLE = "group commit (actorstate)", "commit per write"
CALLERS = 100
# A write: call ``increment`` on the session at this index.
Write = Callable[[int], Awaitable[object]]


async def closed_loop(plan: list[list[int]], write: Write) -> Figures:
    """Each caller makes its writes one after the other; rate and latency."""
    latencies: list[float] = []
    clock = time.perf_counter

    async def caller(sessions: list[int]) -> None:
        for session in sessions:
            started = clock()
            await write(session)
            latencies.append(clock() - started)

    started = clock()
    async with anyio.create_task_group() as tg:
        for sessions in plan:
            tg.start_soon(caller, sessions)
    return {"rate": len(latencies) / (clock() - started), **latency_figures(latencies)}


async def open_loop(sessions: list[int], rate: float, write: Write) -> Figures:
    """Start write ``i`` at ``i / rate`` seconds whatever came back; latency from when it was due."""
    latencies = [0.0] * len(sessions)
    clock = time.perf_counter

    async def one(index: int, due: float) -> None:
        await write(sessions[index])
        latencies[index] = clock() - due

    start = clock()
    async with anyio.create_task_group() as tg:
        index = 0
        while index < len(sessions):
            now = clock()
            # Every write already due starts now: a late wake-up must not
            # lower the offered rate.
            while index < len(sessions) and start + index / rate <= now:
                tg.start_soon(one, index, start + index / rate)
                index += 1
            if index < len(sessions):
                await anyio.sleep(max(0.0, start + index / rate - clock()))
    return {"rate": len(sessions) / (clock() - start), **latency_figures(latencies)}


def check_stored(path: str, ids: list[str], written: list[int], system: str) -> None:
    """Every session's counter in the file equals the writes acknowledged on it."""
    expected = [0] * len(ids)
    for session in written:
        expected[session] += 1
    stored = stored_counters(path)
    for index, session_id in enumerate(ids):
        if stored.get(session_id) != expected[index]:
            raise BenchmarkFailure(
                f"{system}: session {session_id} holds counter {stored.get(session_id)} in the database "
                f"after {expected[index]} acknowledged increments"
            )


async def with_group_commit(
    path: str, ids: list[str], drive: Callable[[Write], Awaitable[Figures]]
) -> Figures:
    config = Config(max_resident=len(ids) * 2, memory_budget_mb=4096)
    async with actorstate.open_state(path, durability="commit", config=config) as state:
        handles = [state.session(session_id, "bench") for session_id in ids]
        for handle in handles:  # activate every session first: measure writes, not loads
            await handle.context(1)
        return await drive(lambda index: handles[index].increment())


async def with_commit_per_write(
    path: str, ids: list[str], drive: Callable[[Write], Awaitable[Figures]]
) -> Figures:
    async with open_commit_per_write(path) as sessions:
        await sessions.preload(ids)
        return await drive(lambda index: sessions.increment(ids[index]))


SYSTEMS = {GROUP: with_group_commit, SINGLE: with_commit_per_write}


def measure(
    plan: Plan,
    backend: str,
    name: str,
    sessions: int,
    workload: Callable[[int], tuple[list[int], Callable[[Write], Awaitable[Figures]]]],
) -> Callable[[int], Figures]:
    """One run of ``name``: a fresh copy of the template, the workload, the file checked after."""
    source, ids = template(plan, "durable", sessions)
    system = SYSTEMS[name]

    def one(number: int) -> Figures:
        path = copy(source, os.path.join(plan.workdir, f"run-{backend}.db"))
        written, drive = workload(number)
        figures = anyio.run(system, path, ids, drive, backend=backend)
        check_stored(path, ids, written, name)
        return figures

    return one


class Durable(Scenario):
    name = "durable"
    title = "Durable writes: group commit against commit per write (closed loop)"
    about = (
        f"{CALLERS} callers, each writing (`increment`) to sessions drawn uniformly from the case's, one "
        "write after the other, every reply only after its write committed (SQLite, WAL, "
        "synchronous=FULL). Against: the same sessions in a dict with a lock each, every write "
        "committed in its own transaction on the same store. Checked after every run: the database "
        "file holds exactly the acknowledged increments."
    )
    metrics = (RATE, P50, P99, P999)
    plot_metrics = ("rate", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        sessions = 1_000 if plan.quick else 10_000
        cases = []
        for backend in self.backends:
            # The baseline commits one write per transaction: it gets fewer
            # writes, so a run takes about as long as group commit's.
            systems = {}
            for name, each in ((GROUP, 40 if plan.quick else 400), (SINGLE, 4 if plan.quick else 40)):

                def workload(
                    number: int, each: int = each
                ) -> tuple[list[int], Callable[[Write], Awaitable[Figures]]]:
                    rng = random.Random(number)
                    calls = [[rng.randrange(sessions) for _ in range(each)] for _ in range(CALLERS)]
                    return [s for caller in calls for s in caller], lambda write: closed_loop(calls, write)

                systems[name] = measure(plan, backend, name, sessions, workload)
            cases.append(Case({"backend": backend, "sessions": sessions}, systems, baseline=SINGLE))
        return cases


class AckLatency(Scenario):
    name = "ack-latency"
    title = "Durable ack latency under a fixed offered load (open loop)"
    about = (
        "Increments on sessions drawn uniformly from the case's arrive at a fixed rate whatever the "
        "replies do; each latency counts from the moment the write was due, so a system that falls "
        "behind shows it (no coordinated omission). Group commit against commit per write on the "
        "same store, both acknowledging only committed writes. `ops/s` is the rate achieved; below "
        "the offered rate, the system could not keep up. Checked after every run: the database file "
        "holds exactly the acknowledged increments."
    )
    metrics = (RATE, P50, P99, P999)
    x = "offered/s"
    plot_metrics = ("p50_ms", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        sessions = 1_000 if plan.quick else 10_000
        seconds = 0.5 if plan.quick else 2.0
        rates = (1_000, 3_000) if plan.quick else (1_000, 3_000, 10_000)
        cases = []
        for backend in self.backends:
            for rate in rates:

                def workload(
                    number: int, rate: int = rate
                ) -> tuple[list[int], Callable[[Write], Awaitable[Figures]]]:
                    rng = random.Random(number)
                    writes = [rng.randrange(sessions) for _ in range(int(rate * seconds))]
                    return writes, lambda write: open_loop(writes, rate, write)

                systems = {name: measure(plan, backend, name, sessions, workload) for name in SYSTEMS}
                cases.append(
                    Case(
                        {"backend": backend, "sessions": sessions, "offered/s": rate},
                        systems,
                        baseline=SINGLE,
                    )
                )
        return cases
