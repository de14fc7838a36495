"""What each tool's arguments and results mean to the checkers.

The runner records ``structuredContent`` as the result of an ok call and the
arguments as sent (see :mod:`..history`); these functions read them. Keys
are disjoint by workload design: a counter key is only incremented, a
preference key is only set (by ``set_preference``, or by ``add_context``,
which sets ``metadata[key]`` as well as appending its event).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from ..history import Phase

if TYPE_CHECKING:
    from ..history import Call

__all__ = [
    "APPEND_TOOLS",
    "READ_TOOL",
    "append_token",
    "canonical",
    "event_token",
    "logical_writes",
    "metadata_seen",
    "read_events",
    "register_write",
    "request_key",
    "session_ids_listed",
]

APPEND_TOOLS = frozenset({"add_context", "record_action"})
READ_TOOL = "get_context"
INCREMENT_TOOL = "increment_counter"
DEFAULT_COUNTER_KEY = "counter"


def canonical(value: Any) -> str:
    """One text per JSON value (keys sorted), to compare and index values."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def append_token(call: Call) -> str:
    """The event an append call adds, as :func:`event_token` reads it back from ``get_context``."""
    arguments = call.arguments
    if call.tool == "add_context":
        return canonical(["context", {"key": arguments.get("key"), "value": arguments.get("value")}])
    details = arguments.get("details")
    return canonical(
        ["action", {"action": arguments.get("action"), "details": "" if details is None else details}]
    )


def event_token(event: Any) -> str:
    """One event of a ``get_context`` result, as :func:`append_token` writes it."""
    if isinstance(event, dict):
        return canonical([event.get("type"), event.get("payload")])
    return canonical(event)


def read_events(call: Call) -> tuple[int, list[Any]] | None:
    """An ok ``get_context``'s ``(totalEvents, recentEvents)``; None for any other call."""
    result = call.result
    if call.tool != READ_TOOL or not isinstance(result, dict):
        return None
    total, events = result.get("totalEvents"), result.get("recentEvents")
    if type(total) is not int or not isinstance(events, list):
        return None
    return total, events


def metadata_seen(call: Call) -> dict[str, Any] | None:
    """The metadata an ok call's result shows: ``get_context``'s, and ``set_preference``'s reply."""
    result = call.result
    if call.tool not in (READ_TOOL, "set_preference") or not isinstance(result, dict):
        return None
    metadata = result.get("metadata")
    return metadata if isinstance(metadata, dict) else None


def register_write(call: Call) -> tuple[str, Any] | None:
    """``(key, value)`` a call writes into the metadata as a plain value; None if it writes none."""
    if call.tool in ("set_preference", "add_context"):
        key = call.arguments.get("key")
        if isinstance(key, str):
            return key, call.arguments.get("value")
    return None


def increment(call: Call) -> tuple[str, int] | None:
    """``(key, by)`` of an ``increment_counter`` call; None for any other call."""
    if call.tool != INCREMENT_TOOL:
        return None
    key = call.arguments.get("key")
    by = call.arguments.get("by")
    return (key if isinstance(key, str) else DEFAULT_COUNTER_KEY), (by if type(by) is int else 1)


def request_key(call: Call) -> str | int:
    """What makes calls one logical write: their idempotency key (``requestId``) when they carry
    one, else the call alone (its index)."""
    key = call.arguments.get("requestId")
    return key if isinstance(key, str) else call.index


def logical_writes(calls: list[Call]) -> list[Call]:
    """One call per logical write: the attempts sharing a ``requestId`` (a dropped call and its
    retries) become one call invoked when the first was and completed as the first
    acknowledged one (or the last attempt, when none was). An attempt that failed took no
    effect: it is left out while another attempt may have, and stands for the write when
    every attempt failed."""
    attempts: dict[str | int, list[Call]] = {}
    for call in calls:
        attempts.setdefault(request_key(call), []).append(call)
    logical = []
    for group in attempts.values():
        live = [call for call in group if call.phase is not Phase.FAIL] or group[:1]
        if len(live) == 1:
            logical.append(live[0])
            continue
        first = min(live, key=lambda call: call.invoked_at)
        acknowledged = [call for call in live if call.phase is Phase.OK]
        last = min(acknowledged, key=lambda call: call.completed_at) if acknowledged else live[-1]
        logical.append(dataclasses.replace(first, completion=last.completion))
    return sorted(logical, key=lambda call: call.invoked_at)


def session_ids_listed(call: Call) -> list[str]:
    """The session ids an ok ``list_sessions`` result names."""
    result = call.result
    if call.tool != "list_sessions" or not isinstance(result, dict):
        return []
    sessions = result.get("sessions")
    if not isinstance(sessions, list):
        return []
    ids = []
    for entry in sessions:
        session_id = entry.get("sessionId") if isinstance(entry, dict) else entry
        if isinstance(session_id, str):
            ids.append(session_id)
    return ids
