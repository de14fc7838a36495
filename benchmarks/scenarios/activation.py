"""Cold activation: calls on sessions that are in the database but not in memory."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import anyio

import actorstate
from actorstate.backend import parking_for_current_backend
from actorstate.config import Config
from actorstate.model.codec import decode_session
from actorstate.store.threaded import open_sqlite_store
from benchmarks.databases import counter_of, database, session_id
from benchmarks.drivers import run_measurement
from benchmarks.suite import (
    P50,
    P99,
    P999,
    BenchmarkFailure,
    Case,
    Figures,
    Metric,
    Plan,
    Scenario,
    latency_figures,
)

if TYPE_CHECKING:
    from collections.abc import Callable

ACTORSTATE, SELECT = "actorstate", "SELECT + decode per call"
CONFIG = Config()
FIRST_PASS_TIMEOUT = 120.0

# A planned call: the session's id, and the counter it must answer.
Call = tuple[str, int]


def plan_calls(sessions: int, calls: int, seed: int) -> list[Call]:
    """``calls`` distinct sessions drawn uniformly, before the clock starts."""
    indices = random.Random(seed).sample(range(sessions), calls)
    return [(session_id(index), counter_of(index)) for index in indices]


def check(answers: list[object], plan: list[Call], system: str) -> None:
    for (identifier, expected), found in zip(plan, answers, strict=True):
        if found != expected:
            raise BenchmarkFailure(
                f"{system}: session {identifier} answered counter {found!r}, not {expected}"
            )


def _figures(latencies: list[float], elapsed: float) -> Figures:
    return {"rate": len(latencies) / elapsed, **latency_figures(latencies), "calls": len(latencies)}


async def first_pass_ended(state: actorstate.State) -> None:
    """Wait (untimed) for the housekeeping pass every open starts: it scans the table in chunks
    on the database thread, and the calls of its first tenth of a second would wait behind them
    (that cost is an open's, measured by ``recovery``; this scenario measures activations)."""
    with anyio.move_on_after(FIRST_PASS_TIMEOUT):
        # The pass counts the rows: None until it ends (stats have no event to wait on).
        while state.stats()["sessions"] is None:  # noqa: ASYNC110
            await anyio.sleep(0.005)
        return
    raise BenchmarkFailure(f"{ACTORSTATE}: the first housekeeping pass took over {FIRST_PASS_TIMEOUT:.0f} s")


async def run_actorstate(path: str, plan: list[Call]) -> Figures:
    """A fresh ``open_state``, then one ``context`` call per planned session, one after another."""
    clock = time.perf_counter
    latencies: list[float] = []
    answers: list[object] = []
    async with actorstate.open_state(path) as state:
        await first_pass_ended(state)
        if state.stats()["resident_actors"]:
            raise BenchmarkFailure(f"{ACTORSTATE}: sessions resident before the first call")
        started = clock()
        for identifier, _ in plan:
            call_started = clock()
            context = await state.session(identifier).context()
            latencies.append(clock() - call_started)
            answers.append(context["metadata"].get("counter"))
        elapsed = clock() - started
        activations = state.stats()["activations"]
    check(answers, plan, ACTORSTATE)
    if activations != len(plan):
        raise BenchmarkFailure(f"{ACTORSTATE}: {activations} activations for {len(plan)} cold calls")
    return _figures(latencies, elapsed)


async def run_select(path: str, plan: list[Call]) -> Figures:
    """The same reads as a commit-per-write server without a cache: load and decode the row per call."""
    clock = time.perf_counter
    latencies: list[float] = []
    answers: list[object] = []
    store = await open_sqlite_store(path, parking_for_current_backend(), busy_timeout=CONFIG.busy_timeout)
    try:
        started = clock()
        for identifier, _ in plan:
            call_started = clock()
            row = await store.load(identifier)
            if row is None or row.ended:
                raise BenchmarkFailure(f"{SELECT}: session {identifier} is missing")
            context = decode_session(row.state).context(CONFIG.default_max_turns)
            latencies.append(clock() - call_started)
            answers.append(context["metadata"].get("counter"))
        elapsed = clock() - started
    finally:
        await store.close()
    check(answers, plan, SELECT)
    return _figures(latencies, elapsed)


SYSTEMS = {ACTORSTATE: run_actorstate, SELECT: run_select}


def measure_activation(system: str, path: str, sessions: int, calls: int, seed: int, backend: str) -> Figures:
    """One measurement of ``system``: its own event loop, ``calls`` cold calls on ``path``."""
    return run_measurement(
        SYSTEMS[system], path, plan_calls(sessions, calls, seed), backend=backend, what=system
    )


class Activation(Scenario):
    name = "activation"
    title = "Cold activation: calls on sessions not in memory"
    about = (
        "A database of 100,000 small sessions (quick: 10,000; a topic and a counter each, written "
        "straight into the table once per size, untimed), then, after a fresh `open_state` per "
        "measurement, 2,000 (quick: 500) sequential `context` calls on distinct sessions drawn at "
        "random, none of them resident: each call loads, decodes and activates its session. The clock "
        "starts once the housekeeping pass every open starts has ended (it scans the table in chunks "
        "on the database thread; calls in its first ~0.1 s wait about 2 ms behind them, which would "
        "be all of actorstate's p99: an open's cost, which `recovery` measures). Baseline: the same reads the way a "
        "commit-per-write server without a cache does them, a SELECT of the row through the same store "
        "and thread (`store.load`) and `decode_session` per call. The database file is in the OS page "
        "cache for both. Checked: every answer's counter equals the one written, and actorstate "
        "counted one activation per call."
    )
    metrics = (Metric("rate", "activations/s", "/s", "higher"), P50, P99, P999)
    x = "sessions"
    plot_metrics = ("rate", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        sessions, calls = (10_000, 500) if plan.quick else (100_000, 2_000)
        return [self._case(plan, backend, sessions, calls) for backend in self.backends]

    def _case(self, plan: Plan, backend: str, sessions: int, calls: int) -> Case:
        def measure(system: str) -> Callable[[int], Figures]:
            def one(number: int) -> Figures:
                path = database(plan.workdir, sessions)
                return measure_activation(system, path, sessions, calls, number, backend)

            return one

        return Case(
            {"backend": backend, "sessions": sessions, "calls": calls},
            {name: measure(name) for name in SYSTEMS},
            baseline=SELECT,
            ours=[ACTORSTATE],
        )
