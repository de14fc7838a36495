"""The fast path for the handshake: ``initialize``, ``notifications/initialized``, ``tools/list`` and ``ping``.

A client's first messages are the handshake and ``tools/list``; answered
here, as the SDK's server answers them, they need nothing of the SDK (whose
import is most of a cold start). :meth:`HandshakeFastPath.take` takes only
the plainest form of each message and leaves everything else to the SDK,
which stays the source of truth; ``tests/transport/test_handshake`` drives
the same messages through both paths and compares the replies byte for byte.

What it takes:

- the first ``initialize``, if nothing has gone to the SDK yet, with exactly
  ``protocolVersion`` (a string), ``capabilities`` (``roots`` with a boolean
  ``listChanged``, empty ``sampling`` and ``elicitation``) and ``clientInfo``
  (``name``, ``version`` and maybe ``title``, strings). The version is
  negotiated as the SDK negotiates it: one of its handshake versions is
  echoed, any other string gets the newest. The SDK's server must still
  learn of the handshake, for the requests only it answers: the request is
  kept, and :meth:`HandshakeFastPath.replay` hands it over (under
  :data:`REPLAYED_INITIALIZE_ID`, a reply nobody reads) when the SDK starts;
- ``notifications/initialized`` after that initialize, before the SDK starts
  (kept for the replay too);
- ``tools/list`` (no params, or only a ``cursor``, which lists everything
  anyway) and ``ping`` (no params) once the connection is initialized at a
  handshake version.

Ids are taken as :mod:`.fast_path` takes them: integers and strings, and no
run of 19 digits on the line (an integer orjson may not read as the SDK does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .. import __version__
from .left_to_the_sdk import left_to_the_sdk

if TYPE_CHECKING:
    from collections.abc import Callable

    from .tools import Tool

__all__ = [
    "HANDSHAKE_VERSIONS",
    "INSTRUCTIONS",
    "REPLAYED_INITIALIZE_ID",
    "SERVER_NAME",
    "HandshakeFastPath",
    "HandshakeReply",
]

SERVER_NAME = "actorstate"
INSTRUCTIONS = (
    "Session state that survives restarts and concurrent calls. Call create_session once, then pass its "
    "sessionId to the other tools. clientId only groups sessions for list_sessions; it is not a password."
)
# The SDK's handshake versions (mcp_types.version.HANDSHAKE_PROTOCOL_VERSIONS),
# newest last: a test checks they are the SDK's. At all of them the SDK shapes
# the results answered here alike.
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
# The id the kept initialize is replayed under when the SDK's server starts:
# its reply is dropped on the way out, compared with the one the client got.
REPLAYED_INITIALIZE_ID = "actorstate/replayed-initialize"

# What the SDK's server declares for the handlers ours registers (completion,
# logging/setLevel, resources with subscriptions, tools; neither list announcing
# changes), in the SDK's order: the fields of its models, alphabetical.
_CAPABILITIES = {
    "completions": {},
    "logging": {},
    "resources": {"listChanged": False, "subscribe": True},
    "tools": {"listChanged": False},
}
_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_INITIALIZE_KEYS = frozenset({"protocolVersion", "capabilities", "clientInfo"})
_CLIENT_INFO_KEYS = frozenset({"name", "version", "title"})
_CAPABILITY_KEYS = frozenset({"roots", "sampling", "elicitation"})
# The fields the SDK's JSON-schema models declare, dumped first and in this
# order; any other keyword of a schema follows, in the schema's own order.
_SCHEMA_FIELDS = ("$schema", "properties", "required", "type")


class HandshakeReply:
    """What :meth:`HandshakeFastPath.take` answers: the request's id and method, and the reply line.

    ``line`` is None for a notification (nothing to write); ``result`` is the
    reply's result, for those who watch ``initialize`` replies.
    """

    __slots__ = ("id", "line", "method", "result")

    def __init__(
        self, request_id: int | str | None, method: str, result: dict[str, Any] | None, line: bytes | None
    ) -> None:
        self.id = request_id
        self.method = method
        self.result = result
        self.line = line


class HandshakeFastPath:
    """Takes the handshake messages it can answer itself; see the module docstring.

    Args:
        tools: the tools ``tools/list`` lists, in order.
        negotiated: the protocol version of the last ``initialize`` answered
            successfully, by either path (None before); the tools/call fast
            path keeps it (see :class:`.fast_path.ToolCallFastPath`).
    """

    def __init__(self, tools: dict[str, Tool], negotiated: Callable[[], str | None]) -> None:
        self._tools_result = orjson.dumps({"tools": [_listed(tool) for tool in tools.values()]})
        self._negotiated = negotiated
        self._initialize: dict[str, Any] | None = None  # the request answered here, kept for the replay
        self._initialized: dict[str, Any] | None = None  # the notification that followed, kept too
        self._passed_to_sdk = False

    # -- the connection, as seen from the wire ----------------------------------

    def passed_to_sdk(self) -> None:
        """A message went to the SDK: from now on, every ``initialize`` does too."""
        self._passed_to_sdk = True

    def replay(self) -> list[dict[str, Any]]:
        """What the SDK's server must read before anything else: the ``initialize`` answered here
        (under :data:`REPLAYED_INITIALIZE_ID`) and the ``notifications/initialized`` that followed it."""
        if self._initialize is None:
            return []
        messages = [{**self._initialize, "id": REPLAYED_INITIALIZE_ID}]
        if self._initialized is not None:
            messages.append(self._initialized)
        return messages

    def replayed_reply(self) -> bytes | None:
        """The reply this path gave to the kept ``initialize``, as it reads under :data:`REPLAYED_INITIALIZE_ID`."""
        if self._initialize is None:
            return None
        return _reply(REPLAYED_INITIALIZE_ID, self._initialize_result(self._initialize["params"]))

    # -- messages ---------------------------------------------------------------

    def take(self, line: bytes) -> HandshakeReply | None:
        """The reply to ``line`` if this path answers it, else None (the SDK does)."""
        if left_to_the_sdk(line):
            return None
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if type(document) is not dict or not document.keys() <= _REQUEST_KEYS:
            return None
        method = document.get("method")
        if document.get("jsonrpc") != "2.0" or type(method) is not str:
            return None
        if "id" not in document:
            return self._take_notification(method, document)
        request_id = document["id"]
        if type(request_id) is not int and type(request_id) is not str:
            return None
        params = document.get("params", {})
        if type(params) is not dict:
            return None
        if method == "initialize":
            return self._take_initialize(request_id, document)
        if self._negotiated() not in HANDSHAKE_VERSIONS:
            return None  # not initialized (or at a version whose shapes are the SDK's to give)
        if method == "tools/list" and params.keys() <= {"cursor"} and type(params.get("cursor", "")) is str:
            return HandshakeReply(request_id, method, None, _raw_reply(request_id, self._tools_result))
        if method == "ping" and not params:
            return HandshakeReply(request_id, method, {}, _reply(request_id, {}))
        return None

    def _take_initialize(self, request_id: int | str, document: dict[str, Any]) -> HandshakeReply | None:
        if (
            self._passed_to_sdk
            or self._initialize is not None
            or not _plain_initialize(document.get("params"))
        ):
            return None
        self._initialize = document
        result = self._initialize_result(document["params"])
        return HandshakeReply(request_id, "initialize", result, _reply(request_id, result))

    def _take_notification(self, method: str, document: dict[str, Any]) -> HandshakeReply | None:
        if method != "notifications/initialized" or document.get("params", {}) != {}:
            return None
        if self._passed_to_sdk or self._initialize is None:
            return None  # the SDK's to record (a bare one initializes it)
        self._initialized = document
        return HandshakeReply(None, method, None, None)

    @staticmethod
    def _initialize_result(params: dict[str, Any]) -> dict[str, Any]:
        requested = params["protocolVersion"]
        return {
            "capabilities": _CAPABILITIES,
            "instructions": INSTRUCTIONS,
            "protocolVersion": requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1],
            "serverInfo": {"name": SERVER_NAME, "version": __version__},
        }


def _plain_initialize(params: Any) -> bool:
    """Whether ``params`` is an initialize's in the plainest form, one the SDK surely accepts."""
    if type(params) is not dict or params.keys() != _INITIALIZE_KEYS:
        return False
    if type(params["protocolVersion"]) is not str:
        return False
    info = params["clientInfo"]
    if type(info) is not dict or not {"name", "version"} <= info.keys() <= _CLIENT_INFO_KEYS:
        return False
    if any(type(value) is not str for value in info.values()):
        return False
    capabilities = params["capabilities"]
    if type(capabilities) is not dict or not capabilities.keys() <= _CAPABILITY_KEYS:
        return False
    roots = capabilities.get("roots", {})
    if type(roots) is not dict or not roots.keys() <= {"listChanged"}:
        return False
    if type(roots.get("listChanged", False)) is not bool:
        return False
    return all(capabilities.get(name, {}) == {} for name in ("sampling", "elicitation"))


def _listed(tool: Tool) -> dict[str, Any]:
    """``tool`` as the SDK lists it (see :func:`.server.tool_annotations`): its fields and its
    annotations' in alphabetical order, its schemas' fields first, what is not given left out."""
    listed: dict[str, Any] = {}
    annotations: dict[str, Any] = tool.annotations.hints()
    if tool.title is not None:
        annotations["title"] = tool.title
    if annotations:
        listed["annotations"] = annotations
    listed["description"] = tool.description
    listed["inputSchema"] = _sdk_schema(tool.input_schema)
    listed["name"] = tool.name
    listed["outputSchema"] = _sdk_schema(tool.output_schema)
    if tool.title is not None:
        listed["title"] = tool.title
    return listed


def _sdk_schema(schema: dict[str, Any]) -> dict[str, Any]:
    ordered = {field: schema[field] for field in _SCHEMA_FIELDS if schema.get(field) is not None}
    ordered.update((key, value) for key, value in schema.items() if key not in _SCHEMA_FIELDS)
    return ordered


def _reply(request_id: int | str, result: dict[str, Any]) -> bytes:
    return _raw_reply(request_id, orjson.dumps(result))


def _raw_reply(request_id: int | str, result: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + orjson.dumps(request_id) + b',"result":' + result + b"}\n"
