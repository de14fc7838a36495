"""Tool calls counted by tool and outcome, and their latency: what the metrics read.

Every tool call of every transport goes through :func:`.tools.call_tool`,
which records here once per call: a clock read before and after, a
bisection over the latency bounds and a few integer additions. No lock:
calls and the metrics that read them run on the event loop's thread.

The latency is the call's as its caller sees it, from the tool handler's
start to its reply: waiting for the session's actor, its turn, and in
``commit`` mode the commit holding the reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import (
    InvalidInput,
    Overloaded,
    SessionMoved,
    SessionNotFound,
    SessionQuarantined,
    StateClosed,
    StoreError,
)
from ..runtime.histogram import LATENCY_BOUNDS, Histogram

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..runtime.histogram import HistogramSnapshot

__all__ = ["CANCELLED", "INVALID_INPUT", "OK", "OUTCOMES", "UNKNOWN_TOOL", "CallFigures", "outcome_of"]

OK = "ok"
INVALID_INPUT = "invalid_input"
CANCELLED = "cancelled"  # the caller left before its reply
# Every outcome a call can have, so each series exists (at 0) from the start.
OUTCOMES = (
    OK,
    INVALID_INPUT,
    "not_found",
    "overloaded",
    "quarantined",
    "moved",
    "store_error",
    "closed",
    CANCELLED,
    "error",
)
# The tool name a call to a tool that does not exist counts under: the
# names callers send are not used as labels, or any caller could make the
# metrics grow without bound.
UNKNOWN_TOOL = "unknown"

# Most specific first: SessionMoved is a StoreError.
_OUTCOME_OF_ERROR: tuple[tuple[type[BaseException], str], ...] = (
    (InvalidInput, INVALID_INPUT),
    (SessionNotFound, "not_found"),
    (Overloaded, "overloaded"),
    (SessionQuarantined, "quarantined"),
    (SessionMoved, "moved"),
    (StoreError, "store_error"),
    (StateClosed, "closed"),
)


def outcome_of(error: BaseException) -> str:
    """The outcome label of a call that raised ``error`` (``error`` for anything unforeseen)."""
    if not isinstance(error, Exception):
        return CANCELLED  # trio's Cancelled and asyncio's CancelledError: the caller left
    for kind, outcome in _OUTCOME_OF_ERROR:
        if isinstance(error, kind):
            return outcome
    return "error"


class _ToolCalls:
    """One tool's figures: calls that succeeded, the others by outcome, and the latency."""

    __slots__ = ("failed", "latency", "ok")

    def __init__(self) -> None:
        self.ok = 0
        self.failed = dict.fromkeys(OUTCOMES[1:], 0)
        self.latency = Histogram(LATENCY_BOUNDS)


class CallFigures:
    """Calls by (tool, outcome) and each tool's latency histogram, for the tools named at start."""

    __slots__ = ("_tools", "_unknown")

    def __init__(self, tools: Iterable[str]) -> None:
        self._tools = {tool: _ToolCalls() for tool in [*tools, UNKNOWN_TOOL]}
        self._unknown = self._tools[UNKNOWN_TOOL]

    def record(self, tool: str, outcome: str, seconds: float) -> None:
        """One call of ``tool`` ended with ``outcome`` after ``seconds`` (on every call: kept to
        a dict lookup, an addition and a histogram's observation)."""
        figures = self._tools.get(tool, self._unknown)
        if outcome == OK:
            figures.ok += 1
        else:
            figures.failed[outcome] += 1
        figures.latency.observe(seconds)

    def calls(self) -> dict[tuple[str, str], int]:
        """Calls so far by (tool, outcome), every pair included."""
        counted: dict[tuple[str, str], int] = {}
        for tool, figures in self._tools.items():
            counted[tool, OK] = figures.ok
            for outcome, count in figures.failed.items():
                counted[tool, outcome] = count
        return counted

    def latency(self) -> dict[str, HistogramSnapshot]:
        """Each tool's latency histogram now."""
        return {tool: figures.latency.snapshot() for tool, figures in self._tools.items()}
