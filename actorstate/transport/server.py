"""The MCP server: the session tools and resources on the SDK's low-level server.

The low-level ``Server`` (not ``MCPServer``) because our tools bring their own
schemas and checks, and every microsecond per call counts: the server's
work per call is parsing, one actor turn, and encoding. Its one middleware
makes the SDK's bare refusals say what is wrong. :class:`StopSignals` is
what SIGTERM and SIGINT do to ``actorstate serve``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .. import __version__
from ..errors import ActorStateError
from .fast_path import ToolCallFastPath
from .handshake import INSTRUCTIONS, SERVER_NAME, HandshakeFastPath
from .limits import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_LINE_BYTES, DEFAULT_STOP_GRACE
from .stdio import stdio_transport
from .tools import ToolContext, ToolError, call_tool, clipped, clipped_repr

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

    from ..state import State

__all__ = ["StopSignals", "build_server", "serve_stdio"]

logger = logging.getLogger(__name__)

# JSON-RPC error code MCP uses for a resource that does not exist.
RESOURCE_NOT_FOUND = -32002


def build_server(state: State, context: ToolContext | None = None) -> Server[Any]:
    """The SDK server for ``state``'s tools and resources (``context``: the tools', if made already)."""
    context = context or ToolContext(state)
    max_events = state.config.max_turns_limit  # what a session resource shows
    tool_list = types.ListToolsResult(
        tools=[
            types.Tool(
                name=tool.name,
                description=tool.description,
                input_schema=tool.input_schema,
                output_schema=tool.output_schema,
            )
            for tool in context.tools.values()
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
                    description=f"One session as JSON: metadata and its last {max_events} events",
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
                payload = await session.context(max_turns=max_events)
            except ActorStateError as error:
                raise MCPError(code=RESOURCE_NOT_FOUND, message=str(error)) from None
        else:
            raise MCPError(code=RESOURCE_NOT_FOUND, message=f"unknown resource {clipped_repr(uri)}")
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(payload))
            ]
        )

    server: Server[Any] = Server(
        SERVER_NAME,
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
    server.middleware[:] = [_explain_refusals]
    return server


def _first_problem(error: ValidationError) -> str:
    """The first thing pydantic found wrong: where (clipped: keys are caller input) and what."""
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    first = problems[0]
    text = f"{clipped('.'.join(str(part) for part in first['loc']))}: {first['msg']}"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return text


# The SDK's refusal of a request sent before initialize, word for word: the
# same bare error as malformed params ("pinned compat" with its first version).
_NOT_INITIALIZED = (types.INVALID_PARAMS, "Invalid request parameters")


async def _explain_refusals(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Say what the SDK's bare refusals mean, and quote the caller's input cut short.

    A request before initialize is told to initialize; malformed params name
    the field and what it should be; an unknown method is named in the
    error's data clipped, not echoed whole.
    """
    try:
        return await call_next(ctx)
    except ValidationError as error:  # the SDK would answer a bare "Invalid request parameters"
        raise MCPError(
            code=types.INVALID_PARAMS, message=f"Invalid params: {_first_problem(error)}"
        ) from None
    except MCPError as error:
        if (error.code, error.message) == _NOT_INITIALIZED and ctx.session.client_params is None:
            raise MCPError(
                code=types.INVALID_REQUEST,
                message="Invalid Request: the server is not initialized yet: send initialize first",
            ) from None
        if error.code == types.METHOD_NOT_FOUND and isinstance(error.data, str):
            raise MCPError(code=error.code, message=error.message, data=clipped(error.data)) from None
        raise


async def serve_stdio(
    state: State,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    stop_grace: float = DEFAULT_STOP_GRACE,
    signals: StopSignals | None = None,
    fast_path: bool = True,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> None:
    """Serve MCP on stdin/stdout until end of input, a stop signal, or cancellation.

    Args:
        stdin_fd, stdout_fd: the wire (tests serve pipes or files of their own).
        max_line_bytes, max_in_flight, stop_grace: see :func:`stdio_transport`.
        fast_path: answer ``tools/call`` on the fast path (see
            :mod:`.fast_path`); False sends every request through the SDK.
        signals: what SIGTERM and SIGINT do while this serves (see
            :class:`StopSignals`); without it they are left alone.
    """
    context = ToolContext(state)
    server = build_server(state, context)
    tool_calls = ToolCallFastPath(context) if fast_path else None
    async with stdio_transport(
        stdin_fd,
        stdout_fd,
        max_line_bytes=max_line_bytes,
        max_in_flight=max_in_flight,
        stop_grace=stop_grace,
        fast_path=tool_calls,
        handshake=HandshakeFastPath(context.tools, lambda: tool_calls.protocol_version) if tool_calls else None,
    ) as wire:
        with anyio.CancelScope() as serving:
            with signals.serving(wire.stop_intake, serving.cancel) if signals else contextlib.nullcontext():
                await server.run(wire.read_stream, wire.write_stream, server.create_initialization_options())


class StopSignals:
    """SIGTERM and SIGINT for a process serving MCP on stdio.

    The first signal stops intake: no more input is read, every request
    already read is answered (as at end of input), and serving ends; the
    caller then closes the state, which commits everything. A second signal
    stops serving at once: requests still running are answered "Connection
    closed", and the state still closes and commits what they did.

    Signals are received from :meth:`receive` until it is cancelled, so one
    that comes before serving starts stops it as soon as it does, and one
    that comes while the state closes is logged and ignored: the close is
    what commits everything (SIGKILL still stops the process).
    """

    def __init__(self) -> None:
        self._received = 0
        self._closing = False
        self._stop_intake: Callable[[], None] | None = None
        self._stop_at_once: Callable[[], None] | None = None

    async def receive(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive SIGTERM and SIGINT until cancelled (main thread only)."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            task_status.started()
            # Every signal is taken as it comes: trio redelivers, with the
            # default action, any still pending when the receiver closes.
            async for signum in received:
                self._on_signal(signal.Signals(signum).name)

    @contextlib.contextmanager
    def serving(self, stop_intake: Callable[[], None], stop_at_once: Callable[[], None]) -> Iterator[None]:
        """While the block runs, signals stop serving; once it exits, the state is closing."""
        self._stop_intake, self._stop_at_once = stop_intake, stop_at_once
        try:
            if self._received:
                stop_intake()
            if self._received > 1:
                stop_at_once()
            yield
        finally:
            self._stop_intake = self._stop_at_once = None
            self._closing = True

    def _on_signal(self, name: str) -> None:
        self._received += 1
        if self._closing:
            logger.warning("received %s while closing: the close commits everything first", name)
        elif self._received == 1:
            logger.warning("received %s: stopping intake; every request already read will be answered", name)
            if self._stop_intake is not None:
                self._stop_intake()
        else:
            logger.warning("received %s, a second stop signal: stopping at once", name)
            if self._stop_at_once is not None:
                self._stop_at_once()
