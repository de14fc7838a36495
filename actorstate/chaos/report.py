"""A history in numbers, and the part of it around a violation."""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
from typing import TYPE_CHECKING

from .history import FaultPhase, Phase, dumps_record

if TYPE_CHECKING:
    from .checkers import Violation
    from .history import History, Record

__all__ = [
    "FaultTiming",
    "Latencies",
    "Summary",
    "fault_timings",
    "percentile",
    "summarize",
    "violation_window",
    "window_jsonl",
]


@dataclasses.dataclass(frozen=True, slots=True)
class FaultTiming:
    """One fault in time: from its start to its end (``outage``), and from its end to the first
    call acknowledged after it (``recovery``; None when no call was)."""

    kind: str
    start: float
    end: float
    recovery: float | None

    @property
    def outage(self) -> float:
        return self.end - self.start

    @property
    def disturbed_until(self) -> float:
        """Until when calls count as made during the fault: its end, and its recovery."""
        return self.end + (self.recovery or 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class Latencies:
    """Seconds from invocation to acknowledgement of the ok calls, calm and during faults
    (from a fault's start to its recovery)."""

    calm: list[float]
    during_faults: list[float]


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """Calls by tool and outcome (``{"add_context": {"ok": 10, "info": 1}}``), faults started by
    kind, each fault's timing, and the latencies of acknowledged calls."""

    calls: dict[str, dict[str, int]]
    outcomes: dict[str, int]
    faults: dict[str, int]
    timings: list[FaultTiming] = dataclasses.field(default_factory=list)
    latencies: Latencies = dataclasses.field(default_factory=lambda: Latencies([], []))

    @property
    def total_calls(self) -> int:
        return sum(self.outcomes.values())


def summarize(history: History) -> Summary:
    """Count ``history``'s calls by tool and outcome and its faults by kind."""
    calls: dict[str, collections.Counter[str]] = {}
    outcomes: collections.Counter[str] = collections.Counter()
    for call in history.calls:
        calls.setdefault(call.tool, collections.Counter())[str(call.phase)] += 1
        outcomes[str(call.phase)] += 1
    faults = collections.Counter(fault.kind for fault in history.faults if fault.phase is FaultPhase.START)
    timings = fault_timings(history)
    return Summary(
        {
            tool: {str(phase): counts[str(phase)] for phase in Phase if counts[str(phase)]}
            for tool, counts in sorted(calls.items())
        },
        {str(phase): outcomes[str(phase)] for phase in Phase if outcomes[str(phase)]},
        dict(sorted(faults.items())),
        timings,
        _latencies(history, timings),
    )


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (not empty): ``fraction`` 0.99 is p99."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def fault_timings(history: History) -> list[FaultTiming]:
    """Every fault that ended, in order, with its recovery: the first call acknowledged after its end."""
    acknowledged = sorted(
        call.completion.monotonic_time
        for call in history.calls
        if call.phase is Phase.OK and call.completion is not None
    )
    open_faults: dict[str, list[float]] = collections.defaultdict(list)
    timings = []
    for fault in history.faults:
        if fault.phase is FaultPhase.START:
            open_faults[fault.kind].append(fault.monotonic_time)
            continue
        if not open_faults[fault.kind]:
            continue
        start = open_faults[fault.kind].pop()
        after = bisect.bisect_right(acknowledged, fault.monotonic_time)
        recovery = acknowledged[after] - fault.monotonic_time if after < len(acknowledged) else None
        timings.append(FaultTiming(fault.kind, start, fault.monotonic_time, recovery))
    return timings


def _latencies(history: History, timings: list[FaultTiming]) -> Latencies:
    # The fault windows merged where they overlap, so one bisection places each call (a soak
    # has a million calls and a hundred faults).
    starts: list[float] = []
    ends: list[float] = []
    for start, until in sorted((timing.start, timing.disturbed_until) for timing in timings):
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], until)
        else:
            starts.append(start)
            ends.append(until)
    calm: list[float] = []
    during: list[float] = []
    for call in history.calls:
        if call.phase is not Phase.OK or call.completion is None:
            continue
        invoked = call.invoke.monotonic_time
        latency = call.completion.monotonic_time - invoked
        window = bisect.bisect_right(starts, invoked) - 1
        disturbed = window >= 0 and invoked <= ends[window]
        (during if disturbed else calm).append(latency)
    return Latencies(calm, during)


def violation_window(history: History, violation: Violation) -> list[Record]:
    """The minimal window around ``violation``: its session's records from its first call to its
    last call's completion, plus the fault events overlapping that window."""
    return history.window(violation.session, violation.first, violation.last)


def window_jsonl(history: History, violation: Violation) -> str:
    """:func:`violation_window` as JSON lines, headed by the violation itself as one line."""
    import json

    lines = [
        json.dumps({"type": "violation", **violation.to_json()}, ensure_ascii=False, separators=(",", ":"))
    ]
    lines.extend(dumps_record(record) for record in violation_window(history, violation))
    return "\n".join(lines) + "\n"
