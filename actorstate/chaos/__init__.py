"""The chaos runner's pure parts: the history of a run, the checkers that judge it, its report.

Nothing here starts a process or touches a store; the runner builds on it.
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
    "summarize",
    "violation_window",
    "window_jsonl",
]
