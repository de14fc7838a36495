"""The MCP tools: names, arguments and replies of the Node.js server we replace.

Each tool is a :class:`Tool`: a JSON schema for its arguments, one for its
structured result, and a handler that turns arguments into a call on the
session state. The arguments are checked against the schema before the
handler sees them, by a check compiled from it once (:mod:`.arguments`), so
the schema clients read is what is checked. Handlers raise :class:`ToolError`
(or any ``ActorStateError``) for anything a person should read; the server
turns those into tool results with ``isError``. Nothing here depends on the
MCP SDK, so the same tools can back another transport.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ..errors import ActorStateError, InvalidInput
from ..state import (
    DEFAULT_CLIENT_ID,
    END_SESSION,
    add_context_message,
    canonical_session_id,
    context_message,
    increment_message,
    record_action_message,
    send,
    send_now,
    set_preference_message,
)
from .arguments import ArgumentsCheck, FormatCheck, SchemaError, compile_arguments
from .call_figures import CANCELLED, INVALID_INPUT, OK, CallFigures, outcome_of
from .caller import OWNER, Caller
from .quoting import clipped, clipped_repr

if TYPE_CHECKING:
    from ..backend import Envelope
    from ..config import Config
    from ..model.messages import Message
    from ..state import Session, State

__all__ = [
    "Annotations",
    "HeldCall",
    "OneTurn",
    "Outcome",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "build_tools",
    "call_now",
    "call_tool",
    "clipped",
    "clipped_repr",
]

logger = logging.getLogger("actorstate.tools")

E = TypeVar("E", bound=BaseException)

# The checks of the formats the schemas name: a sessionId is a UUID.
_FORMATS: dict[str, FormatCheck] = {"uuid": canonical_session_id}


class ToolError(Exception):
    """A refusal to show the caller as the tool's error text."""


@dataclasses.dataclass(frozen=True, slots=True)
class ToolResult:
    text: str
    structured: dict[str, Any]


# A handler gets who is calling, and the arguments as the tool's check
# returns them: every property given is valid, every one with a default is there.
Handler = Callable[["ToolContext", Caller, dict[str, Any]], Awaitable[ToolResult]]


@dataclasses.dataclass(frozen=True, slots=True)
class OneTurn:
    """A tool that is one message to one session (the ``sessionId`` argument's).

    ``message`` builds the message from the checked arguments (raising
    InvalidInput as the session's method does); ``result`` makes the tool's
    result from the session's id, the arguments and the turn's reply. As a
    handler it sends the message and awaits; :func:`call_now` answers the
    same call without awaiting when the session can take it at once.
    """

    message: Callable[[Session, dict[str, Any]], Message[Any]]
    result: Callable[[str, dict[str, Any], Any], ToolResult]

    async def __call__(self, ctx: ToolContext, caller: Caller, arguments: dict[str, Any]) -> ToolResult:
        session = ctx.session(caller, arguments)
        reply = await send(session, self.message(session, arguments))
        return self.result(session.id, arguments, reply)


@dataclasses.dataclass(frozen=True, slots=True)
class Annotations:
    """MCP's tool annotations: hints to clients about what a call does (None: not said).

    Hints only, for a client to decide e.g. what to ask a person to confirm:
    not a promise, and nothing here enforces them. Each field says what the
    spec's hint of that name says when true; the spec's defaults for a hint
    not given are read_only False, destructive True, idempotent False,
    open_world True. destructive and idempotent mean something only when
    read_only is not True.
    """

    read_only: bool | None = None  # "does not modify its environment"
    destructive: bool | None = None  # "may perform destructive updates"; False: "only additive updates"
    idempotent: bool | None = None  # "calling it repeatedly with the same arguments has no additional effect"
    open_world: bool | None = None  # "may interact with an open world of external entities"

    def hints(self) -> dict[str, bool]:
        """The hints given, by their MCP names, in alphabetical order (as the SDK writes them)."""
        hints = {
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
            "readOnlyHint": self.read_only,
        }
        return {name: value for name, value in hints.items() if value is not None}


@dataclasses.dataclass(frozen=True, slots=True)
class Tool:
    """A tool, and the check of its arguments compiled from ``input_schema`` when it is made.

    ``title`` is its name for people (MCP lists it as the tool's ``title``
    and as ``annotations.title``, which clients of 2025-03-26 read: the
    tool's own ``title`` came with 2025-06-18); ``annotations``, the hints.

    ``handler`` is a :class:`OneTurn` for a tool that is one message to
    one session, so that :func:`call_now` can answer it without awaiting.

    Error handling:
        SchemaError: ``input_schema`` says something the check would not
            check (see :mod:`.arguments`).
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    handler: Handler
    title: str | None = None
    annotations: Annotations = Annotations()
    check_arguments: ArgumentsCheck = dataclasses.field(init=False, repr=False, compare=False)
    one_turn: OneTurn | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            check = compile_arguments(self.input_schema, formats=_FORMATS)
        except SchemaError as error:
            raise SchemaError(f"tool {self.name!r}: {error}") from None
        # Frozen fields, set once, here.
        object.__setattr__(self, "check_arguments", check)
        object.__setattr__(self, "one_turn", self.handler if isinstance(self.handler, OneTurn) else None)


@dataclasses.dataclass(slots=True)
class ToolContext:
    """What a handler may use: the state, and who is calling; and the tools, built for the state's config."""

    state: State
    started_at: float = dataclasses.field(default_factory=time.monotonic)
    tools: dict[str, Tool] = dataclasses.field(init=False)
    # Calls by tool and outcome, and their latency (read by the metrics).
    calls: CallFigures = dataclasses.field(init=False)
    # More figures for server_stats, from parts above the tools (the transport's).
    _stats_sources: list[Callable[[], dict[str, Any]]] = dataclasses.field(init=False, default_factory=list)
    # Told the id of each session a write tool changed (resource subscriptions).
    _change_listeners: list[Callable[[str], None]] = dataclasses.field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.tools = build_tools(self.state.config)
        self.calls = CallFigures(self.tools)

    def add_change_listener(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(session_id)`` after each tool call that changed that session (a write
        tool's success, end_session included); returns what stops it. It must not block."""
        self._change_listeners.append(listener)
        return lambda: self._change_listeners.remove(listener) if listener in self._change_listeners else None

    def add_stats(self, source: Callable[[], dict[str, Any]]) -> None:
        """``server_stats`` shows what ``source()`` returns too."""
        self._stats_sources.append(source)

    def stats(self) -> dict[str, Any]:
        stats = dict(self.state.stats())
        for source in self._stats_sources:
            stats.update(source())
        stats["uptime_seconds"] = round(time.monotonic() - self.started_at, 3)
        return stats

    def session(self, caller: Caller, arguments: dict[str, Any]) -> Session:
        """The session the checked ``arguments`` name by ``sessionId``, as ``caller`` may use it."""
        return caller.session(self.state, arguments["sessionId"])


# -- replies ------------------------------------------------------------------------------


def _pretty(value: Any) -> str:
    """``value`` as indented JSON text, as ``json.dumps(value, indent=2)`` lays it out.

    orjson, because with an indent the standard library encodes in pure
    Python: that was the largest single cost of a get_context call. The
    text differs only in how a float's exponent is written (``1e-7``, not
    ``1e-07``); an integer past 64 bits, which orjson does not write, goes
    to the standard library.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return json.dumps(value, indent=2, ensure_ascii=False)


def _compact(value: Any) -> str:
    """``value`` as JSON text without spaces, as ``json.dumps(value, ensure_ascii=False,
    separators=(",", ":"))`` writes it, by orjson (15 times faster). As in :func:`_pretty`,
    a float's exponent is written as JavaScript writes it (``1e-7``, not ``1e-07``)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- schemas ------------------------------------------------------------------------------

_UUID = {"type": "string", "format": "uuid", "description": "the id create_session returned"}
_ANY_JSON: dict[str, Any] = {"description": "any JSON value (usually a string)"}
_TOTAL = {"type": "integer", "minimum": 0}


def _request_id(config: Config) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": config.max_request_id_length,
        "description": "optional idempotency key: a retry with the same requestId (and the same "
        "arguments) returns the first outcome instead of applying again (a retried set_preference "
        f"answers the metadata as it is now); the session remembers its last {config.max_request_ids} keys",
    }


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


_EVENT = _object(
    {
        "type": {"type": "string"},
        "payload": {"type": "object"},
        "time": {"type": "string", "format": "date-time"},
    },
    ["type", "payload", "time"],
)
_CONTEXT = _object(
    {
        "sessionId": {"type": "string"},
        "totalEvents": _TOTAL,
        "metadata": {"type": "object"},
        "recentEvents": {"type": "array", "items": _EVENT},
    },
    ["sessionId", "totalEvents", "metadata", "recentEvents"],
)


# -- handlers ------------------------------------------------------------------------------


async def _create_session(ctx: ToolContext, caller: Caller, arguments: dict[str, Any]) -> ToolResult:
    session = await ctx.state.create_session(caller.client_id(arguments["clientId"]))
    result = {
        "sessionId": session.id,
        "message": "Session created. Use this sessionId in subsequent tool calls.",
    }
    return ToolResult(_pretty(result), result)


# One message to one session each (see OneTurn): the message from the
# checked arguments, and the result from the turn's reply.

_ADD_CONTEXT_TOOL = OneTurn(
    lambda session, arguments: add_context_message(
        session, arguments["key"], arguments["value"], request_id=arguments.get("requestId")
    ),
    lambda session_id, arguments, total: ToolResult(
        f"Context added. Session has {total} events.", {"sessionId": session_id, "totalEvents": total}
    ),
)

_RECORD_ACTION_TOOL = OneTurn(
    lambda session, arguments: record_action_message(
        session, arguments["action"], details=arguments.get("details"), request_id=arguments.get("requestId")
    ),
    lambda session_id, arguments, total: ToolResult(
        f"Action recorded. Total events in session: {total}", {"sessionId": session_id, "totalEvents": total}
    ),
)

_GET_CONTEXT_TOOL = OneTurn(
    lambda session, arguments: context_message(session, max_turns=arguments["maxTurns"]),
    lambda session_id, arguments, context: ToolResult(_pretty(context), context),
)

_SET_PREFERENCE_TOOL = OneTurn(
    lambda session, arguments: set_preference_message(
        session, arguments["key"], arguments["value"], request_id=arguments.get("requestId")
    ),
    lambda session_id, arguments, metadata: ToolResult(
        "Preference set. Current metadata: " + _compact(metadata),
        {"sessionId": session_id, "metadata": metadata},
    ),
)

_INCREMENT_COUNTER_TOOL = OneTurn(
    lambda session, arguments: increment_message(
        session, arguments["key"], by=arguments["by"], request_id=arguments.get("requestId")
    ),
    lambda session_id, arguments, value: ToolResult(
        f"Counter: {value}", {"sessionId": session_id, "key": arguments["key"], "value": value}
    ),
)

_END_SESSION_TOOL = OneTurn(
    lambda session, arguments: END_SESSION,
    lambda session_id, arguments, _: ToolResult(
        "Session ended and cleaned up.", {"sessionId": session_id, "ended": True}
    ),
)


async def _list_sessions(ctx: ToolContext, caller: Caller, arguments: dict[str, Any]) -> ToolResult:
    client_id = caller.client_id(arguments["clientId"])
    page = await ctx.state.describe_sessions(
        client_id, cursor=arguments.get("cursor"), limit=arguments["limit"]
    )
    result: dict[str, Any] = {"clientId": client_id, "sessions": page.sessions}
    if page.next_cursor is not None:
        result["nextCursor"] = page.next_cursor
    return ToolResult(_pretty(result), result)


async def _server_stats(ctx: ToolContext, caller: Caller, arguments: dict[str, Any]) -> ToolResult:
    caller.check_operator("server_stats")
    stats = ctx.stats()
    stats["evictions"] = dict(stats["evictions"])
    return ToolResult(_pretty(stats), stats)


# -- annotations ---------------------------------------------------------------------------
#
# Every tool's world is the session store, closed: open_world False. A read
# changes nothing a caller sees (it counts as use of the session, keeping it
# from expiring idle, as reading a file sets its access time). A write that
# can replace a value (metadata[key]) or remove one is destructive; one that
# only adds is not. The oldest events a write drops past Config.max_events
# are the history's retention, not the write's doing: the history is "the
# last max_events events" and totalEvents counts them all. Idempotent:
# the same call again changes nothing more. A requestId makes any write's
# retry change nothing, but a hint is per tool, not per call: a tool that
# applies again without one is not idempotent.

_READ_ONLY = Annotations(read_only=True, open_world=False)


def build_tools(config: Config) -> dict[str, Tool]:
    """The tools, by name, for a state opened with ``config``: their schemas state its limits."""
    request_id = _request_id(config)
    tools = [
        Tool(
            "create_session",
            "Start a new tracked session for multi-turn interactions",
            _object(
                {
                    "clientId": {
                        "type": "string",
                        "default": DEFAULT_CLIENT_ID,
                        "description": "a label that groups sessions (not a password)",
                    }
                }
            ),
            _object(
                {"sessionId": {"type": "string"}, "message": {"type": "string"}}, ["sessionId", "message"]
            ),
            _create_session,
            "Create session",
            # Adds a session, replacing nothing; again: another session.
            Annotations(read_only=False, destructive=False, idempotent=False, open_world=False),
        ),
        Tool(
            "add_context",
            "Add context to the session: sets metadata[key] and records a context event",
            _object(
                {"sessionId": _UUID, "key": {"type": "string"}, "value": _ANY_JSON, "requestId": request_id},
                ["sessionId", "key", "value"],
            ),
            _object({"sessionId": {"type": "string"}, "totalEvents": _TOTAL}, ["sessionId", "totalEvents"]),
            _ADD_CONTEXT_TOOL,
            "Add context",
            # Replaces metadata[key] if set; again: another event.
            Annotations(read_only=False, destructive=True, idempotent=False, open_world=False),
        ),
        Tool(
            "record_action",
            "Record an action and its result in the session history",
            _object(
                {
                    "sessionId": _UUID,
                    "action": {"type": "string"},
                    "details": {"type": "string"},
                    "requestId": request_id,
                },
                ["sessionId", "action"],
            ),
            _object({"sessionId": {"type": "string"}, "totalEvents": _TOTAL}, ["sessionId", "totalEvents"]),
            _RECORD_ACTION_TOOL,
            "Record action",
            # Appends an event, replacing nothing; again: another event.
            Annotations(read_only=False, destructive=False, idempotent=False, open_world=False),
        ),
        Tool(
            "get_context",
            "Retrieve conversation context for the session",
            _object(
                {
                    "sessionId": _UUID,
                    "maxTurns": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": config.max_turns_limit,
                        "default": config.default_max_turns,
                    },
                },
                ["sessionId"],
            ),
            _CONTEXT,
            _GET_CONTEXT_TOOL,
            "Get context",
            _READ_ONLY,
        ),
        Tool(
            "set_preference",
            "Store a user preference in the session metadata",
            _object(
                {"sessionId": _UUID, "key": {"type": "string"}, "value": _ANY_JSON, "requestId": request_id},
                ["sessionId", "key", "value"],
            ),
            _object(
                {"sessionId": {"type": "string"}, "metadata": {"type": "object"}}, ["sessionId", "metadata"]
            ),
            _SET_PREFERENCE_TOOL,
            "Set preference",
            # Replaces metadata[key] if set; again with the same value: the same metadata.
            Annotations(read_only=False, destructive=True, idempotent=True, open_world=False),
        ),
        Tool(
            "increment_counter",
            "Add to an integer counter in the session metadata, atomically",
            _object(
                {
                    "sessionId": _UUID,
                    "key": {"type": "string", "default": "counter"},
                    "by": {"type": "integer", "default": 1},
                    "requestId": request_id,
                },
                ["sessionId"],
            ),
            _object(
                {"sessionId": {"type": "string"}, "key": {"type": "string"}, "value": {"type": "integer"}},
                ["sessionId", "key", "value"],
            ),
            _INCREMENT_COUNTER_TOOL,
            "Increment counter",
            # Adds to a counter: the value before is the value after minus by, and a key holding
            # anything but an integer is refused, not replaced. Again: added twice.
            Annotations(read_only=False, destructive=False, idempotent=False, open_world=False),
        ),
        Tool(
            "end_session",
            "End an active session and clean up resources",
            _object({"sessionId": _UUID}, ["sessionId"]),
            _object({"sessionId": {"type": "string"}, "ended": {"type": "boolean"}}, ["sessionId", "ended"]),
            _END_SESSION_TOOL,
            "End session",
            # Removes the session, metadata and events. Again: "not found", nothing more changes.
            Annotations(read_only=False, destructive=True, idempotent=True, open_world=False),
        ),
        Tool(
            "list_sessions",
            "List a client's live sessions, oldest first, with their creation and last-activity times, "
            "one page at a time: pass nextCursor back as cursor for the next page",
            _object(
                {
                    "clientId": {"type": "string", "default": DEFAULT_CLIENT_ID},
                    "cursor": {"type": "string", "description": "nextCursor of the page before"},
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": config.max_list_page_size,
                        "default": config.list_page_size,
                        "description": "sessions per page",
                    },
                }
            ),
            _object(
                {
                    "clientId": {"type": "string"},
                    "sessions": {
                        "type": "array",
                        "items": _object(
                            {
                                "sessionId": {"type": "string"},
                                "createdAt": {"type": "string"},
                                "lastActivity": {"type": "string"},
                            },
                            ["sessionId", "createdAt", "lastActivity"],
                        ),
                    },
                    "nextCursor": {"type": "string", "description": "absent on the last page"},
                },
                ["clientId", "sessions"],
            ),
            _list_sessions,
            "List sessions",
            _READ_ONLY,
        ),
        Tool(
            "server_stats",
            "Uptime, memory, actors, sessions, activations, evictions, restarts, commit latency, database size",
            _object({}),
            {"type": "object"},
            _server_stats,
            "Server stats",
            _READ_ONLY,
        ),
    ]
    return {tool.name: tool for tool in tools}


async def call_tool(
    ctx: ToolContext, name: str, arguments: dict[str, Any] | None, caller: Caller = OWNER
) -> ToolResult:
    """Run one tool for ``caller`` on its checked arguments; raise ToolError with a readable
    message on any refusal."""
    tool = ctx.tools.get(name)
    if tool is None:
        ctx.calls.record(name, INVALID_INPUT, 0.0)
        raise ToolError(f"unknown tool {clipped_repr(name)}; the tools are: {', '.join(ctx.tools)}")
    started = time.perf_counter()
    try:
        arguments = arguments or {}
        if not isinstance(arguments, dict):
            raise InvalidInput("arguments must be a JSON object")
        result = await tool.handler(ctx, caller, tool.check_arguments(arguments))
    except BaseException as error:
        refusal = _failed(ctx, name, error, started)
        if refusal is not error:
            raise refusal from None
        raise
    _succeeded(ctx, tool, result, started)
    return result


def _failed(ctx: ToolContext, name: str, error: E, started: float) -> E | ToolError:
    """Count a call that raised ``error``; what it answers: ToolError for a refusal (an
    ActorStateError), else the error itself (a bug, or the caller cancelled)."""
    ctx.calls.record(name, outcome_of(error), time.perf_counter() - started)
    return ToolError(str(error)) if isinstance(error, ActorStateError) else error


def _succeeded(ctx: ToolContext, tool: Tool, result: ToolResult, started: float) -> None:
    ctx.calls.record(tool.name, OK, time.perf_counter() - started)
    if ctx._change_listeners and not tool.annotations.read_only:
        session_id = result.structured.get("sessionId")
        if session_id is not None:
            for listener in tuple(ctx._change_listeners):
                listener(session_id)


# What call_now answers: the tool's result, ToolError for a refusal (what
# call_tool raises), or any other exception (a bug, as call_tool raises it).
Outcome = ToolResult | Exception


class HeldCall:
    """A call :func:`call_now` started whose reply waits (for its commit, or for a turn
    requeued after a crash)."""

    __slots__ = ("_cancelled", "_envelope", "_finish")

    def __init__(
        self,
        envelope: Envelope[Any],
        finish: Callable[[Envelope[Any]], Outcome],
        cancelled: Callable[[], None],
    ) -> None:
        self._envelope = envelope
        self._finish = finish
        self._cancelled = cancelled

    def then(self, deliver: Callable[[Outcome], None]) -> None:
        """Hand the call's outcome to ``deliver`` once its reply is released, on the event loop
        (never once cancelled). It runs inside the commit: what it raises is logged, and
        goes no further."""
        finish = self._finish

        def settled(envelope: Envelope[Any]) -> None:
            try:
                outcome = finish(envelope)
            except Exception as error:  # a change listener raised: the call answers it, as call_tool's
                outcome = error
            try:
                deliver(outcome)
            except Exception:
                logger.exception("delivering the reply of a held call failed")

        self._envelope.settled = settled

    def cancel(self) -> None:
        """Nobody waits for the reply any more: ``deliver`` is never called, and the call counts
        as cancelled. Its turn has run: the change commits with the others, as for a call
        cancelled after its turn in :func:`call_tool` (and, like that one, a conflict's replay
        leaves it out)."""
        envelope = self._envelope
        if envelope.done or envelope.cancelled:
            return
        envelope.cancelled = True
        self._cancelled()


def call_now(
    ctx: ToolContext, name: str, arguments: dict[str, Any] | None, caller: Caller = OWNER
) -> Outcome | HeldCall | None:
    """Answer a call without awaiting, if its tool is one turn (:class:`OneTurn`) and the
    session can take it at once (see :func:`actorstate.state.send_now`); None if not (nothing was done:
    :func:`call_tool` it).

    Otherwise the call went as :func:`call_tool` would take it (the same
    checks, the same figures, the same listeners told): its :data:`Outcome`,
    or a :class:`HeldCall` when the reply waits for its commit.
    """
    tool = ctx.tools.get(name)
    if tool is None or tool.one_turn is None:
        return None
    one_turn = tool.one_turn
    started = time.perf_counter()
    try:
        arguments = arguments or {}
        if not isinstance(arguments, dict):
            raise InvalidInput("arguments must be a JSON object")
        checked = tool.check_arguments(arguments)
        session = ctx.session(caller, checked)
        envelope = send_now(session, one_turn.message(session, checked))
    except Exception as error:
        return _failed(ctx, name, error, started)
    if envelope is None:
        return None
    session_id = session.id

    def finish(envelope: Envelope[Any]) -> Outcome:
        try:
            result = one_turn.result(session_id, checked, envelope.unwrap())
        except Exception as error:
            return _failed(ctx, name, error, started)
        _succeeded(ctx, tool, result, started)
        return result

    if envelope.done:
        return finish(envelope)

    def cancelled() -> None:
        ctx.calls.record(name, CANCELLED, time.perf_counter() - started)

    return HeldCall(envelope, finish, cancelled)
