"""Counts of observed values in fixed buckets: what a metrics exporter reads as a histogram.

Recording happens on the hot path (every commit, every tool call), so an
observation is a bisection over a dozen bounds and three additions, and no
lock: everything that records or reads runs on the event loop's thread. The
buckets are not cumulative here; whoever exports them (Prometheus' ``le``
buckets are) adds them up at read time.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left

__all__ = ["BATCH_SIZE_BOUNDS", "LATENCY_BOUNDS", "TURN_BOUNDS", "Histogram", "HistogramSnapshot"]

# Seconds: from a fast in-memory call (tens of microseconds) to a commit
# stalled behind a busy database (seconds).
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# Seconds one turn takes (applying a message to a session's state): a few
# microseconds for the tools, more for an update function or a large context.
TURN_BOUNDS: tuple[float, ...] = (
    0.000001,
    0.0000025,
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.001,
    0.01,
    0.1,
    1.0,
)
# Sessions written by one group commit: one when calls come one at a time,
# hundreds under load.
BATCH_SIZE_BOUNDS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclasses.dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram at one moment: ``counts[i]`` observations at most ``bounds[i]`` (and above
    ``bounds[i - 1]``); ``counts[-1]``, those above every bound."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float  # the sum of every observation

    @property
    def count(self) -> int:
        return sum(self.counts)


class Histogram:
    """Observations counted in the buckets ``bounds`` (increasing) and one above them all."""

    __slots__ = ("_counts", "_total", "bounds")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"a histogram's bounds must increase strictly, not {bounds!r}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (Prometheus' "le").
        self._counts[bisect_left(self.bounds, value)] += 1
        self._total += value

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self._counts), self._total)
