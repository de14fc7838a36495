"""The checkers: each reads a finished history and returns the invariants it broke.

The history ends with the reads made after recovery (a ``get_context`` of
every session), so "the final state" is simply the last reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...config import Config
from .appends import check_appends
from .counters import check_counters
from .probes import NO_REPLY, PROBE_PROCESS, check_probes
from .registers import check_preferences
from .sessions import check_ended_sessions, check_ownership
from .violation import Violation

if TYPE_CHECKING:
    from ..history import History

__all__ = [
    "NO_REPLY",
    "PROBE_PROCESS",
    "Violation",
    "check_appends",
    "check_counters",
    "check_ended_sessions",
    "check_history",
    "check_ownership",
    "check_preferences",
    "check_probes",
]


def check_history(history: History, config: Config | None = None) -> list[Violation]:
    """Every checker on ``history``; ``config`` is the servers' (its event cap and default maxTurns).

    Violations come ordered by their first record.
    """
    config = config or Config()
    violations = [
        *check_counters(history),
        *check_appends(history, max_events=config.max_events, default_max_turns=config.default_max_turns),
        *check_preferences(history),
        *check_ended_sessions(history),
        *check_ownership(history),
        *check_probes(history),
    ]
    violations.sort(key=lambda v: (v.first, v.last, v.checker))
    return violations
