"""The MCP server: the session tools and resources on the SDK's low-level server.

The low-level ``Server`` (not ``MCPServer``) because our tools bring their own
schemas and checks, and every microsecond per call counts: the server's
work per call is parsing, one actor turn, and encoding.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from .. import __version__
from ..errors import ActorStateError
from .stdio import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_LINE_BYTES, stdio_transport
from .tools import TOOLS, ToolContext, ToolError, call_tool

if TYPE_CHECKING:
    from ..state import State

__all__ = ["build_server", "serve_stdio"]

# JSON-RPC error code MCP uses for a resource that does not exist.
RESOURCE_NOT_FOUND = -32002

INSTRUCTIONS = (
    "Session state that survives restarts and concurrent calls. Call create_session once, then pass its "
    "sessionId to the other tools. clientId only groups sessions for list_sessions; it is not a password."
)


def build_server(state: State) -> Server[Any]:
    context = ToolContext(state)
    tool_list = types.ListToolsResult(
        tools=[
            types.Tool(
                name=tool.name,
                description=tool.description,
                input_schema=tool.input_schema,
                output_schema=tool.output_schema,
            )
            for tool in TOOLS.values()
        ]
    )

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return tool_list

    async def on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            result = await call_tool(context, params.name, params.arguments)
        except ToolError as error:
            return types.CallToolResult(content=[types.TextContent(text=str(error))], is_error=True)
        return types.CallToolResult(
            content=[types.TextContent(text=result.text)], structured_content=result.structured
        )

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri="actorstate://stats",
                    name="stats",
                    description="Server statistics (the server_stats tool, as a resource)",
                    mime_type="application/json",
                )
            ]
        )

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template="session://{sessionId}",
                    name="session",
                    description="One session as JSON: metadata and its last 50 events",
                    mime_type="application/json",
                )
            ]
        )

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri == "actorstate://stats":
            payload = (await call_tool(context, "server_stats", {})).structured
        elif uri.startswith("session://"):
            try:
                session = state.session_as_owner(uri.removeprefix("session://"))
                payload = await session.context(max_turns=state.config.max_turns_limit)
            except ActorStateError as error:
                raise MCPError(code=RESOURCE_NOT_FOUND, message=str(error)) from None
        else:
            raise MCPError(code=RESOURCE_NOT_FOUND, message=f"unknown resource {uri}")
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(payload))
            ]
        )

    server: Server[Any] = Server(
        "actorstate",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )
    # The default OpenTelemetry middleware opens a span per message: about 5%
    # of the server's time per call here, for traces nobody collects on stdio.
    server.middleware.clear()
    return server


async def serve_stdio(
    state: State,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Serve MCP on stdin/stdout until end of input (or cancellation); see :func:`stdio_transport`."""
    server = build_server(state)
    async with stdio_transport(max_line_bytes=max_line_bytes, max_in_flight=max_in_flight) as (
        read_stream,
        write_stream,
    ):
        await server.run(read_stream, write_stream, server.create_initialization_options())
