"""Contention: many concurrent callers on one hot session, or spread over many sessions.

In process and in memory (no store), on trio and asyncio: actorstate's
actors against a dict with one lock per session (``baselines/lock_dict``),
both running the same ``SessionState`` operations on the same planned
calls. A write-heavy mix is 90 % increments and 10 % reads of the context;
a read-heavy mix the reverse. After every run each session's counter must
equal the increments planned on it.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import actorstate
from actorstate.config import Config
from benchmarks.baselines.lock_dict import LockedSessions
from benchmarks.drivers import closed_loop, run_measurement
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
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

READ_SHARE = {"write-heavy": 0.1, "read-heavy": 0.9}
ACTORSTATE, LOCKS = "actorstate", "dict + lock per session"

# A planned call: the session's index, and whether it reads (else it increments).
Call = tuple[int, bool]


def plan_calls(callers: int, sessions: int, total: int, read_share: float, seed: int) -> list[list[Call]]:
    """Each caller's calls, drawn before the clock starts (sessions uniformly)."""
    rng = random.Random(seed)
    each = max(1, total // callers)
    return [
        [(rng.randrange(sessions), rng.random() < read_share) for _ in range(each)] for _ in range(callers)
    ]


def expected_counters(plan: list[list[Call]], sessions: int) -> list[int]:
    counts = [0] * sessions
    for calls in plan:
        for session, reads in calls:
            counts[session] += not reads
    return counts


def check(found: list[int], expected: list[int], system: str) -> None:
    if found != expected:
        wrong = next(index for index, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b)
        raise BenchmarkFailure(
            f"{system}: session {wrong}'s counter is {found[wrong]} after {expected[wrong]} increments"
        )


async def run_actors(plan: list[list[Call]], sessions: int) -> Figures:
    config = Config(max_resident=max(10_000, sessions), memory_budget_mb=4096)
    async with actorstate.open_state(config=config) as state:
        handles = [await state.create_session("bench") for _ in range(sessions)]

        async def call(planned: Call) -> object:
            session, reads = planned
            handle = handles[session]
            return await (handle.context() if reads else handle.increment())

        figures = await closed_loop(plan, call)
        counters = [(await handle.context(1))["metadata"].get("counter", 0) for handle in handles]
    check(counters, expected_counters(plan, sessions), ACTORSTATE)
    return figures


async def run_locks(plan: list[list[Call]], sessions: int) -> Figures:
    locked = LockedSessions(sessions)
    ids = locked.ids

    async def call(planned: Call) -> object:
        session, reads = planned
        return await (locked.context(ids[session]) if reads else locked.increment(ids[session]))

    figures = await closed_loop(plan, call)
    check([locked.counter(i) for i in ids], expected_counters(plan, sessions), LOCKS)
    return figures


SYSTEMS: dict[str, Callable[[list[list[Call]], int], Awaitable[Figures]]] = {
    ACTORSTATE: run_actors,
    LOCKS: run_locks,
}


def case(backend: str, mix: str, callers: int, sessions: int, total: int, params: dict[str, object]) -> Case:
    def measure(name: str) -> Callable[[int], Figures]:
        def one(number: int) -> Figures:
            plan = plan_calls(callers, sessions, total, READ_SHARE[mix], seed=number)
            return run_measurement(SYSTEMS[name], plan, sessions, backend=backend, what=name)

        return one

    return Case(params, {name: measure(name) for name in SYSTEMS}, baseline=LOCKS, ours=[ACTORSTATE])


METRICS = (RATE, P50, P99, P999)


class Contention(Scenario):
    name = "contention"
    title = "Contention: concurrent callers on one hot session"
    about = (
        "1 to 1,000 concurrent callers all calling one session, in memory, against a dict with one "
        "lock per session running the same operations. Write-heavy: 90 % `increment`, 10 % `context`; "
        "read-heavy: the reverse. Checked after every run: the counter equals the increments made."
    )
    metrics = METRICS
    x = "callers"
    plot_metrics = ("rate", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        total = 4_000 if plan.quick else 40_000
        counts = (1, 100) if plan.quick else (1, 10, 100, 1_000)
        return [
            case(backend, mix, callers, 1, total, {"backend": backend, "mix": mix, "callers": callers})
            for backend in self.backends
            for mix in READ_SHARE
            for callers in counts
        ]


class Spread(Scenario):
    name = "spread"
    title = "Contention spread: 1,000 callers over many sessions"
    about = (
        "1,000 concurrent callers, each call on a session drawn uniformly from 100, 10,000 or 100,000 "
        "resident sessions, in memory, against a dict with one lock per session. Mixes as in "
        "`contention`. Checked after every run: every session's counter equals the increments made on it."
    )
    metrics = METRICS
    x = "sessions"
    plot_metrics = ("rate", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        total = 4_000 if plan.quick else 40_000
        counts = (100, 10_000) if plan.quick else (100, 10_000, 100_000)
        return [
            case(backend, mix, 1_000, sessions, total, {"backend": backend, "mix": mix, "sessions": sessions})
            for backend in self.backends
            for mix in READ_SHARE
            for sessions in counts
        ]
