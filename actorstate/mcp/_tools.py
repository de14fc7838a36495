"""The ready-made session tools on a server of your own.

The tools are the ones ``actorstate serve`` lists (:mod:`actorstate.transport.tools`,
written once): the same schemas, checks, replies and error texts. They are
given to an ``MCPServer`` as the SDK's own ``Tool`` records, built here
around the table rather than from a Python signature, because a signature
would make the SDK derive other schemas and check arguments its own way
(it would, for one, parse a ``value`` string that looks like JSON).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp.server.mcpserver.tools import Tool as SdkTool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from pydantic import ConfigDict

from ..config import Config
from ..errors import InvalidInput
from ..transport.server import caller_of, tool_annotations
from ..transport.tools import Tool, ToolError, build_tools, call_tool
from ._lifespan import state_context_of

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mcp.server.mcpserver import Context, MCPServer

__all__ = ["SESSION_TOOLS", "add_session_tools", "session_tools"]

# The tools' names, in the order they are listed.
SESSION_TOOLS: tuple[str, ...] = tuple(build_tools(Config()))


class _Arguments(ArgModelBase):
    """The arguments as the client sent them, kept whole for the table's own check."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.__pydantic_extra__ or {})}


def session_tools(names: Iterable[str] | None = None, *, config: Config | None = None) -> list[SdkTool]:
    """The ready-made tools named (all of :data:`SESSION_TOOLS` by default) as the SDK's tools.

    For ``MCPServer(..., tools=session_tools())``; :func:`add_session_tools`
    adds them to a server made already. ``config`` is the one the state is
    opened with (``state_lifespan(config=...)``): the listed schemas state its
    limits. Each call runs for the request's caller (see :mod:`._handles`) on
    the state of the server's lifespan, which must be :func:`.state_lifespan`'s
    (or yield a :class:`.StateContext`).

    Error handling:
        InvalidInput: a name that is not one of the tools, naming them.
    """
    table = build_tools(config or Config())
    chosen = list(table) if names is None else list(dict.fromkeys(names))
    unknown = [name for name in chosen if name not in table]
    if unknown:
        raise InvalidInput(f"no session tool named {unknown[0]!r}; the tools are: {', '.join(table)}")
    return [_sdk_tool(table[name]) for name in chosen]


def add_session_tools(
    server: MCPServer[Any], names: Iterable[str] | None = None, *, config: Config | None = None
) -> None:
    """Add the ready-made tools named (all by default) to ``server``; see :func:`session_tools`.

    Error handling:
        InvalidInput: a name that is not one of the tools.
        ValueError: ``server`` has a tool of that name already.
    """
    # MCPServer.add_tool builds a tool from a function's signature only; a tool
    # record made already goes to its tool manager (as MCPServer(tools=...) does).
    manager = server._tool_manager
    tools = session_tools(names, config=config)
    taken = [tool.name for tool in tools if manager.get_tool(tool.name) is not None]
    if taken:
        raise ValueError(f"the server has a tool named {taken[0]!r} already")
    for tool in tools:
        manager._tools[tool.name] = tool


def _sdk_tool(tool: Tool) -> SdkTool:
    name = tool.name

    async def run(arguments: dict[str, Any], ctx: Context) -> types.CallToolResult:
        context = state_context_of(ctx.request_context.lifespan_context).tools
        try:
            result = await call_tool(context, name, arguments, caller_of(ctx.request_context))
        except ToolError as error:
            # Returned, not raised: the same text as the ready-made server's, without
            # the SDK's "Error executing tool" before it.
            return types.CallToolResult(content=[types.TextContent(text=str(error))], is_error=True)
        return types.CallToolResult(
            content=[types.TextContent(text=result.text)], structured_content=result.structured
        )

    return SdkTool(
        fn=run,
        name=name,
        title=tool.title,
        description=tool.description,
        parameters=tool.input_schema,
        # An output schema without a model is listed, and the result passed on as it is.
        fn_metadata=FuncMetadata(arg_model=_Arguments, output_schema=tool.output_schema),
        is_async=True,
        context_kwarg="ctx",
        annotations=tool_annotations(tool),
    )
