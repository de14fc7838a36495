"""Log notifications to MCP clients: session events and store trouble, at each client's level.

A client that sends ``logging/setLevel`` (MCP's logging capability, at the
handshake revisions up to 2025-11-25) gets ``notifications/message`` from
then on, for as long as its connection lives, at that level and above:

- session events (:class:`actorstate.SessionEvent`), as JSON data under the
  logger ``actorstate.sessions``, each at the level of :data:`EVENT_LEVELS`;
  a caller hears only of its own sessions: over HTTP with authentication,
  those its principal owns; the process's owner (stdio, HTTP on loopback
  without authentication) hears of every session;
- store trouble: the runtime's warnings and errors about committing and
  housekeeping (``actorstate.snapshots``, ``actorstate.housekeeping``), as
  their text, to the owner and to operators only (they are about every
  client's sessions, as ``server_stats`` is).

stderr logging is not changed. Notifications are queued (up to
:data:`QUEUE_SIZE`; past it they are dropped and counted in
``client_log_dropped``) and sent by one task, so no session's turn waits
for a client. At 2026-07-28 the revision dropped ``logging/setLevel`` for a
per-request opt-in; events happen between requests, so those clients get
none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from typing import TYPE_CHECKING, Any

import anyio
import mcp.types as types

from .caller import OWNER, Caller

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from mcp.server.session import ServerSession

    from ..runtime.events import SessionEvent, SessionEventKind
    from ..state import State

__all__ = ["EVENT_LEVELS", "QUEUE_SIZE", "ClientLog"]

# MCP's levels (RFC 5424's), least severe first.
LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
# Each session event's level: routine steps are debug, a session lost to a
# cause other than its own idleness is notice or worse.
EVENT_LEVELS: dict[SessionEventKind, types.LoggingLevel] = {
    "created": "debug",
    "passivated": "debug",
    "expired": "info",
    "evicted": "notice",
    "restarted": "warning",
    "quarantined": "error",
}
QUEUE_SIZE = 1000
# The loggers whose warnings and errors are store trouble.
STORE_LOGGERS = frozenset({"actorstate.snapshots", "actorstate.housekeeping"})
_PYTHON_LEVELS: dict[int, types.LoggingLevel] = {
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


@dataclasses.dataclass(frozen=True, slots=True)
class _Notice:
    """One notification to send: its level, logger and data, and who may read it."""

    level: types.LoggingLevel
    logger: str
    data: Any
    owner: str | None  # a session's owner: its principal hears it too; None: owner and operators only


@dataclasses.dataclass(slots=True)
class _Listener:
    session: ServerSession
    caller: Caller
    level: int  # index in LEVELS


class ClientLog:
    """The clients listening, and the task sending them notifications (see the module docstring)."""

    def __init__(self) -> None:
        self._listeners: dict[object, _Listener] = {}
        self.dropped = 0
        self._send: MemoryObjectSendStream[_Notice] | None = None
        self._loop_thread: int | None = None

    def set_level(
        self, connection: object, session: ServerSession, caller: Caller, level: types.LoggingLevel
    ) -> None:
        """``caller``'s connection (``connection``: its key) hears notices at ``level`` and above from now on."""
        self._listeners[connection] = _Listener(session, caller, LEVELS.index(level))

    def stats(self) -> dict[str, int]:
        return {"client_log_listeners": len(self._listeners), "client_log_dropped": self.dropped}

    @contextlib.asynccontextmanager
    async def running(self, state: State) -> AsyncIterator[None]:
        """Forward ``state``'s session events and the store's trouble while the block runs."""
        send, receive = anyio.create_memory_object_stream[_Notice](QUEUE_SIZE)
        handler = _StoreTrouble(self)
        loggers = [logging.getLogger(name) for name in STORE_LOGGERS]
        self._send, self._loop_thread = send, threading.get_ident()
        stop_listening = state.add_session_listener(self._on_event)
        for logger in loggers:
            logger.addHandler(handler)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._deliver, receive)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
        finally:
            for logger in loggers:
                logger.removeHandler(handler)
            stop_listening()
            self._send = None
            send.close()

    # -- queueing: called inside the runtime's steps, never waits ------------------------

    def _on_event(self, event: SessionEvent) -> None:
        if not self._listeners:
            return
        data = {"event": event.kind, "sessionId": event.session_id}
        if event.detail:
            data["detail"] = event.detail
        self._queue(_Notice(EVENT_LEVELS[event.kind], "actorstate.sessions", data, event.client_id))

    def queue_store_trouble(self, record: logging.LogRecord) -> None:
        if not self._listeners or threading.get_ident() != self._loop_thread:
            return  # a stream is not to be written from another thread: stderr has it
        level = _PYTHON_LEVELS.get(
            record.levelno, "critical" if record.levelno > logging.ERROR else "warning"
        )
        self._queue(_Notice(level, record.name, record.getMessage(), None))

    def _queue(self, notice: _Notice) -> None:
        send = self._send
        if send is None:
            return
        try:
            send.send_nowait(notice)
        except anyio.WouldBlock:
            self.dropped += 1

    # -- sending -----------------------------------------------------------------------

    async def _deliver(self, receive: MemoryObjectReceiveStream[_Notice]) -> None:
        async with receive:
            async for notice in receive:
                level = LEVELS.index(notice.level)
                for connection, listener in list(self._listeners.items()):
                    if level < listener.level or not _may_read(listener.caller, notice.owner):
                        continue
                    message = types.LoggingMessageNotification(
                        params=types.LoggingMessageNotificationParams(
                            level=notice.level, logger=notice.logger, data=notice.data
                        )
                    )
                    try:
                        await listener.session.send_notification(message)
                    except Exception:
                        # The connection is gone (or going): it hears nothing more.
                        self._listeners.pop(connection, None)


def _may_read(caller: Caller, owner: str | None) -> bool:
    """Whether ``caller`` hears a notice about ``owner``'s session (None: server-wide)."""
    if caller == OWNER or caller.principal is None:
        return True
    if owner is None:
        return caller.operator
    return caller.principal == owner


class _StoreTrouble(logging.Handler):
    """Hands the store loggers' warnings and errors to the client log."""

    def __init__(self, client_log: ClientLog) -> None:
        super().__init__(logging.WARNING)
        self._client_log = client_log

    def emit(self, record: logging.LogRecord) -> None:
        self._client_log.queue_store_trouble(record)
