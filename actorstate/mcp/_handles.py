"""The caller's view of the state, given to a tool as a parameter.

A tool declares what it needs by annotation and the SDK's resolvers
(``Resolve``) fill it in before the tool runs, so no tool repeats the lookup:

- ``session: CallerSession`` with a ``sessionId: str`` argument: the session
  that argument names, as the caller may use it;
- ``sessions: CallerState``: the caller's side of the state (create, list,
  look up sessions).

"As the caller may use it" is the ready-made server's rule (see
:mod:`actorstate.transport.caller`): over HTTP with authentication the
caller is the principal its bearer token names and sees only its own
sessions, another principal's answering like an unknown id; over stdio, or
in process, the one client owns the process and every session. Every call
on these handles raises the SDK's ``ToolError`` for an actorstate error
(see :mod:`._errors`), so a tool needs no ``try`` of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, Resolve

from ..state import DEFAULT_CLIENT_ID
from ..transport.server import caller_of
from ._errors import tool_errors
from ._lifespan import state_context_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..model.listing import SessionPage
    from ..state import Session, State
    from ..transport.caller import Caller

__all__ = ["CallerSession", "CallerState", "ToolSession", "ToolState", "caller_state"]

T = TypeVar("T")


class ToolSession:
    """A :class:`actorstate.Session` whose errors are tool errors; the same methods, the same replies.

    Error handling:
        ToolError (the SDK's): any :class:`~actorstate.ActorStateError`, with its message.
    """

    __slots__ = ("session",)

    def __init__(self, session: Session) -> None:
        self.session = session  # the plain handle, for code outside a tool

    @property
    def id(self) -> str:
        return self.session.id

    def __repr__(self) -> str:
        return f"ToolSession({self.session!r})"

    async def add_context(self, key: str, value: Any, *, request_id: str | None = None) -> int:
        with tool_errors():
            return await self.session.add_context(key, value, request_id=request_id)

    async def record_action(
        self, action: str, details: str | None = None, *, request_id: str | None = None
    ) -> int:
        with tool_errors():
            return await self.session.record_action(action, details, request_id=request_id)

    async def set_preference(self, key: str, value: Any, *, request_id: str | None = None) -> dict[str, Any]:
        with tool_errors():
            return await self.session.set_preference(key, value, request_id=request_id)

    async def increment(self, key: str = "counter", by: int = 1, *, request_id: str | None = None) -> int:
        with tool_errors():
            return await self.session.increment(key, by, request_id=request_id)

    async def update(self, fn: Callable[[dict[str, Any]], T]) -> T:
        """``fn(metadata)`` inside the session's turn, atomically (see :meth:`actorstate.Session.update`).

        An actorstate error ``fn`` raises (``InvalidInput("the cart is full")``,
        say) is a tool error too; nothing changed. Anything else it raises
        reaches the tool as it is.
        """
        with tool_errors():
            return await self.session.update(fn)

    async def context(self, max_turns: int | None = None) -> dict[str, Any]:
        with tool_errors():
            return await self.session.context(max_turns)

    async def end(self) -> None:
        with tool_errors():
            await self.session.end()


class ToolState:
    """The state as one caller may use it: its own sessions, created and listed under its identity."""

    __slots__ = ("caller", "state")

    def __init__(self, state: State, caller: Caller) -> None:
        self.state = state
        self.caller = caller

    def session(self, session_id: str) -> ToolSession:
        """The session ``session_id`` names, as the caller may use it; no I/O.

        Error handling:
            ToolError (the SDK's): ``session_id`` is not a UUID.
        """
        with tool_errors():
            return ToolSession(self.caller.session(self.state, session_id))

    async def create_session(self, client_id: str = DEFAULT_CLIENT_ID) -> ToolSession:
        """A new session, owned by the caller (over HTTP, ``client_id`` can only name the caller itself)."""
        with tool_errors():
            return ToolSession(await self.state.create_session(self.caller.client_id(client_id)))

    async def list_sessions(self, client_id: str = DEFAULT_CLIENT_ID) -> list[str]:
        """Ids of the caller's live sessions, oldest first."""
        with tool_errors():
            return await self.state.list_sessions(self.caller.client_id(client_id))

    async def describe_sessions(
        self, client_id: str = DEFAULT_CLIENT_ID, *, cursor: str | None = None, limit: int | None = None
    ) -> SessionPage:
        """One page of the caller's live sessions (see :meth:`actorstate.State.describe_sessions`)."""
        with tool_errors():
            return await self.state.describe_sessions(
                self.caller.client_id(client_id), cursor=cursor, limit=limit
            )


def caller_state(ctx: Context) -> ToolState:
    """The caller's :class:`ToolState` for a request's ``Context`` (what :data:`CallerState` resolves to)."""
    return ToolState(
        state_context_of(ctx.request_context.lifespan_context).state, caller_of(ctx.request_context)
    )


# Resolvers are async on purpose: the SDK runs a synchronous one on a worker
# thread, and these do no I/O.
async def _resolve_state(ctx: Context) -> ToolState:
    return caller_state(ctx)


async def _resolve_session(sessionId: str, ctx: Context) -> ToolSession:
    return caller_state(ctx).session(sessionId)


CallerState = Annotated[ToolState, Resolve(_resolve_state)]
"""A tool parameter annotated ``CallerState`` gets the caller's :class:`ToolState`."""

CallerSession = Annotated[ToolSession, Resolve(_resolve_session)]
"""A tool parameter annotated ``CallerSession`` gets the session its ``sessionId`` argument names
(the tool must take ``sessionId: str``), as the caller may use it; a malformed id is a tool error."""
