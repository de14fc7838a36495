"""Memory: RSS per resident session, each measurement in a fresh process.

The probe (``benchmarks/probes/memory.py``) creates the sessions, one
counter increment each, and reads RSS before and after; a fresh process per
measurement so no run inherits another's heap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from benchmarks.suite import BenchmarkFailure, Case, Figures, Metric, Plan, Scenario

if TYPE_CHECKING:
    from collections.abc import Callable

ACTORSTATE, LOCKS = "actorstate", "dict + lock per session"
PROBE_SYSTEMS = {ACTORSTATE: "actorstate", LOCKS: "locks"}
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A million sessions take about 40 s on a shared 2-CPU machine; ten times that is a hang.
PROBE_TIMEOUT = 600.0


def probe(system: str, sessions: int, backend: str) -> Figures:
    """One measurement: the probe in a fresh process; its figures, or BenchmarkFailure."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.probes.memory",
        PROBE_SYSTEMS[system],
        str(sessions),
        backend,
    ]
    try:
        done = subprocess.run(
            command, cwd=REPOSITORY, capture_output=True, text=True, check=False, timeout=PROBE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkFailure(f"{system}: the probe did not finish in {PROBE_TIMEOUT:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchmarkFailure(f"{system}: the probe exited {done.returncode}: {done.stderr.strip()[-800:]}")
    figures = json.loads(lines[-1])
    if "failure" in figures:
        raise BenchmarkFailure(f"{system}: {figures['failure']}")
    return {key: float(value) for key, value in figures.items()}


def measure(system: str, sessions: int, backend: str) -> Callable[[int], Figures]:
    def one(number: int) -> Figures:
        return probe(system, sessions, backend)

    return one


class Memory(Scenario):
    name = "memory"
    title = "Memory: RSS per resident session"
    about = (
        "1,000 to 1,000,000 resident sessions (quick: 1,000 and 10,000), each created and given one counter increment (a small "
        "realistic session), in memory: actorstate's actors (`open_state` with room for all of them) "
        "against a dict of the same `SessionState` objects with one lock each. Every measurement is a "
        "fresh process (`benchmarks/probes/memory.py`, 64 concurrent creators, the garbage collector on "
        "as in a server) reading RSS from /proc/self/statm after `gc.collect()` before and after; the "
        "probe keeps only a sample of the ids, no handle per session. actorstate's own estimate "
        "(`stats()['accounted_bytes']`) is given beside. Checked: every session resident (none "
        "passivated or evicted) and every 997th session's counter equal to 1. One 1,000,000-session "
        "probe takes about 35 s for actorstate and 20 s for the dict, so the full scenario takes "
        "about 10 minutes."
    )
    metrics = (
        Metric("rss_per_session", "RSS / session", "B", "lower"),
        Metric("accounted_per_session", "accounted / session", "B", "lower"),
    )
    x = "sessions"
    plot_metrics = ("rss_per_session",)

    def cases(self, plan: Plan) -> list[Case]:
        sizes = (1_000, 10_000) if plan.quick else (1_000, 10_000, 100_000, 1_000_000)
        return [
            Case(
                {"backend": backend, "sessions": sessions},
                {name: measure(name, sessions, backend) for name in (ACTORSTATE, LOCKS)},
                baseline=LOCKS,
                ours=[ACTORSTATE],
                warmup=False,
            )
            for backend in self.backends
            for sessions in sizes
        ]
