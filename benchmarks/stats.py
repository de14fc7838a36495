"""Statistics that hold on a noisy machine: medians with their range, ratios pair by pair.

Everything here reads results.json's shapes, so a report can be rebuilt and
two result folders compared from the files alone.

- A system's figure is the median of its repetitions, shown with the lowest
  and highest (never a mean: one run the machine stole time from would move it).
- A ratio between two systems is taken within each repetition (both ran
  next to each other), and the median of those ratios is reported with
  their range. When the range holds 1.0 the repetitions disagree on which
  system is better, and the report says the result cannot be called.
- A spread is *wide* when the highest repetition is more than
  ``WIDE_SPREAD`` above the lowest, relative to the median; a ratio is
  *wide* when its highest repetition is over ``WIDE_RATIO`` times its lowest,
  even if all of them agree on which side of 1 it falls.
- An open-loop system is *overloaded* in a run whose achieved rate is below
  ``OVERLOADED`` of the offered rate: its latencies grow with the run's
  length, so they are no result.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

WIDE_SPREAD = 0.30
WIDE_RATIO = 2.0
OVERLOADED = 0.98


@dataclasses.dataclass(frozen=True)
class Range:
    """A median with the lowest and highest values it was taken from."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> Range:
        if not values:
            raise ValueError("no values")
        return cls(statistics.median(values), min(values), max(values), len(values))

    @property
    def width(self) -> float:
        """(high - low) / median: how far the repetitions spread, relative to the result."""
        return (self.high - self.low) / self.median if self.median else 0.0

    @property
    def wide(self) -> bool:
        return self.width > WIDE_SPREAD

    def holds_one(self) -> bool:
        """Whether the repetitions fail to agree which side of 1 the ratio is on (a repetition
        exactly at 1 agrees with neither); False when every repetition gave the same ratio."""
        return self.low <= 1.0 <= self.high and self.low != self.high

    def wide_ratio(self) -> bool:
        """Whether the highest repetition is over ``WIDE_RATIO`` times the lowest."""
        if self.low <= 0:
            return self.high > self.low
        return self.high / self.low > WIDE_RATIO


def overloaded(system: dict[str, Any]) -> bool:
    """Whether any run of an open-loop system achieved less than ``OVERLOADED`` of its offered rate."""
    return any(
        run["rate"] < OVERLOADED * run["offered_rate"]
        for run in system.get("runs", ())
        if "offered_rate" in run and "rate" in run
    )


def figure(system: dict[str, Any], metric: str) -> Range | None:
    """The median and range of one metric over a system's runs (None if it has none)."""
    values = [run[metric] for run in system.get("runs", ()) if metric in run]
    return Range.of(values) if values else None


def pair_ratio(system: dict[str, Any], against: dict[str, Any], metric: str) -> Range | None:
    """``system / against`` for one metric, taken repetition by repetition.

    Only repetitions both systems finished count; None when there are none
    or the baseline's figure is zero.
    """
    ratios = [
        mine[metric] / theirs[metric]
        for mine, theirs in zip(system.get("runs", ()), against.get("runs", ()), strict=False)
        if metric in mine and theirs.get(metric)
    ]
    return Range.of(ratios) if ratios else None


def better_ratio(ratio: float, better: str) -> float:
    """A ratio turned so that above 1 always means better (a lower latency is better)."""
    return ratio if better == "higher" else 1.0 / ratio if ratio else float("inf")
