"""Recovery: open a big database and answer the first call."""

from __future__ import annotations

import random
import sqlite3
import time
from typing import TYPE_CHECKING

import actorstate
from actorstate.config import Config
from actorstate.model.codec import decode_session
from benchmarks.databases import counter_of, database, session_id
from benchmarks.drivers import run_measurement
from benchmarks.suite import BenchmarkFailure, Case, Figures, Metric, Plan, Scenario

if TYPE_CHECKING:
    from collections.abc import Callable

ACTORSTATE, LOAD_ALL = "actorstate", "load every session at start"
CONFIG = Config()


async def run_actorstate(path: str, identifier: str, expected: int) -> Figures:
    """From the start of ``open_state`` to the first call's answer (closing is not timed)."""
    clock = time.perf_counter
    started = clock()
    async with actorstate.open_state(path) as state:
        opened = clock()
        context = await state.session(identifier).context()
        answered = clock()
    found = context["metadata"].get("counter")
    if found != expected:
        raise BenchmarkFailure(
            f"{ACTORSTATE}: session {identifier} answered counter {found!r}, not {expected}"
        )
    return {"open_ms": (opened - started) * 1000, "first_call_ms": (answered - started) * 1000}


async def run_load_all(path: str, identifier: str, expected: int, sessions: int) -> Figures:
    """A server that reads every live session into a dict before it serves (SELECT all + decode)."""
    clock = time.perf_counter
    started = clock()
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT id, state FROM sessions WHERE ended_at IS NULL")
        states = {identifier: decode_session(blob) for identifier, blob in rows}
    finally:
        db.close()
    opened = clock()
    context = states[identifier].context(CONFIG.default_max_turns) if identifier in states else None
    answered = clock()
    if len(states) != sessions:
        raise BenchmarkFailure(f"{LOAD_ALL}: loaded {len(states)} sessions of {sessions}")
    found = None if context is None else context["metadata"].get("counter")
    if found != expected:
        raise BenchmarkFailure(f"{LOAD_ALL}: session {identifier} answered counter {found!r}, not {expected}")
    return {"open_ms": (opened - started) * 1000, "first_call_ms": (answered - started) * 1000}


def measure_recovery(system: str, path: str, sessions: int, seed: int, backend: str) -> Figures:
    """One measurement of ``system``: a fresh event loop opening ``path``; the first call on a random session."""
    index = random.Random(seed).randrange(sessions)
    identifier, expected = session_id(index), counter_of(index)
    if system == ACTORSTATE:
        return run_measurement(run_actorstate, path, identifier, expected, backend=backend, what=system)
    return run_measurement(run_load_all, path, identifier, expected, sessions, backend=backend, what=system)


class Recovery(Scenario):
    name = "recovery"
    title = "Recovery: open a big database and answer the first call"
    about = (
        "A database of 1,000,000 small sessions (quick: 20,000; a topic and a counter each, written "
        "straight into the table once per run, untimed), opened in a fresh event loop per measurement, then one `context` "
        "call on a random session: the time to open and the time from the start of the open to the "
        "first answer. actorstate reads no session when it opens (each is loaded on its first call); "
        "the baseline is a server that loads every session into a dict before it serves (SELECT of all "
        "live rows and `decode_session` of each), so its open grows with the database. The file is in "
        "the OS page cache (a restart, not a cold boot). No warm-up. Checked: the first answer's counter "
        "equals the one written, and the baseline loaded every session."
    )
    metrics = (
        Metric("open_ms", "open", "ms", "lower"),
        Metric("first_call_ms", "first answer", "ms", "lower"),
    )
    x = "sessions"
    plot_metrics = ("open_ms", "first_call_ms")

    def cases(self, plan: Plan) -> list[Case]:
        sessions = 20_000 if plan.quick else 1_000_000
        return [self._case(plan, backend, sessions) for backend in self.backends]

    def _case(self, plan: Plan, backend: str, sessions: int) -> Case:
        def measure(system: str) -> Callable[[int], Figures]:
            def one(number: int) -> Figures:
                return measure_recovery(system, database(plan.workdir, sessions), sessions, number, backend)

            return one

        return Case(
            {"backend": backend, "sessions": sessions},
            {name: measure(name) for name in (ACTORSTATE, LOAD_ALL)},
            baseline=LOAD_ALL,
            ours=[ACTORSTATE],
            warmup=False,
        )
