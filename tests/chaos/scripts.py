"""Hand-written histories in a few lines: a recorder with shorthands for the checkers' tests."""

from __future__ import annotations

import itertools
import zlib
from typing import Any

from actorstate.chaos import FaultEvent, History, HistoryRecorder, Operation


class Script:
    """Builds a history; times are the record counter, so tests are deterministic."""

    def __init__(self) -> None:
        ticks = itertools.count()
        self.recorder = HistoryRecorder(
            wall_clock=lambda: 1_700_000_000.0 + next(ticks), monotonic_clock=lambda: 0.0
        )
        self.owners: dict[str, str] = {}

    def invoke(
        self, process: str, tool: str, session: str | None, client: str | None = None, **arguments: Any
    ) -> Operation:
        if client is None and session is not None:
            client = self.owners.get(session)
        return self.recorder.invoke(process, tool, session, arguments, client=client)

    def ok(self, invoke: Operation, result: Any) -> Operation:
        return self.recorder.ok(invoke, result)

    def info(self, invoke: Operation) -> Operation:
        return self.recorder.info(invoke, "timed out")

    def fail(self, invoke: Operation) -> Operation:
        return self.recorder.fail(invoke, "Session not found or expired")

    def create(self, session: str, client: str = "alice", process: str | None = None) -> int:
        self.owners[session] = client
        call = self.invoke(process or client, "create_session", session, client, clientId=client)
        self.ok(call, {"sessionId": _server_id(session), "message": "Session created."})
        return call.index

    def add(
        self,
        session: str,
        value: str,
        total: int | None,
        *,
        process: str = "p1",
        request_id: str | None = None,
    ) -> int:
        """add_context of a unique value: ok with totalEvents ``total``, or info when ``total`` is None."""
        keyed = {} if request_id is None else {"requestId": request_id}
        call = self.invoke(process, "add_context", session, key="topic", value=value, **keyed)
        if total is None:
            self.info(call)
        else:
            self.ok(call, {"sessionId": _server_id(session), "totalEvents": total})
        return call.index

    def read(
        self,
        session: str,
        total: int,
        events: list[str],
        metadata: dict[str, Any] | None = None,
        *,
        process: str = "p1",
        max_turns: int = 50,
    ) -> int:
        """get_context answering ``events`` (add_context values) as the last of ``total``."""
        call = self.invoke(process, "get_context", session, maxTurns=max_turns)
        self.ok(call, context(session, total, events, metadata))
        return call.index

    def increment(
        self,
        session: str,
        by: int,
        value: int | None,
        *,
        key: str = "counter",
        process: str = "p1",
        request_id: str | None = None,
    ) -> int:
        keyed = {} if request_id is None else {"requestId": request_id}
        call = self.invoke(process, "increment_counter", session, key=key, by=by, **keyed)
        if value is None:
            self.info(call)
        else:
            self.ok(call, {"sessionId": _server_id(session), "key": key, "value": value})
        return call.index

    def set(
        self, session: str, key: str, value: Any, metadata: dict[str, Any] | None, *, process: str = "p1"
    ) -> int:
        call = self.invoke(process, "set_preference", session, key=key, value=value)
        if metadata is None:
            self.info(call)
        else:
            self.ok(call, {"sessionId": _server_id(session), "metadata": metadata})
        return call.index

    def end(self, session: str, *, process: str = "p1") -> int:
        call = self.invoke(process, "end_session", session)
        self.ok(call, {"sessionId": _server_id(session), "ended": True})
        return call.index

    def fault(self, kind: str = "sigkill", target: str = "server-1") -> tuple[FaultEvent, FaultEvent]:
        start = self.recorder.fault_start(kind, target)
        return start, self.recorder.fault_end(start)

    def history(self) -> History:
        return self.recorder.history()


def _server_id(label: str) -> str:
    return f"00000000-0000-4000-8000-{zlib.crc32(label.encode()):012d}"


def server_id(label: str) -> str:
    return _server_id(label)


def context(
    session: str, total: int, values: list[Any], metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A get_context result whose recent events are add_context events of ``values`` (key "topic")."""
    return {
        "sessionId": _server_id(session),
        "totalEvents": total,
        "metadata": metadata if metadata is not None else ({"topic": values[-1]} if values else {}),
        "recentEvents": [
            {
                "type": "context",
                "payload": {"key": "topic", "value": value},
                "time": "2026-01-01T00:00:00.000Z",
            }
            for value in values
        ],
    }
