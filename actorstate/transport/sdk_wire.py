"""The SDK's side of the stdio wire: lines read as the SDK's messages, and its replies written.

Imported only when the first message the fast paths do not take arrives (or
at once when there are none): everything here needs the SDK, and importing
it is most of a cold start. :class:`SdkWire` reads each line it is handed as
the SDK's ``SessionMessage`` for the server's read stream, and answers what
the SDK's transport drops silently: a line that is not JSON gets a parse
error (-32700), JSON that is not a JSON-RPC message gets -32600 (-32602 when
only a request's params are wrong), each naming the problem. Before the
first of them it hands the server what the handshake fast path answered,
replayed (see :mod:`.handshake`). Its write stream encodes the server's
replies for the transport's writer.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import mcp.types as types
import pydantic_core
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from pydantic import ValidationError

from .handshake import REPLAYED_INITIALIZE_ID
from .wire_errors import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, duplicate_id, error_line

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.streams.memory import MemoryObjectSendStream

    from .fast_path import ToolCallFastPath
    from .handshake import HandshakeFastPath
    from .in_flight import InFlight

__all__ = ["SdkWire"]

logger = logging.getLogger(__name__)

Outgoing = tuple[bytes, "int | str | None"]


class SdkWire:
    """Hands the server the lines the fast paths did not take, and encodes its replies.

    Args:
        to_server: the server's read stream, sending end.
        out: the writer's queue: encoded lines, with the id of the request
            each answers (None for the rest).
        requests: the requests in flight (both paths).
        max_in_flight: see :func:`.stdio.stdio_transport`.
        fast_path: the tools/call fast path, shown every request and reply
            that pass here (it watches for ``initialize``).
        cancel_fast_call: stops a fast-path call a client cancels.
        handshake: the handshake fast path, whose answers are replayed
            before the first line.
    """

    def __init__(
        self,
        to_server: MemoryObjectSendStream[Any],
        out: MemoryObjectSendStream[Outgoing],
        requests: InFlight,
        max_in_flight: int,
        *,
        fast_path: ToolCallFastPath | None,
        cancel_fast_call: Callable[[object], object] | None,
        handshake: HandshakeFastPath | None,
    ) -> None:
        self._to_server = to_server
        self._out = out
        self._requests = requests
        self._max_in_flight = max_in_flight
        self._fast_path = fast_path
        self._cancel_fast_call = cancel_fast_call
        self._handshake = handshake
        self._replayed = handshake is None
        self.write_stream = EncodingStream(out.clone(), requests, fast_path)

    async def deliver(self, line: bytes) -> None:
        """Hand ``line`` to the server as the SDK reads it, or answer the error if it cannot be read."""
        if not self._replayed:
            await self._replay()
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValidationError as error:  # not JSON, or not JSON-RPC
            rejection = _rejection(line, error)
            if rejection is not None:
                await self._out.send((rejection, None))
            await self._to_server.send(error)  # the server logs and drops it, as with the SDK transport
            return
        if isinstance(message, types.JSONRPCRequest):
            await self._requests.wait_for_fewer_than(self._max_in_flight)
            if message.id in self._requests:
                # The SDK keys its requests by id: a second one under an id in
                # flight would take over the first one's entry. Refused, not run.
                await self._out.send((duplicate_id(message.id), None))
                return
            self._requests.started(message.id)
            if self._fast_path is not None:
                self._fast_path.request_seen(message.method, message.id)
            # The SDK never answers a request its client cancelled; it says so
            # through this hook once the request has settled.
            metadata = ServerMessageMetadata(
                on_request_unanswered=self._requests.settled_unanswered(message.id)
            )
            await self._to_server.send(SessionMessage(message, metadata=metadata))
            return
        if isinstance(message, types.JSONRPCNotification) and _has_id(line):
            # A request whose id is not a string or an integer reads as a
            # notification, which nobody answers: refuse it instead.
            refusal = error_line(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
            await self._out.send((refusal, None))
            return
        if (
            self._cancel_fast_call is not None
            and isinstance(message, types.JSONRPCNotification)
            and message.method == "notifications/cancelled"
            and message.params
        ):
            self._cancel_fast_call(message.params.get("requestId"))
        await self._to_server.send(SessionMessage(message))

    async def _replay(self) -> None:
        """The handshake the fast path answered, for the server to read first (its reply is dropped)."""
        self._replayed = True
        assert self._handshake is not None
        self._handshake.passed_to_sdk()
        self.write_stream.expect_replayed_reply(self._handshake.replayed_reply())
        for document in self._handshake.replay():
            message = types.jsonrpc_message_adapter.validate_python(document, by_name=False)
            await self._to_server.send(SessionMessage(message))


def _encode(message: SessionMessage) -> bytes:
    return message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


class EncodingStream:
    """The server's write stream: encodes each message and queues its bytes for the writer.

    A reply stays in flight until the writer has written it; one that can no
    longer be queued never will be, so it leaves at once.
    """

    def __init__(
        self,
        sink: MemoryObjectSendStream[Outgoing],
        requests: InFlight,
        fast_path: ToolCallFastPath | None = None,
    ) -> None:
        self._sink = sink
        self._requests = requests
        self._fast_path = fast_path
        self._replayed_reply: bytes | None = None  # what the replayed initialize should be answered

    def expect_replayed_reply(self, line: bytes | None) -> None:
        """The server is about to read the replayed initialize: its reply is dropped, compared with ``line``."""
        self._replayed_reply = line

    async def send(self, message: SessionMessage, /) -> None:
        reply = message.message
        request_id = reply.id if isinstance(reply, types.JSONRPCResponse | types.JSONRPCError) else None
        if request_id == REPLAYED_INITIALIZE_ID and self._replayed_reply is not None:
            # Answered already, by the fast path: the client must not get it twice.
            expected, self._replayed_reply = self._replayed_reply, None
            line = _encode(message)
            if line != expected:
                logger.warning(
                    "the server answered the replayed initialize otherwise than the fast path did: "
                    "%r, not %r",
                    line,
                    expected,
                )
            return
        if request_id is not None and self._fast_path is not None:
            # The fast path starts once initialize is answered (and learns the version).
            self._fast_path.reply_seen(
                request_id, reply.result if isinstance(reply, types.JSONRPCResponse) else None
            )
        try:
            await self._sink.send((_encode(message), request_id))
        except BaseException:
            if request_id is not None:
                self._requests.answered(request_id)
            raise

    def close(self) -> None:
        self._sink.close()

    async def aclose(self) -> None:
        self._sink.close()

    async def __aenter__(self) -> EncodingStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def _rejection(line: bytes, error: ValidationError) -> bytes | None:
    """The error reply for a line the SDK could not read as a JSON-RPC message; None for none.

    It names the problem, and carries the request's id when the line can be
    read far enough to have one. The SDK's parser refuses some JSON that
    Python's reads (lone surrogate escapes, nesting past its limit), so the
    line is read again here, leniently, to find the id and what is wrong.
    A notification with array params (JSON-RPC's, not MCP's) gets no reply:
    it is a valid JSON-RPC notification, which JSON-RPC gives none, and its
    sender could match an error to nothing. The server logs it. Params that
    are neither an array nor an object are no JSON-RPC at all, and get
    -32600 without an id, as JSON-RPC's own examples answer them.
    """
    if line.startswith(_BYTE_ORDER_MARK):
        # Python's json reads past it, so the lenient reading below would blame the message.
        return error_line(
            PARSE_ERROR,
            "Parse error: the line starts with a byte order mark (the bytes EF BB BF), which JSON "
            "sent between programs must not have (RFC 8259, section 8.1): send it without one",
        )
    refusal = _parser_refusal(error)
    document = _read_leniently(line)
    if document is _UNREADABLE:
        problem = _explain(refusal, None) or "the line is not valid JSON" + (
            f" ({refusal})" if refusal else ""
        )
        return error_line(PARSE_ERROR, f"Parse error: {problem}")
    if not isinstance(document, dict):
        return error_line(
            INVALID_REQUEST, "Invalid Request: send one JSON-RPC message (a JSON object) per line"
        )
    request_id = document.get("id")
    problem = _explain(refusal, document) or _structural_problem(document)
    envelope = _message(_without_params(document)) if "params" in document else None
    # A notification with array params: no reply. "id" absent, since the SDK also reads a request
    # whose id is of a type JSON-RPC refuses (null, a float) as a notification (deliver refuses it).
    notification = isinstance(envelope, types.JSONRPCNotification) and "id" not in document
    if notification and isinstance(document["params"], list):
        return None
    if isinstance(envelope, types.JSONRPCRequest):
        return error_line(INVALID_PARAMS, f"Invalid params: {problem}", request_id)
    return error_line(INVALID_REQUEST, f"Invalid Request: {problem}", request_id)


_UNREADABLE = object()
_BYTE_ORDER_MARK = b"\xef\xbb\xbf"


def _read_leniently(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's own limit
        return _UNREADABLE


def _parser_refusal(error: ValidationError) -> str | None:
    """Why the SDK's JSON parser refused the line, or None if it read the JSON and the shape was wrong."""
    for detail in error.errors(include_url=False, include_input=False):
        if detail["type"] == "json_invalid":
            return str((detail.get("ctx") or {}).get("error", detail["msg"]))
    return None


def _explain(refusal: str | None, document: Any) -> str | None:
    if refusal is None:
        return None
    if refusal.startswith("recursion limit exceeded"):
        return "arrays or objects nested too deeply (the limit is about 200 levels)"
    if refusal.startswith("number out of range"):
        return "a number too long to read"
    if refusal.startswith("invalid unicode code point"):
        return "the line is not valid UTF-8"
    if document is not None and not _encodable(document):
        return "text that is not valid Unicode (an unpaired surrogate escape such as \\ud800)"
    return None


def _encodable(document: Any) -> bool:
    try:
        json.dumps(document, ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def _structural_problem(document: dict[str, Any]) -> str:
    if document.get("jsonrpc") != "2.0":
        return 'not a JSON-RPC 2.0 message ("jsonrpc" must be "2.0")'
    if "params" in document and not isinstance(document["params"], dict):
        return "params must be an object"
    return "not a JSON-RPC 2.0 message"


def _without_params(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "params"}


def _message(envelope: dict[str, Any]) -> Any:
    """``envelope`` (a message without its params) as the SDK reads it; None if it cannot.

    A request or a notification here means its params are what is wrong.
    """
    try:
        return types.jsonrpc_message_adapter.validate_json(
            json.dumps(envelope, ensure_ascii=False).encode(), by_name=False
        )
    except (ValueError, RecursionError):
        return None


def _has_id(line: bytes) -> bool:
    """Whether a line that parsed as a notification names an id after all (one of a type JSON-RPC refuses)."""
    try:
        # The parser that just accepted this line: it reads it again the same way.
        document = pydantic_core.from_json(line)
    except ValueError:
        return False
    return isinstance(document, dict) and "id" in document
