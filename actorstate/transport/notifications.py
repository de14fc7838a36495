"""Notifications to MCP clients: log messages at each client's level, and subscribed resources updated.

Log messages:

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

stderr logging is not changed. Notifications (these and the updates below)
are queued (up to :data:`QUEUE_SIZE`; past it they are dropped and counted
in ``dropped``) and sent by one task, so no session's turn waits for a
client. At 2026-07-28 the revision dropped ``logging/setLevel`` for a
per-request opt-in; events happen between requests, so those clients get
none.

Resource updates: a client that subscribed (``resources/subscribe``) to a
``session://`` resource gets ``notifications/resources/updated`` for it when
a tool call changes that session (through any path of this server), or it
expires or is quarantined. Changes made by another process sharing the
database, or by code embedding the same state, are not seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from typing import TYPE_CHECKING, Any

import anyio
import mcp.types as types

from ..errors import InvalidInput
from .caller import OWNER, Caller

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from mcp.server.session import ServerSession

    from ..runtime.events import SessionEvent, SessionEventKind
    from ..state import State

__all__ = ["EVENT_LEVELS", "MAX_CONNECTIONS", "MAX_SUBSCRIPTIONS", "QUEUE_SIZE", "ClientNotifications"]

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
# Connections remembered (past it the one that asked first is forgotten: a connection that
# ended is only noticed when a send to it fails), and subscriptions per connection.
MAX_CONNECTIONS = 10_000
MAX_SUBSCRIPTIONS = 1000
# The loggers whose warnings and errors are store trouble.
STORE_LOGGERS = frozenset({"actorstate.snapshots", "actorstate.housekeeping"})
# Session events after which reading the session's resource gives another answer.
_ENDS_READS = frozenset({"expired", "quarantined"})
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


@dataclasses.dataclass(frozen=True, slots=True)
class _Updated:
    """A session's resource changed."""

    session_id: str


@dataclasses.dataclass(slots=True)
class _Connection:
    """A client connection that asked for notifications: its level (None: no log messages) and
    the sessions it subscribed to."""

    session: ServerSession
    caller: Caller
    level: int | None = None  # index in LEVELS
    subscribed: set[str] = dataclasses.field(default_factory=set)


class ClientNotifications:
    """The connections listening, and the task sending them notifications (see the module docstring)."""

    def __init__(self) -> None:
        self._connections: dict[object, _Connection] = {}
        self._subscribers: dict[str, set[object]] = {}  # session id -> connections subscribed
        self.dropped = 0
        self._send: MemoryObjectSendStream[_Notice | _Updated] | None = None
        self._loop_thread: int | None = None

    def set_level(
        self, connection: object, session: ServerSession, caller: Caller, level: types.LoggingLevel
    ) -> None:
        """``caller``'s connection (``connection``: its key) hears log messages at ``level`` and above."""
        self._connection(connection, session, caller).level = LEVELS.index(level)

    def subscribe(self, connection: object, session: ServerSession, caller: Caller, session_id: str) -> None:
        """The connection hears when session ``session_id`` changes (the caller may read it: checked).

        Error handling:
            InvalidInput: the connection has :data:`MAX_SUBSCRIPTIONS` already.
        """
        entry = self._connection(connection, session, caller)
        if session_id not in entry.subscribed and len(entry.subscribed) >= MAX_SUBSCRIPTIONS:
            raise InvalidInput(
                f"a connection may subscribe to at most {MAX_SUBSCRIPTIONS} sessions; unsubscribe from one first"
            )
        entry.subscribed.add(session_id)
        self._subscribers.setdefault(session_id, set()).add(connection)

    def unsubscribe(self, connection: object, session_id: str) -> None:
        """The connection hears no more of ``session_id`` (nothing if it did not)."""
        entry = self._connections.get(connection)
        if entry is not None:
            entry.subscribed.discard(session_id)
        subscribers = self._subscribers.get(session_id)
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:
                del self._subscribers[session_id]

    def session_changed(self, session_id: str) -> None:
        """A tool call changed ``session_id``: its subscribers are told (queued; never waits)."""
        if session_id in self._subscribers:
            self._queue(_Updated(session_id))

    def _connection(self, key: object, session: ServerSession, caller: Caller) -> _Connection:
        entry = self._connections.get(key)
        if entry is not None and entry.caller.principal != caller.principal:
            # A key is a connection's, and a connection has one principal: another principal
            # under it means the key was reused (an id outliving its connection). What it
            # subscribed to is not the new caller's to hear of.
            self._forget(key)
            entry = None
        if entry is None:
            if len(self._connections) >= MAX_CONNECTIONS:
                self._forget(next(iter(self._connections)))
            entry = self._connections[key] = _Connection(session, caller)
        else:
            entry.session, entry.caller = session, caller
        return entry

    def _forget(self, key: object) -> None:
        entry = self._connections.pop(key, None)
        if entry is not None:
            for session_id in list(entry.subscribed):
                self.unsubscribe(key, session_id)

    @contextlib.asynccontextmanager
    async def running(self, state: State) -> AsyncIterator[None]:
        """Forward ``state``'s session events and the store's trouble while the block runs."""
        send, receive = anyio.create_memory_object_stream[_Notice | _Updated](QUEUE_SIZE)
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
        if event.kind in _ENDS_READS:
            self.session_changed(event.session_id)
        if not self._connections:
            return
        data = {"event": event.kind, "sessionId": event.session_id}
        if event.detail:
            data["detail"] = event.detail
        self._queue(_Notice(EVENT_LEVELS[event.kind], "actorstate.sessions", data, event.client_id))

    def queue_store_trouble(self, record: logging.LogRecord) -> None:
        if not self._connections or threading.get_ident() != self._loop_thread:
            return  # a stream is not to be written from another thread: stderr has it
        level = _PYTHON_LEVELS.get(
            record.levelno, "critical" if record.levelno > logging.ERROR else "warning"
        )
        self._queue(_Notice(level, record.name, record.getMessage(), None))

    def _queue(self, notice: _Notice | _Updated) -> None:
        send = self._send
        if send is None:
            return
        try:
            send.send_nowait(notice)
        except anyio.WouldBlock:
            self.dropped += 1

    # -- sending -----------------------------------------------------------------------

    async def _deliver(self, receive: MemoryObjectReceiveStream[_Notice | _Updated]) -> None:
        async with receive:
            async for notice in receive:
                message: types.ServerNotification
                if isinstance(notice, _Updated):
                    uri = f"session://{notice.session_id}"
                    message = types.ResourceUpdatedNotification(
                        params=types.ResourceUpdatedNotificationParams(uri=uri)
                    )
                    keys = list(self._subscribers.get(notice.session_id, ()))
                else:
                    level = LEVELS.index(notice.level)
                    message = types.LoggingMessageNotification(
                        params=types.LoggingMessageNotificationParams(
                            level=notice.level, logger=notice.logger, data=notice.data
                        )
                    )
                    keys = [
                        key
                        for key, entry in self._connections.items()
                        if entry.level is not None
                        and level >= entry.level
                        and _may_read(entry.caller, notice.owner)
                    ]
                for key in keys:
                    entry = self._connections.get(key)
                    if entry is None:
                        continue
                    try:
                        await entry.session.send_notification(message)
                    except Exception:
                        # The connection is gone (or going): it hears nothing more.
                        self._forget(key)


def _may_read(caller: Caller, owner: str | None) -> bool:
    """Whether ``caller`` hears a notice about ``owner``'s session (None: server-wide)."""
    if caller == OWNER or caller.principal is None:
        return True
    if owner is None:
        return caller.operator
    return caller.principal == owner


class _StoreTrouble(logging.Handler):
    """Hands the store loggers' warnings and errors to the client notifications."""

    def __init__(self, notifications: ClientNotifications) -> None:
        super().__init__(logging.WARNING)
        self._notifications = notifications

    def emit(self, record: logging.LogRecord) -> None:
        self._notifications.queue_store_trouble(record)
