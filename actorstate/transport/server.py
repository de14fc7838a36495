"""The MCP server: the session tools and resources on the SDK's low-level server.

The low-level ``Server`` (not ``MCPServer``) because our tools bring their own
schemas and checks, and every microsecond per call counts: the server's
work per call is parsing, one actor turn, and encoding. Its one middleware
makes the SDK's bare refusals say what is wrong. ``actorstate serve``
imports this module only when a message first needs the SDK (see
:mod:`.serve`).
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .. import __version__
from ..errors import ActorStateError
from ..state import DEFAULT_CLIENT_ID, canonical_session_id
from .caller import OPERATOR_SCOPE, OWNER, Caller, principal_key
from .handshake import INSTRUCTIONS, SERVER_NAME
from .notifications import ClientNotifications
from .tools import Tool, ToolContext, ToolError, call_tool, clipped, clipped_repr

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

    from ..state import State

__all__ = ["INSTRUCTIONS", "build_server", "caller_of", "tool_annotations"]

# JSON-RPC error code MCP uses for a resource that does not exist.
RESOURCE_NOT_FOUND = -32002
SESSION_TEMPLATE = "session://{sessionId}"
_STATS_RESOURCE = types.Resource(
    uri="actorstate://stats",
    name="stats",
    description="Server statistics (the server_stats tool, as a resource)",
    mime_type="application/json",
)
# Completion values per answer: MCP's limit.
_MAX_COMPLETIONS = 100


def build_server(state: State, context: ToolContext | None = None) -> Server[Any]:
    """The SDK server for ``state``'s tools and resources (``context``: the tools', if made already)."""
    context = context or ToolContext(state)
    max_events = state.config.max_turns_limit  # what a session resource shows
    tool_list = types.ListToolsResult(
        tools=[
            types.Tool(
                name=tool.name,
                title=tool.title,
                description=tool.description,
                input_schema=tool.input_schema,
                output_schema=tool.output_schema,
                annotations=tool_annotations(tool),
            )
            for tool in context.tools.values()
        ]
    )

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return tool_list

    async def on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            result = await call_tool(context, params.name, params.arguments, caller_of(ctx))
        except ToolError as error:
            return types.CallToolResult(content=[types.TextContent(text=str(error))], is_error=True)
        return types.CallToolResult(
            content=[types.TextContent(text=result.text)], structured_content=result.structured
        )

    async def list_resources(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        # The caller's own sessions, a page at a time, after the stats on the first page.
        cursor = params.cursor if params is not None else None
        try:
            page = await state.describe_sessions(_listed_client(ctx), cursor=cursor)
        except ActorStateError as error:
            raise MCPError(code=types.INVALID_PARAMS, message=str(error)) from None
        resources = [_STATS_RESOURCE] if cursor is None else []
        resources += [
            types.Resource(
                uri=f"session://{entry['sessionId']}",
                name=entry["sessionId"],
                title="Session",
                description=f"created {entry['createdAt']}, last active {entry['lastActivity']}",
                mime_type="application/json",
            )
            for entry in page.sessions
        ]
        return types.ListResourcesResult(resources=resources, next_cursor=page.next_cursor)

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=SESSION_TEMPLATE,
                    name="session",
                    description=f"One session as JSON: metadata and its last {max_events} events",
                    mime_type="application/json",
                )
            ]
        )

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri == "actorstate://stats":
            try:
                payload = (await call_tool(context, "server_stats", {}, caller_of(ctx))).structured
            except ToolError as error:
                raise MCPError(code=types.INVALID_REQUEST, message=str(error)) from None
        elif uri.startswith("session://"):
            try:
                session = caller_of(ctx).session(state, uri.removeprefix("session://"))
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

    async def complete(ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
        ref, argument = params.ref, params.argument
        if (
            not isinstance(ref, types.ResourceTemplateReference)
            or ref.uri != SESSION_TEMPLATE
            or argument.name != "sessionId"
        ):
            return types.CompleteResult(completion=types.Completion(values=[]))
        # The caller's sessions whose id starts with what was typed, from one page (the
        # largest) of its listing: a completion is a hint, not a search.
        prefix = argument.value.lower()
        page = await state.describe_sessions(_listed_client(ctx), limit=state.config.max_list_page_size)
        matches = [entry["sessionId"] for entry in page.sessions if entry["sessionId"].startswith(prefix)]
        return types.CompleteResult(
            completion=types.Completion(
                values=matches[:_MAX_COMPLETIONS],
                total=len(matches) if page.next_cursor is None else None,
                has_more=len(matches) > _MAX_COMPLETIONS or page.next_cursor is not None,
            )
        )

    notifications = ClientNotifications()
    context.add_change_listener(notifications.session_changed)

    async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        if not uri.startswith("session://"):
            raise MCPError(
                code=RESOURCE_NOT_FOUND, message=f"only session:// resources change; not {clipped_repr(uri)}"
            )
        caller = caller_of(ctx)
        try:
            session = caller.session(state, uri.removeprefix("session://"))
            await session.context(max_turns=1)  # the caller may read it: the same answer as a read
        except ActorStateError as error:
            raise MCPError(code=RESOURCE_NOT_FOUND, message=str(error)) from None
        try:
            notifications.subscribe(_connection_of(ctx), ctx.session, caller, session.id)
        except ActorStateError as error:
            raise MCPError(code=types.INVALID_REQUEST, message=str(error)) from None
        return types.EmptyResult()

    async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        session_id = str(params.uri).removeprefix("session://")
        try:
            session_id = canonical_session_id(session_id)
        except ActorStateError:
            pass  # never subscribed, then: nothing to do
        notifications.unsubscribe(_connection_of(ctx), session_id)
        return types.EmptyResult()

    async def set_log_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        notifications.set_level(_connection_of(ctx), ctx.session, caller_of(ctx), params.level)
        return types.EmptyResult()

    @asynccontextmanager
    async def lifespan(server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        # Entered once per served connection (stdio) or per HTTP app (its session manager).
        async with notifications.running(state):
            yield {}

    server: Server[Any] = Server(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_completion=complete,
    )
    # Registered here, not as Server(on_set_logging_level=...), which warns that the
    # 2026-07-28 revision deprecates it: it serves the clients of the revisions before
    # (see .notifications), and the SDK declares the logging capability for it.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_log_level)
    # The default OpenTelemetry middleware opens a span per message: about 5%
    # of the server's time per call here, for traces nobody collects on stdio.
    server.middleware[:] = [_explain_refusals]
    return server


def tool_annotations(tool: Tool) -> types.ToolAnnotations | None:
    """``tool``'s title and hints as MCP's annotations (None if it has neither); the handshake
    fast path lists them too (:func:`.handshake._listed`)."""
    hints = tool.annotations
    if tool.title is None and not hints.hints():
        return None
    return types.ToolAnnotations(
        title=tool.title,
        read_only_hint=hints.read_only,
        destructive_hint=hints.destructive,
        idempotent_hint=hints.idempotent,
        open_world_hint=hints.open_world,
    )


def _listed_client(ctx: Any) -> str:
    """Whose sessions a caller's listing shows: its principal's; the owner's default client's."""
    return caller_of(ctx).client_id(DEFAULT_CLIENT_ID)


def _connection_of(ctx: Any) -> object:
    """What tells a request's connection from the others: the protocol session's id over HTTP,
    else the connection's own initialize params (one object per connection)."""
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None)
    session_id = headers.get("mcp-session-id") if headers is not None else None
    return session_id if session_id is not None else id(ctx.session.client_params)


def caller_of(ctx: Any) -> Caller:
    """Who sent a request: the principal of its HTTP request's token, else the process's owner
    (stdio, or HTTP on loopback without authentication)."""
    request = getattr(ctx, "request", None)
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if isinstance(user, AuthenticatedUser):
        token = user.access_token
        return Caller(principal_key(token), operator=OPERATOR_SCOPE in token.scopes)
    return OWNER


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
