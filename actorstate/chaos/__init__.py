"""The chaos runner and its parts: the history of a run, the checkers that judge it, its report.

The names here are the pure parts, which start no process and touch no
store. The runner (:mod:`.runner`, ``actorstate chaos``) builds on them:
it drives real server processes (:mod:`.server`) with a seeded workload
(:mod:`.workload`) and fault schedule (:mod:`.faults`).
"""

from __future__ import annotations

from .checkers import (
    Violation,
    check_appends,
    check_counters,
    check_ended_sessions,
    check_history,
    check_ownership,
    check_preferences,
    check_probes,
)
from .history import (
    Call,
    FaultEvent,
    FaultPhase,
    History,
    HistoryError,
    HistoryRecorder,
    Operation,
    Phase,
    Record,
)
from .report import Summary, summarize, violation_window, window_jsonl

__all__ = [
    "Call",
    "FaultEvent",
    "FaultPhase",
    "History",
    "HistoryError",
    "HistoryRecorder",
    "Operation",
    "Phase",
    "Record",
    "Summary",
    "Violation",
    "check_appends",
    "check_counters",
    "check_ended_sessions",
    "check_history",
    "check_ownership",
    "check_preferences",
    "check_probes",
    "summarize",
    "violation_window",
    "window_jsonl",
]
