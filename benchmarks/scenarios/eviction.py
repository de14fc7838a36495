"""Eviction churn: a working set larger than the memory budget.

Calls land uniformly on a working set of sessions about ten times larger
than the memory budget holds, so actors are evicted and activated again
all the time. Against, on the same calls and the same kind of database:
actorstate with a budget that holds every session (the upper bound: no
churn at all), and a commit-per-write design with no cache, which never
runs out of memory because it reads the row on every call.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable

import actorstate
from actorstate.config import Config
from benchmarks.baselines.commit_per_write import open_commit_per_write
from benchmarks.databases import check_stored, copy, template
from benchmarks.drivers import closed_loop, run_measurement
from benchmarks.suite import P50, P99, P999, RATE, BenchmarkFailure, Case, Figures, Metric, Plan, Scenario

CHURN, RESIDENT, NO_CACHE = (
    "actorstate, budget < working set",
    "actorstate, all resident",
    "no cache, commit per write",
)
CALLERS = 100
PAYLOAD = 1_000  # bytes of notes per session (the notes and the event that set them)
RESIDENT_SHARE = 0.1  # the budget holds about this share of the working set
# Sessions loaded from the store per call: per call, not per second (per second would reward a
# slow system for loading less often).
ACTIVATIONS = Metric("activations_per_call", "activations", "/call", "lower")

# A call: the session's index and whether it reads (else it increments).
Call = tuple[int, bool]


async def accounted_per_session(path: str, ids: list[str]) -> float:
    """What actorstate accounts for one of these sessions in memory (measured, not guessed)."""
    sample = ids[:200]
    async with actorstate.open_state(path, config=Config(max_resident=len(ids) * 2)) as state:
        for session_id in sample:
            await state.session(session_id, "bench").context(1)
        accounted: int = state.stats()["accounted_bytes"]
    return accounted / len(sample)


# Checks the file while the system still holds it open (``databases.check_stored``).
Check = Callable[[], None]


async def run_actorstate(
    path: str, ids: list[str], plan: list[list[Call]], budget_bytes: float, check: Check
) -> Figures:
    config = Config(max_resident=len(ids) * 2, memory_budget_mb=budget_bytes / 2**20)
    async with actorstate.open_state(path, durability="commit", config=config) as state:
        handles = [state.session(session_id, "bench") for session_id in ids]
        for handle in handles:  # every session once: all resident, or the budget full
            await handle.context(1)

        async def call(planned: Call) -> object:
            session, reads = planned
            handle = handles[session]
            return await (handle.context(1) if reads else handle.increment())

        before = state.stats()["activations"]
        figures = await closed_loop(plan, call)
        stats = state.stats()
        check()  # before the close, which would flush what is pending
    figures["activations"] = stats["activations"] - before
    figures["activations_per_call"] = figures["activations"] / figures["calls"]
    figures["resident_at_end"] = stats["resident_actors"]
    return figures


async def run_no_cache(
    path: str, ids: list[str], plan: list[list[Call]], budget_bytes: float, check: Check
) -> Figures:
    async with open_commit_per_write(path, cache=False) as sessions:

        async def call(planned: Call) -> object:
            session, reads = planned
            session_id = ids[session]
            return await (sessions.context(session_id) if reads else sessions.increment(session_id))

        figures = await closed_loop(plan, call)
        check()
    figures["activations_per_call"] = 1.0  # every call reads its row
    return figures


def check_churn(name: str, figures: Figures) -> None:
    """The over-budget system must have activated sessions during the run, the all-resident one
    none: otherwise the case did not measure what it says."""
    activations = figures.get("activations")
    if name == CHURN and not activations:
        raise BenchmarkFailure(f"{CHURN}: no session activated during the run: the budget held them all")
    if name == RESIDENT and activations:
        raise BenchmarkFailure(f"{RESIDENT}: {activations:.0f} sessions activated during the run")


class Eviction(Scenario):
    name = "eviction"
    title = "Eviction churn: a working set ten times the memory budget"
    about = (
        f"{CALLERS} callers; each call (half `increment`, half `context`) on a session drawn uniformly "
        f"from the working set, every session holding {PAYLOAD:,} bytes of notes; commit mode (SQLite). "
        f"The budget holds about {RESIDENT_SHARE:.0%} of the working set, so most calls activate a "
        "session and evict another. Against: the same with a budget that holds every session, and "
        "a commit-per-write design that keeps nothing in memory and reads the row on every call. "
        "`activations/call` counts sessions loaded from the store per call. Checked after every run, "
        "before the system closes the file: a read-only connection of its own finds exactly the "
        "increments made committed; and the over-budget system activated sessions during the run, "
        "the all-resident one none."
    )
    metrics = (RATE, P50, P99, P999, ACTIVATIONS)
    x = "working set"
    plot_metrics = ("rate", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        sizes = (1_000,) if plan.quick else (2_000, 20_000)
        calls = 2_000 if plan.quick else 40_000
        cases = []
        for backend in self.backends:
            for size in sizes:
                source, ids = template(plan, "eviction", size, PAYLOAD)
                each = run_measurement(accounted_per_session, source, ids, backend=backend, what="set-up")
                # Eviction starts at the high watermark (90 % of the budget).
                budget = size * RESIDENT_SHARE * each / Config().memory_high_watermark
                systems = {
                    name: self._measure(plan, backend, source, ids, calls, name, run, budget)
                    for name, run, budget in (
                        (CHURN, run_actorstate, budget),
                        (RESIDENT, run_actorstate, 4 * size * each),
                        (NO_CACHE, run_no_cache, 0.0),
                    )
                }
                params = {"backend": backend, "working set": size}
                cases.append(
                    Case(
                        params,
                        systems,
                        baseline=RESIDENT,
                        comparisons=[(CHURN, RESIDENT), (CHURN, NO_CACHE)],
                        ours=[CHURN, RESIDENT],
                    )
                )
        return cases

    @staticmethod
    def _measure(
        plan: Plan,
        backend: str,
        source: str,
        ids: list[str],
        calls: int,
        name: str,
        run: Callable[[str, list[str], list[list[Call]], float, Check], Awaitable[Figures]],
        budget_bytes: float,
    ) -> Callable[[int], Figures]:
        def one(number: int) -> Figures:
            rng = random.Random(number)
            each = calls // CALLERS
            work = [
                [(rng.randrange(len(ids)), rng.random() < 0.5) for _ in range(each)] for _ in range(CALLERS)
            ]
            path = copy(source, os.path.join(plan.workdir, f"eviction-run-{backend}.db"))
            expected = [0] * len(ids)
            for caller in work:
                for session, reads in caller:
                    expected[session] += not reads

            def check() -> None:
                check_stored(path, ids, expected, name)

            figures = run_measurement(run, path, ids, work, budget_bytes, check, backend=backend, what=name)
            check_churn(name, figures)
            return figures

        return one
