"""Your own MCP server on actorstate, with the official SDK (``mcp`` 2.x).

Everything a server of your own needs to keep session state in actorstate:

- :func:`state_lifespan`: ``MCPServer(..., lifespan=state_lifespan("app.db"))``
  opens the state when the server starts and closes it when it stops;
- :data:`CallerSession`: a tool parameter ``session: CallerSession`` (with a
  ``sessionId: str`` argument) is the session that argument names, scoped to
  the caller's identity (over HTTP, the authenticated principal);
  :data:`CallerState` is the caller's side of the state (create, list);
- errors: on those handles every :class:`~actorstate.ActorStateError` is the
  SDK's ``ToolError`` with its message, so the client gets an ``isError``
  result it can act on, never a traceback (the mapping is in
  :mod:`actorstate.mcp._errors`); :class:`tool_errors` does it around any
  other call;
- :func:`add_session_tools` / :func:`session_tools`: the ready-made tools
  of ``actorstate serve`` (all, or the ones named) on your server;
- :func:`build_server`: the whole ready-made server (tools and resources) as
  the SDK's low-level ``Server``, to run on a transport of your choice.

Test a server in process with the SDK's client: ``async with mcp.Client(app)
as client`` runs the app's lifespan and calls it without a transport.

Importing this module imports the SDK; ``import actorstate`` alone does not.
"""

from __future__ import annotations

from ..transport.server import build_server
from ._errors import tool_errors
from ._handles import CallerSession, CallerState, ToolSession, ToolState, caller_state
from ._lifespan import StateContext, state_context_of, state_lifespan
from ._tools import SESSION_TOOLS, add_session_tools, session_tools

__all__ = [
    "SESSION_TOOLS",
    "CallerSession",
    "CallerState",
    "StateContext",
    "ToolSession",
    "ToolState",
    "add_session_tools",
    "build_server",
    "caller_state",
    "session_tools",
    "state_context_of",
    "state_lifespan",
    "tool_errors",
]
