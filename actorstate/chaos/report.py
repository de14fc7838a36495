"""A history in numbers, and the part of it around a violation."""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING

from .history import FaultPhase, Phase, dumps_record

if TYPE_CHECKING:
    from .checkers import Violation
    from .history import History, Record

__all__ = ["Summary", "summarize", "violation_window", "window_jsonl"]


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """Calls by tool and outcome (``{"add_context": {"ok": 10, "info": 1}}``), faults started by kind."""

    calls: dict[str, dict[str, int]]
    outcomes: dict[str, int]
    faults: dict[str, int]

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
    return Summary(
        {
            tool: {str(phase): counts[str(phase)] for phase in Phase if counts[str(phase)]}
            for tool, counts in sorted(calls.items())
        },
        {str(phase): outcomes[str(phase)] for phase in Phase if outcomes[str(phase)]},
        dict(sorted(faults.items())),
    )


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
