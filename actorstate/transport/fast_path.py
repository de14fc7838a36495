"""The fast path for ``tools/call``: one parse, one turn, one encode.

Through the SDK's server a tool call costs a task and a memory channel,
several pydantic validations and serialisations and a middleware chain,
several times the work of the call itself. Almost every message a session
server reads is a ``tools/call``, so the transport offers each line to
:meth:`ToolCallFastPath.take` first: a well-formed call on a connection whose
handshake is done is parsed once (orjson), its arguments are checked by the
check compiled from the tool's input schema and the tool runs
(:func:`.tools.call_tool`, the same function the SDK path calls), and the
reply is encoded as the SDK's server would encode it. Anything else
(resources, notifications, errors, a call with ``_meta`` or fields we do not
know, ids of odd types, protocol versions whose result shape differs) is
left to the SDK, which stays the source of truth, but for the handshake,
``tools/list`` and ``ping``, which :mod:`.handshake` answers;
``tests/transport/test_fast_path`` drives the same requests through both
paths and compares the replies.

The fast path starts only once ``initialize`` was answered successfully,
by the SDK's server or the handshake fast path (the transport shows it the
requests and replies going out), and only for the handshake versions whose
``tools/call`` result shape it reproduces.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson

from .left_to_the_sdk import left_to_the_sdk
from .tools import HeldCall, ToolError, call_now, call_tool

if TYPE_CHECKING:
    from .tools import Outcome, ToolContext

__all__ = [
    "FAST_PROTOCOL_VERSIONS",
    "FastCall",
    "ToolCallFastPath",
    "connection_closed_line",
    "error_line",
    "reply_line",
]

# The handshake versions whose tools/call result the SDK shapes as
# {"content", "isError", "structuredContent"}; the 2026 era adds
# resultType and a serverInfo stamp, and goes through the SDK.
FAST_PROTOCOL_VERSIONS = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"})

_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PARAMS_KEYS = frozenset({"name", "arguments"})
# What the SDK answers a request still running when the server stops.
_CONNECTION_CLOSED = -32000


class FastCall:
    """A ``tools/call`` the fast path took: its id as the client sent it, the tool and its arguments."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self, request_id: int | str, name: str, arguments: dict[str, Any] | None) -> None:
        self.id = request_id
        self.name = name
        self.arguments = arguments


class ToolCallFastPath:
    """Takes the ``tools/call`` requests it can answer itself; see the module docstring."""

    def __init__(self, context: ToolContext) -> None:
        self._context = context
        self._initialize_ids: set[int | str] = set()
        self.protocol_version: str | None = None  # negotiated, once initialize was answered
        self.calls = 0  # answered here
        context.add_stats(lambda: {"fast_path_calls": self.calls})

    # -- the handshake, watched from the wire ----------------------------------

    def request_seen(self, method: str, request_id: int | str) -> None:
        """A request went to the SDK; an ``initialize`` one is watched for its reply."""
        if method == "initialize":
            self._initialize_ids.add(request_id)

    def reply_seen(self, request_id: int | str, result: dict[str, Any] | None) -> None:
        """The SDK answered a request (``result`` None: with an error)."""
        if request_id in self._initialize_ids:
            self._initialize_ids.discard(request_id)
            if result is not None:
                version = result.get("protocolVersion")
                self.protocol_version = version if isinstance(version, str) else None

    @property
    def active(self) -> bool:
        return self.protocol_version in FAST_PROTOCOL_VERSIONS

    # -- calls ---------------------------------------------------------------

    def take(self, line: bytes) -> FastCall | None:
        """The call on ``line`` if the fast path answers it, else None (the SDK does)."""
        if b'"tools/call"' not in line or not self.active:
            return None
        if left_to_the_sdk(line):
            return None
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None  # the SDK's parser decides what is wrong with it
        if type(document) is not dict or not document.keys() <= _REQUEST_KEYS:
            return None
        if document.get("jsonrpc") != "2.0" or document.get("method") != "tools/call":
            return None
        request_id = document.get("id")
        if type(request_id) is not int and type(request_id) is not str:
            return None  # absent (a notification), or a type the SDK refuses or coerces
        params = document.get("params")
        if type(params) is not dict or not params.keys() <= _PARAMS_KEYS:
            return None
        name = params.get("name")
        arguments = params.get("arguments")
        if type(name) is not str or (arguments is not None and type(arguments) is not dict):
            return None
        return FastCall(request_id, name, arguments)

    async def answer(self, call: FastCall) -> bytes:
        """Run the call's tool; its reply line, encoded as the SDK's server encodes it.

        An unexpected exception becomes the JSON-RPC error the SDK would send
        (code 0, the exception's text), and is raised to be logged too.
        """
        self.calls += 1
        try:
            result = await call_tool(self._context, call.name, call.arguments)
        except ToolError as error:
            return reply_line(call.id, error)
        return reply_line(call.id, result)

    def answer_now(self, call: FastCall) -> bytes | HeldCall | None:
        """The call's reply line, answered without awaiting (see :func:`.tools.call_now`); a
        :class:`HeldCall` whose outcome :func:`reply_line` encodes once its reply is released;
        or None: nothing was done, :meth:`answer` it.

        An unexpected exception is raised, as from :meth:`answer`.
        """
        outcome = call_now(self._context, call.name, call.arguments)
        if outcome is None:
            return None
        self.calls += 1
        if isinstance(outcome, HeldCall):
            return outcome
        return reply_line(call.id, outcome)


def reply_line(request_id: int | str, outcome: Outcome) -> bytes:
    """A call's reply, encoded as the SDK's server encodes it: its result, or a refusal as an
    ``isError`` result. Any other exception is raised (the caller logs it and answers with
    :func:`error_line`, as the SDK answers a raising handler)."""
    if isinstance(outcome, ToolError):
        body: dict[str, Any] = {"content": [{"text": str(outcome), "type": "text"}], "isError": True}
    elif isinstance(outcome, Exception):
        raise outcome
    else:
        body = {
            "content": [{"text": outcome.text, "type": "text"}],
            "isError": False,
            "structuredContent": outcome.structured,
        }
    return _encode({"jsonrpc": "2.0", "id": request_id, "result": body})


def error_line(request_id: int | str, code: int, message: str) -> bytes:
    return _encode({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


def connection_closed_line(request_id: int | str) -> bytes:
    """The SDK's answer to a request still running when the server stops."""
    return error_line(request_id, _CONNECTION_CLOSED, "Connection closed")


def _encode(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message) + b"\n"
    except TypeError:  # an integer past 64 bits, which orjson does not write
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
