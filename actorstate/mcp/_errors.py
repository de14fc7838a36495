"""actorstate's errors as the SDK's tool errors.

A tool of an ``MCPServer`` that raises anything but the SDK's ``ToolError``
(or ``ResourceError``) has crashed, as the SDK sees it: the client reads only
"Error executing tool NAME" and the server logs a traceback. Every
:class:`~actorstate.ActorStateError` is a refusal meant for the caller, with
a message saying what to do, so at the tool boundary each becomes a
``ToolError`` carrying that message: the client gets a result with
``isError`` and the message after the SDK's "Error executing tool NAME: ".

=========================  =====================================================
raised                     the caller reads (isError)
=========================  =====================================================
``SessionNotFound``        "Session not found or expired" (unknown, ended,
                           expired or another caller's: one message on purpose)
``InvalidInput``           what is wrong with the argument, and the limit
``Overloaded``             the session's mailbox stayed full; three ways out
``SessionQuarantined``     the session crashed too often; end it or restart
``StoreUnavailable``       the store failed this time; nothing was kept; retry
``SessionMoved``           another node owns the session now; retry
``DatabaseRefused``        the database cannot be used
``StateClosed``            the server is shutting down
=========================  =====================================================

Any other exception is left to the SDK: a crash, logged with its traceback,
whose text never reaches the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp.server.mcpserver.exceptions import ToolError

from ..errors import ActorStateError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["tool_errors"]


class tool_errors:
    """``with tool_errors(): ...`` turns an :class:`~actorstate.ActorStateError` raised in
    the block into the SDK's ``ToolError`` with the same message (see the table above).

    The handles :mod:`actorstate.mcp` gives a tool (``CallerSession``,
    ``CallerState``) do this already; use it around a call on a plain
    :class:`actorstate.State` or :class:`actorstate.Session`.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, ActorStateError):
            # from None: the message is the whole story for the caller; the chain would
            # only add actorstate's internals to the server's log line.
            raise ToolError(str(exc)) from None
