"""What a benchmark scenario is, and how the runner measures one.

A scenario is a family of *cases* (one workload at one size: "trio, one hot
session, 100 callers, write-heavy"). Each case runs several *systems* on the
same workload: actorstate and the baselines it is compared with. The runner,
not the scenario, decides the order: after the warm-up runs, every
repetition runs every system once, starting each repetition with the next
system and running the others forward from it in even repetitions,
backward in odd ones (``runner.order``), so no system always runs first on
a cold machine or (with three systems or more) right after the same
neighbour, and the figures of one repetition come from neighbouring
moments. Ratios are then taken pair by pair within a repetition
(``stats.py``), which cancels most of a shared machine's slow drift.

A measurement is one run of one system: a fresh event loop (``anyio.run``)
or a fresh process, set up untimed, then timed; it returns its figures as a
flat dict. It checks its own result (exact counters, nothing lost) and
raises :class:`BenchmarkFailure` when the system answered wrongly: a fast
wrong answer is not a result.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# The figures of one run of one system, by metric key (extra keys, such as
# how many writes were checked, are kept in results.json too).
Figures = dict[str, float]


class BenchmarkFailure(Exception):
    """A system answered wrongly (an error, an inexact counter, a lost write) or stopped answering."""


@dataclasses.dataclass(frozen=True)
class Metric:
    """One figure a scenario reports: its key in the figures, how to print it, which way is better."""

    key: str
    label: str
    unit: str
    better: Literal["higher", "lower"]
    # The key of a figure holding how coarsely this metric is measured, in its
    # unit (stdio's CPU time comes in clock ticks): ``--compare`` never calls
    # a change smaller than that a regression.
    resolution: str | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much to measure: repetitions, warm-up runs, the quick variant, where files go."""

    reps: int
    warmup: int
    quick: bool
    workdir: str


@dataclasses.dataclass
class Case:
    """One workload at one size, and the systems that run it.

    ``systems`` maps a system's name to its measurement, in the order the
    tables list them (a measurement gets the run's number, warm-up runs
    counting first, so a seeded workload can be the same for every system of
    a repetition); ``skipped`` names systems that cannot run here and why
    (a missing ``node``). ``comparisons`` are the (system, against) pairs
    whose ratios the report gives; by default every system against
    ``baseline``.
    """

    params: dict[str, Any]
    systems: dict[str, Callable[[int], Figures]]
    baseline: str
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    comparisons: Sequence[tuple[str, str]] | None = None
    # The systems that are actorstate's own (the others are baselines): only
    # their figures and ratios can make ``--compare`` fail; a baseline that
    # moved is information. None: the first system of every comparison pair.
    ours: Sequence[str] | None = None
    # Measurements that start a process or load a database get no warm-up
    # (there is nothing to warm: every run starts cold on purpose).
    warmup: bool = True

    @property
    def key(self) -> str:
        """The case's name in tables and in ``--compare``: its parameters, in order."""
        return case_key(self.params)

    def our_systems(self) -> list[str]:
        """The systems that are actorstate's (``ours``, or the first of every comparison pair)."""
        if self.ours is not None:
            return [name for name in self.ours if name in self.systems or name in self.skipped]
        return list(dict.fromkeys(mine for mine, _ in self.pairs()))

    def pairs(self) -> list[tuple[str, str]]:
        if self.comparisons is not None:
            return [pair for pair in self.comparisons if pair[0] in self.systems and pair[1] in self.systems]
        if self.baseline not in self.systems:
            return []
        return [(name, self.baseline) for name in self.systems if name != self.baseline]


class Scenario:
    """A family of cases. Subclasses set the class attributes and build the cases."""

    name: str  # what --scenario takes
    title: str
    # A paragraph for the report: the workload, the systems, what is checked.
    about: str
    metrics: tuple[Metric, ...]
    # The parameter the plots put on the x axis (None: bar charts), and the
    # metrics they draw.
    x: str | None = None
    plot_metrics: tuple[str, ...] = ()
    log_x: bool = True

    def __init__(self, backends: tuple[str, ...] = ("trio", "asyncio")) -> None:
        # The event loops the in-process cases run on (--backend narrows them).
        self.backends = backends

    def cases(self, plan: Plan) -> list[Case]:
        raise NotImplementedError

    def metric(self, key: str) -> Metric:
        for metric in self.metrics:
            if metric.key == key:
                return metric
        raise KeyError(key)


def case_key(params: dict[str, Any]) -> str:
    """A case's name in tables, failures and ``--compare``: its parameters, in order."""
    return " · ".join(f"{name}={value}" for name, value in params.items())


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of the sorted values lie (nearest rank)."""
    if not ordered:
        raise ValueError("no values")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def latency_figures(seconds: list[float]) -> Figures:
    """p50, p99 and p99.9 in milliseconds of a run's latencies (sorted here)."""
    seconds.sort()
    return {
        "p50_ms": percentile(seconds, 0.50) * 1000,
        "p99_ms": percentile(seconds, 0.99) * 1000,
        "p999_ms": percentile(seconds, 0.999) * 1000,
    }


RATE = Metric("rate", "ops/s", "/s", "higher")
P50 = Metric("p50_ms", "p50", "ms", "lower")
P99 = Metric("p99_ms", "p99", "ms", "lower")
P999 = Metric("p999_ms", "p99.9", "ms", "lower")
