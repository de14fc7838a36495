"""Opening state for a server's lifetime, and finding it again from a request.

An MCP server (the SDK's ``MCPServer`` or its low-level ``Server``) runs a
lifespan: an async context manager entered when the server starts and
exited when it stops, whose value every request can reach as the
``lifespan_context``. :func:`state_lifespan` is one that opens
:func:`actorstate.open_state` and yields a :class:`StateContext`; the tools
of :mod:`actorstate.mcp` find the state through it.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..state import open_state
from ..transport.tools import ToolContext

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from os import PathLike

    from ..config import Config
    from ..state import Durability, State

__all__ = ["StateContext", "state_context_of", "state_lifespan"]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class StateContext:
    """What :func:`state_lifespan` yields, the server's ``lifespan_context``: the open state.

    ``tools`` is the ready-made tools' context for that state (their table
    built for its config, and the counters ``server_stats`` adds).
    A lifespan of your own can yield one too (``StateContext(state)`` inside
    ``async with open_state(...)``), or any object with a ``state_context``
    attribute holding one, next to your own resources.
    """

    state: State
    tools: ToolContext = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", ToolContext(self.state))  # a frozen field, set once, here


def state_lifespan(
    path: str | PathLike[str] | None = None,
    *,
    durability: Durability = "commit",
    config: Config | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[StateContext]]:
    """A server lifespan that opens state when the server starts and closes it when it stops.

    Pass it as ``MCPServer(..., lifespan=state_lifespan("shop.db"))`` (or to
    the low-level ``Server``). The arguments are :func:`actorstate.open_state`'s.
    Closing commits everything unsaved before the server's exit completes.

    Error handling:
        The server's start fails with what ``open_state`` raises
        (``DatabaseRefused``, ``StoreUnavailable``, ``InvalidInput``).
    """

    @asynccontextmanager
    async def lifespan(server: Any) -> AsyncIterator[StateContext]:
        async with open_state(path, durability=durability, config=config) as state:
            yield StateContext(state)

    return lifespan


def state_context_of(lifespan_context: object) -> StateContext:
    """The :class:`StateContext` in a request's ``lifespan_context``.

    Error handling:
        RuntimeError: the server's lifespan yielded neither a StateContext nor
            an object with a ``state_context`` attribute holding one (a
            mistake in the server's code, not the caller's).
    """
    if isinstance(lifespan_context, StateContext):
        return lifespan_context
    nested = getattr(lifespan_context, "state_context", None)
    if isinstance(nested, StateContext):
        return nested
    raise RuntimeError(
        "the server has no actorstate state: pass lifespan=actorstate.mcp.state_lifespan(...) "
        "to MCPServer, or yield a StateContext (or an object with a state_context attribute) "
        f"from your own lifespan; it yielded {type(lifespan_context).__name__}"
    )
