"""Durable writes: group commit against commit-per-write, closed loop and open loop.

Both systems acknowledge a write only once it is committed (SQLite, WAL,
synchronous=FULL) on the same store; after every run, while the system
still holds the file open (its close would flush whatever was pending), the
file is read through a read-only connection of its own and each session's
counter must equal the increments acknowledged on it: every acknowledged
write was committed when it was acknowledged.

- ``durable`` (closed loop): 100 callers each waiting for their reply
  before the next write, the very same writes for both systems: how many
  durable writes per second.
- ``ack-latency`` (open loop): writes arrive at a fixed rate whatever the
  replies do, and each latency runs from the moment the write was due, not
  from when a busy client got round to sending it. A closed-loop client
  slows down with the server and hides its stalls (coordinated omission);
  here a system that cannot keep up shows it as latency that grows.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable

import actorstate
from actorstate.config import Config
from benchmarks.baselines.commit_per_write import open_commit_per_write
from benchmarks.databases import check_stored, copy, template
from benchmarks.drivers import closed_loop, open_loop, run_measurement
from benchmarks.stats import OVERLOADED
from benchmarks.suite import P50, P99, P999, RATE, Case, Figures, Plan, Scenario

GROUP, SINGLE = "group commit (actorstate)", "commit per write"
CALLERS = 100
QUICK_EACH, FULL_EACH = 10, 100  # closed loop: writes per caller
# A write: call ``increment`` on the session at this index.
Write = Callable[[int], Awaitable[object]]


# Drives the writes; then, the system still open, checks the file (``databases.check_stored``).
Drive = Callable[[Write], Awaitable[Figures]]
Check = Callable[[], None]


async def with_group_commit(path: str, ids: list[str], drive: Drive, check: Check) -> Figures:
    config = Config(max_resident=len(ids) * 2, memory_budget_mb=4096)
    async with actorstate.open_state(path, durability="commit", config=config) as state:
        handles = [state.session(session_id, "bench") for session_id in ids]
        for handle in handles:  # activate every session first: measure writes, not loads
            await handle.context(1)
        figures = await drive(lambda index: handles[index].increment())
        check()  # before the close, which would flush what is pending
    return figures


async def with_commit_per_write(path: str, ids: list[str], drive: Drive, check: Check) -> Figures:
    async with open_commit_per_write(path) as sessions:
        await sessions.preload(ids)
        figures = await drive(lambda index: sessions.increment(ids[index]))
        check()
    return figures


SYSTEMS = {GROUP: with_group_commit, SINGLE: with_commit_per_write}


def measure(
    plan: Plan,
    backend: str,
    name: str,
    sessions: int,
    workload: Callable[[int], tuple[list[int], Drive]],
) -> Callable[[int], Figures]:
    """One run of ``name``: a fresh copy of the template, the workload, the file checked before
    the system closes it."""
    source, ids = template(plan, "durable", sessions)
    system = SYSTEMS[name]

    def one(number: int) -> Figures:
        path = copy(source, os.path.join(plan.workdir, f"run-{backend}.db"))
        written, drive = workload(number)
        expected = [0] * len(ids)
        for session in written:
            expected[session] += 1

        def check() -> None:
            check_stored(path, ids, expected, name)

        return run_measurement(system, path, ids, drive, check, backend=backend, what=name)

    return one


class Durable(Scenario):
    name = "durable"
    title = "Durable writes: group commit against commit per write (closed loop)"
    about = (
        f"{CALLERS} callers, each writing (`increment`) to sessions drawn uniformly from the case's, one "
        "write after the other, every reply only after its write committed (SQLite, WAL, "
        "synchronous=FULL). Against: the same sessions in a dict with a lock each, every write "
        "committed in its own transaction on the same store; both make the very same writes "
        f"({CALLERS} x {FULL_EACH}, quick {CALLERS} x {QUICK_EACH}). Checked after every run, before the "
        "system closes the file: a read-only connection of its own finds exactly the acknowledged "
        "increments committed."
    )
    metrics = (RATE, P50, P99, P999)
    plot_metrics = ("rate", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        sessions = 1_000 if plan.quick else 10_000
        # Both systems make the same writes (so their percentiles rest on as many samples):
        # as many as the baseline, committing one per transaction, makes in a few seconds.
        each = QUICK_EACH if plan.quick else FULL_EACH

        def workload(number: int) -> tuple[list[int], Drive]:
            rng = random.Random(number)
            calls = [[rng.randrange(sessions) for _ in range(each)] for _ in range(CALLERS)]
            return [s for caller in calls for s in caller], lambda write: closed_loop(calls, write)

        return [
            Case(
                {"backend": backend, "sessions": sessions},
                {name: measure(plan, backend, name, sessions, workload) for name in SYSTEMS},
                baseline=SINGLE,
                ours=[GROUP],
            )
            for backend in self.backends
        ]


class AckLatency(Scenario):
    name = "ack-latency"
    title = "Durable ack latency under a fixed offered load (open loop)"
    about = (
        "Increments on sessions drawn uniformly from the case's arrive at a fixed rate whatever the "
        "replies do; each latency counts from the moment the write was due, so a system that falls "
        "behind shows it (no coordinated omission). Group commit against commit per write on the "
        "same store, both acknowledging only committed writes. `ops/s` is the rate achieved; a system "
        f"achieving under {OVERLOADED:.0%} of the offered rate could not keep up and is marked "
        "*overloaded* (its latencies grow with the run's length). Checked after every run, before "
        "the system closes the file: a read-only connection of its own finds exactly the "
        "acknowledged increments committed."
    )
    metrics = (RATE, P50, P99, P999)
    x = "offered/s"
    plot_metrics = ("p50_ms", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        sessions = 1_000 if plan.quick else 10_000
        seconds = 0.3 if plan.quick else 2.0
        rates = (1_000, 3_000) if plan.quick else (1_000, 3_000, 10_000)
        cases = []
        for backend in self.backends:
            for rate in rates:

                def workload(number: int, rate: int = rate) -> tuple[list[int], Drive]:
                    rng = random.Random(number)
                    writes = [rng.randrange(sessions) for _ in range(int(rate * seconds))]
                    return writes, lambda write: open_loop(writes, rate, write)

                systems = {name: measure(plan, backend, name, sessions, workload) for name in SYSTEMS}
                cases.append(
                    Case(
                        {"backend": backend, "sessions": sessions, "offered/s": rate},
                        systems,
                        baseline=SINGLE,
                        ours=[GROUP],
                    )
                )
        return cases
