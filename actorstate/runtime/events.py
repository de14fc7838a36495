"""What happens to sessions, for whoever listens: created, passivated, evicted, expired,
restarted, quarantined.

The runtime emits a :class:`SessionEvent` where each happens; listeners (the
MCP server's log notifications, say) subscribe through
:meth:`actorstate.State.add_session_listener`. A listener is called inside
the runtime's own step, so it must only note the event and return (queue it,
never await or block); one that raises is logged and the runtime goes on.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SessionEvent", "SessionEventKind", "SessionEvents"]

logger = logging.getLogger("actorstate.supervisor")

SessionEventKind = Literal["created", "passivated", "evicted", "expired", "restarted", "quarantined"]


@dataclasses.dataclass(frozen=True, slots=True)
class SessionEvent:
    """One thing that happened to one session.

    ``client_id`` is the session's owner (None when not known: a quarantined
    session whose stored state cannot be read); ``detail`` says why, for
    people (the eviction's reason, the quarantine's).
    """

    kind: SessionEventKind
    session_id: str
    client_id: str | None
    detail: str = ""


class SessionEvents:
    """The listeners, and the emitting of an event to each of them."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[Callable[[SessionEvent], None]] = []

    def add(self, listener: Callable[[SessionEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns what stops it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def emit(self, kind: SessionEventKind, session_id: str, client_id: str | None, detail: str = "") -> None:
        """Tell every listener (nothing is built when there are none: the hot path's case)."""
        if not self._listeners:
            return
        event = SessionEvent(kind, session_id, client_id, detail)
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("a session event listener failed on %s", event)
