"""The stdio transport: JSON-RPC lines on stdin/stdout, with no thread hop per message.

The SDK's own stdio transport wraps the pipes in ``anyio.wrap_file``, so
every line read and every write is a worker-thread round trip. This one puts
the pipes in non-blocking mode and waits on them with
``anyio.wait_readable``/``wait_writable`` (epoll through asyncio or trio),
parses lines itself and feeds the SDK server the same streams of
``SessionMessage`` its ``Server.run`` expects.

It also answers what the SDK transport drops silently: a line that cannot
be read as JSON gets a JSON-RPC parse error (-32700), a line that is JSON but
not a JSON-RPC message gets -32600 (-32602 when only a request's params are
wrong: not an object, or holding text that is not valid Unicode), and a line
longer than the limit gets -32600 too. Each reply names the problem; the
server keeps serving after each, whatever the line (nesting at any depth
included). Split and joined lines are fine: input is split on newlines
whatever the read boundaries.

At end of input the server finishes what is in flight and the block exits
(and the state closes, flushing everything). ``stop_intake()`` (what a stop
signal calls) ends intake the same way: nothing more is read, and every
request already read is answered. Either way the answers get a grace period,
after which the server stops waiting.

Requests in flight are bounded: a request counts from the moment it is read
until its reply is written (or it settles unanswered, cancelled by its
client). At ``max_in_flight`` the transport stops reading until one leaves,
so a client that writes requests and never reads replies holds the server
to a fixed amount of memory; the pipe fills and the client's writes block.

Like the SDK, it serves the protocol from private duplicates of fds 0 and 1
and points fd 1 at stderr, so a stray ``print`` cannot corrupt the protocol.

With a :class:`~.fast_path.ToolCallFastPath`, each line is offered to it
first: the ``tools/call`` requests it takes run here, each in a task of its
own, and never reach the SDK; ``notifications/cancelled`` cancels them as the
SDK cancels its own, and when serving stops those still running are answered
"Connection closed", as the SDK answers its own. With a
:class:`~.handshake.HandshakeFastPath`, the handshake, ``tools/list`` and
``ping`` it takes are answered here too; before the server's first message,
it gets the handshake answered here, replayed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import mcp.types as types
import pydantic_core
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from pydantic import ValidationError

from ..backend import Cancellable, TaskSet, open_task_set
from .fast_path import FastCall, ToolCallFastPath, connection_closed_line, error_line
from .framing import LineFramer, TooLong
from .handshake import REPLAYED_INITIALIZE_ID, HandshakeFastPath, HandshakeReply
from .limits import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_LINE_BYTES, DEFAULT_STOP_GRACE
from .tools import clipped_repr

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_STOP_GRACE",
    "StdioWire",
    "stdio_transport",
]

_READ_CHUNK = 256 * 1024

logger = logging.getLogger(__name__)


def _encode(message: SessionMessage) -> bytes:
    return message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


def _error_line(code: int, message: str, request_id: Any = None) -> bytes:
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    return (
        json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}},
            separators=(",", ":"),
        ).encode()
        + b"\n"
    )


def _rejection(line: bytes, error: ValidationError) -> bytes:
    """The error reply for a line the SDK could not read as a JSON-RPC message.

    It names the problem, and carries the request's id when the line can be
    read far enough to have one. The SDK's parser refuses some JSON that
    Python's reads (lone surrogate escapes, nesting past its limit), so the
    line is read again here, leniently, to find the id and what is wrong.
    """
    refusal = _parser_refusal(error)
    document = _read_leniently(line)
    if document is _UNREADABLE:
        problem = _explain(refusal, None) or "the line is not valid JSON" + (
            f" ({refusal})" if refusal else ""
        )
        return _error_line(types.PARSE_ERROR, f"Parse error: {problem}")
    if not isinstance(document, dict):
        return _error_line(
            types.INVALID_REQUEST, "Invalid Request: send one JSON-RPC message (a JSON object) per line"
        )
    request_id = document.get("id")
    problem = _explain(refusal, document) or _structural_problem(document)
    if "params" in document and _is_request(_without_params(document)):
        return _error_line(types.INVALID_PARAMS, f"Invalid params: {problem}", request_id)
    return _error_line(types.INVALID_REQUEST, f"Invalid Request: {problem}", request_id)


_UNREADABLE = object()


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


def _is_request(envelope: dict[str, Any]) -> bool:
    """Whether ``envelope`` alone is a well-formed request (so its params are what is wrong)."""
    try:
        message = types.jsonrpc_message_adapter.validate_json(
            json.dumps(envelope, ensure_ascii=False).encode(), by_name=False
        )
    except (ValueError, RecursionError):
        return False
    return isinstance(message, types.JSONRPCRequest)


def _has_id(line: bytes) -> bool:
    """Whether a line that parsed as a notification names an id after all (one of a type JSON-RPC refuses)."""
    try:
        # The parser that just accepted this line: it reads it again the same way.
        document = pydantic_core.from_json(line)
    except ValueError:
        return False
    return isinstance(document, dict) and "id" in document


def _pollable(fd: int) -> bool:
    """Pipes and sockets are read non-blocking; anything else through a worker thread.

    Regular files cannot be polled (epoll refuses them), and a terminal's
    non-blocking flag is shared with the shell that owns it, so neither is
    switched to non-blocking mode.
    """
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Pipe:
    """One end of the wire: non-blocking when it can be polled, else via a worker thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pollable = _pollable(fd)
        self._was_blocking = os.get_blocking(fd)

    def switch(self) -> None:
        if self.pollable:
            os.set_blocking(self.fd, False)

    async def read(self) -> bytes:
        if not self.pollable:
            return await anyio.to_thread.run_sync(os.read, self.fd, _READ_CHUNK)
        while True:
            try:
                return os.read(self.fd, _READ_CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(self.fd)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if not self.pollable:
                written = await anyio.to_thread.run_sync(os.write, self.fd, view)
            else:
                try:
                    written = os.write(self.fd, view)
                except BlockingIOError:
                    await anyio.wait_writable(self.fd)
                    continue
            view = view[written:]

    def restore(self) -> None:
        if self.pollable:
            os.set_blocking(self.fd, self._was_blocking)


@dataclasses.dataclass(frozen=True, slots=True)
class StdioWire:
    """What :func:`stdio_transport` yields: the streams for ``Server.run``, and a way to stop reading."""

    read_stream: MemoryObjectReceiveStream[Any]
    write_stream: _EncodingStream
    stop_intake: Callable[[], None]
    """Stop reading input, as at end of input: every request already read is answered."""


@asynccontextmanager
async def stdio_transport(
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    stop_grace: float = DEFAULT_STOP_GRACE,
    buffer: int = 256,
    fast_path: ToolCallFastPath | None = None,
    handshake: HandshakeFastPath | None = None,
) -> AsyncIterator[StdioWire]:
    """Yield the streams for ``Server.run`` over the given fds (a :class:`StdioWire`).

    The read stream ends at end of input, or after ``stop_intake()``, once
    every request already read is answered (or the grace period is over);
    the block should then return (as ``Server.run`` does), and queued replies
    are written before this exits.

    Args:
        max_line_bytes: longer lines are refused (-32600) and dropped unread.
        max_in_flight: requests read whose reply is not written yet; at the
            bound, reading stops until a reply goes out (backpressure).
        stop_grace: seconds the requests already read get to be answered
            after end of input or ``stop_intake()``; then the read stream
            ends anyway, and the server cancels what is still running.
        buffer: messages queued between the wire and the server, each way.
        fast_path: answers the ``tools/call`` requests it takes, here,
            instead of the server (see :mod:`.fast_path`).
        handshake: answers the handshake, ``tools/list`` and ``ping`` when
            it takes them, here (see :mod:`.handshake`); what it answered
            of the handshake is replayed to the server before the first
            message the server gets.

    Error handling:
        ValueError: ``max_in_flight`` is less than 1, or ``stop_grace`` negative.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
    if stop_grace < 0:
        raise ValueError(f"stop_grace must not be negative, not {stop_grace}")
    restore_std: list[int] = []
    if (stdin_fd, stdout_fd) == (0, 1):
        sys.stdout.flush()
        wire_in, wire_out = os.dup(0), os.dup(1)
        restore_std = [os.dup(0), os.dup(1)]
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
        stdin_fd, stdout_fd = wire_in, wire_out
    # Both flags are read before either end changes: stdin and stdout may be one socket.
    source, sink = _Pipe(stdin_fd), _Pipe(stdout_fd)
    source.switch()
    sink.switch()

    to_server, from_wire = anyio.create_memory_object_stream[Any](buffer)
    # Everything bound for the client, already encoded, with the id of the
    # request it answers (None for the rest): the server's replies and the
    # errors this transport answers itself share one writer.
    out_send, out_receive = anyio.create_memory_object_stream[tuple[bytes, types.RequestId | None]](buffer)
    requests = _InFlight()
    to_wire = _EncodingStream(out_send.clone(), requests, fast_path)
    fast_calls = _FastCalls(fast_path, out_send.clone(), requests) if fast_path is not None else None

    sdk_told = False  # the server got a message, the handshake replay first
    reader_scope = anyio.CancelScope()
    stopping = False  # stop_intake() was called
    read_scope: anyio.CancelScope | None = None  # set while waiting for input

    def stop_intake() -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        # The lines already read may still wait for room (a client that does
        # not read its replies): the grace bounds everything from here on.
        reader_scope.deadline = min(reader_scope.deadline, anyio.current_time() + stop_grace)
        if read_scope is not None and source.pollable:
            # A pipe is read only once it is readable, so the cancel lands in
            # the wait and nothing read is lost. A file or terminal read in a
            # thread is left to finish, and its lines are served.
            read_scope.cancel()

    async def read_lines() -> None:
        with reader_scope:
            async with to_server, out_send:
                await read_into()
                # End of input, or intake stopped. The SDK server cancels
                # whatever is still running when its input ends; a client that
                # wrote its requests and closed stdin (or a server told to stop)
                # still owes every request read an answer, so wait for them.
                with anyio.move_on_after(stop_grace):
                    await requests.wait_for_fewer_than(1)

    async def read_into() -> None:
        """Read input into lines (see :class:`LineFramer`); serve them, and refuse those too long."""
        nonlocal read_scope
        framer = LineFramer(max_line_bytes)
        while not stopping:  # stopped: a line the framer holds unfinished was never a request read
            with anyio.CancelScope() as scope:
                read_scope = scope
                chunk = await source.read()
            read_scope = None
            if scope.cancelled_caught:
                return
            if not chunk:
                # End of input: a last line without its newline still counts.
                last = framer.end()
                if last is not None:
                    await dispatch(last)
                return
            for line in framer.feed(chunk):
                if isinstance(line, TooLong):
                    await out_send.send((_too_long(line.size, max_line_bytes), None))
                else:
                    await dispatch(line)

    async def dispatch(line: bytes) -> None:
        if fast_calls is not None:
            call = fast_calls.take(line)
            if call is not None:
                await requests.wait_for_fewer_than(max_in_flight)
                if call.id in requests:
                    await out_send.send((_duplicate_id(call.id), None))
                else:
                    requests.started(call.id)
                    if not fast_calls.start(call):  # serving stopped meanwhile
                        await out_send.send((connection_closed_line(call.id), call.id))
                return
        if handshake is not None:
            reply = handshake.take(line)
            if reply is not None:
                await answer_handshake(reply)
                return
        if not sdk_told:
            await tell_sdk()
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValidationError as error:  # not JSON, or not JSON-RPC
            await out_send.send((_rejection(line, error), None))
            await to_server.send(error)  # the server logs and drops it, as with the SDK transport
            return
        if isinstance(message, types.JSONRPCRequest):
            await requests.wait_for_fewer_than(max_in_flight)
            if message.id in requests:
                # The SDK keys its requests by id: a second one under an id in
                # flight would take over the first one's entry. Refused, not run.
                await out_send.send((_duplicate_id(message.id), None))
                return
            requests.started(message.id)
            if fast_path is not None:
                fast_path.request_seen(message.method, message.id)
            # The SDK never answers a request its client cancelled; it says so
            # through this hook once the request has settled.
            metadata = ServerMessageMetadata(on_request_unanswered=requests.settled_unanswered(message.id))
            await to_server.send(SessionMessage(message, metadata=metadata))
            return
        if isinstance(message, types.JSONRPCNotification) and _has_id(line):
            # A request whose id is not a string or an integer reads as a
            # notification, which nobody answers: refuse it instead.
            refusal = _error_line(types.INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
            await out_send.send((refusal, None))
            return
        if (
            fast_calls is not None
            and isinstance(message, types.JSONRPCNotification)
            and message.method == "notifications/cancelled"
            and message.params
        ):
            fast_calls.cancel(message.params.get("requestId"))
        await to_server.send(SessionMessage(message))

    async def answer_handshake(reply: HandshakeReply) -> None:
        if reply.line is None or reply.id is None:
            return  # a notification, kept for the replay
        await requests.wait_for_fewer_than(max_in_flight)
        if reply.id in requests:
            await out_send.send((_duplicate_id(reply.id), None))
            return
        requests.started(reply.id)
        if fast_path is not None and reply.method == "initialize":
            # Watched as the server's own initialize reply would be.
            fast_path.request_seen(reply.method, reply.id)
            fast_path.reply_seen(reply.id, reply.result)
        await out_send.send((reply.line, reply.id))

    async def tell_sdk() -> None:
        """Before the server's first message: what the handshake fast path answered, replayed."""
        nonlocal sdk_told
        sdk_told = True
        if handshake is None:
            return
        handshake.passed_to_sdk()
        to_wire.expect_replayed_reply(handshake.replayed_reply())
        for document in handshake.replay():
            message = types.jsonrpc_message_adapter.validate_python(document, by_name=False)
            await to_server.send(SessionMessage(message))

    async def write_lines() -> None:
        client_gone = False
        async with out_receive:
            async for first in out_receive:
                batch = [first]
                while True:  # one write for everything already queued
                    try:
                        batch.append(out_receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                if not client_gone:  # else keep taking replies, so nothing waits on a dead pipe
                    try:
                        await sink.write(b"".join(data for data, _ in batch))
                    except (BrokenPipeError, ConnectionResetError):
                        # The client closed its end: stop reading requests, and let
                        # the server finish and close as at end of input.
                        client_gone = True
                        reader_scope.cancel()
                # Written, or never will be: either way these requests are done.
                for _, request_id in batch:
                    if request_id is not None:
                        requests.answered(request_id)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_lines)
            writer_done = anyio.Event()

            async def writer() -> None:
                try:
                    await write_lines()
                finally:
                    writer_done.set()

            tg.start_soon(writer)
            try:
                if fast_calls is None:
                    yield StdioWire(from_wire, to_wire, stop_intake)
                else:
                    async with fast_calls.serving():
                        yield StdioWire(from_wire, to_wire, stop_intake)
            finally:
                # The server has stopped (and closed to_wire); once the reader
                # ends too, the writer drains what is queued and stops.
                to_wire.close()
                reader_scope.cancel()  # its exit closes the last sender: the writer then ends
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await writer_done.wait()
                tg.cancel_scope.cancel()
    finally:
        sink.restore()
        source.restore()
        if restore_std:
            sys.stdout.flush()  # a stray print buffered meanwhile goes to stderr, not the protocol
            os.dup2(restore_std[0], 0)
            os.dup2(restore_std[1], 1)
            for fd in (*restore_std, stdin_fd, stdout_fd):
                os.close(fd)


class _InFlight:
    """Requests passed to the server and not answered yet.

    Keyed as the SDK keys its own table (``coerce_request_id``: ``"7"`` and
    ``7`` are one id), so a reply or a settled request always finds its entry.
    """

    def __init__(self) -> None:
        self._keys: set[types.RequestId] = set()
        self._changed: anyio.Event | None = None

    def __contains__(self, request_id: types.RequestId) -> bool:
        return coerce_request_id(request_id) in self._keys

    def started(self, request_id: types.RequestId) -> None:
        self._keys.add(coerce_request_id(request_id))

    def answered(self, request_id: types.RequestId) -> None:
        self._keys.discard(coerce_request_id(request_id))
        if self._changed is not None:
            self._changed.set()

    def settled_unanswered(self, request_id: types.RequestId) -> Callable[[], Awaitable[None]]:
        async def settled() -> None:
            self.answered(request_id)

        return settled

    async def wait_for_fewer_than(self, count: int) -> None:
        """Return once fewer than ``count`` requests are in flight (one waiter at a time: the reader)."""
        while len(self._keys) >= count:
            self._changed = anyio.Event()
            await self._changed.wait()


class _FastCall:
    """One fast-path call in flight: its id as the client sent it, and its task's handle."""

    __slots__ = ("id", "task")

    def __init__(self, request_id: types.RequestId) -> None:
        self.id = request_id
        self.task: Cancellable | None = None


class _FastCalls:
    """The ``tools/call`` requests the fast path took: each runs in a task of its own.

    Keyed as :class:`_InFlight` keys them, so a cancellation finds its request.
    A call is settled exactly once, by whoever takes it out of the table first:
    its own task with the reply, or a cancellation (the client's, unanswered;
    the server stopping, "Connection closed"). A task that finds its call gone
    writes nothing.
    """

    def __init__(
        self,
        fast_path: ToolCallFastPath,
        sink: MemoryObjectSendStream[tuple[bytes, types.RequestId | None]],
        requests: _InFlight,
    ) -> None:
        self._fast_path = fast_path
        self._sink = sink
        self._requests = requests
        self._running: dict[types.RequestId, _FastCall] = {}
        self._tasks: TaskSet | None = None

    def take(self, line: bytes) -> FastCall | None:
        if self._tasks is None:  # not serving (yet, or any more): the SDK path decides
            return None
        return self._fast_path.take(line)

    def start(self, call: FastCall) -> bool:
        """Run the call in a task of its own; False if serving has stopped."""
        if self._tasks is None:
            return False
        key = coerce_request_id(call.id)
        running = self._running[key] = _FastCall(call.id)
        running.task = self._tasks.start(self._run, call, key, running)
        return True

    def cancel(self, request_id: object) -> None:
        """The client cancelled a request: if it is one of ours, it stops and is never answered."""
        if isinstance(request_id, bool) or not isinstance(request_id, int | str):
            return
        running = self._running.pop(coerce_request_id(request_id), None)
        if running is not None:
            assert running.task is not None
            running.task.cancel()
            self._requests.answered(running.id)  # settled, unanswered, as the SDK does

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Take calls while the block runs; on exit, those still running are answered "Connection closed"."""
        try:
            async with open_task_set() as tasks:
                self._tasks = tasks
                try:
                    yield
                finally:
                    self._tasks = None
                    stopped = list(self._running.values())
                    self._running.clear()
                    for running in stopped:
                        assert running.task is not None
                        running.task.cancel()
                    with anyio.CancelScope(shield=True):
                        for running in stopped:
                            await self._reply(connection_closed_line(running.id), running.id)
        finally:
            self._sink.close()

    async def _run(self, call: FastCall, key: types.RequestId, running: _FastCall) -> None:
        try:
            line = await self._fast_path.answer(call)
        except Exception as error:  # a bug: answered as the SDK answers a raising handler
            logger.exception("tools/call %r raised", call.name)
            line = error_line(call.id, 0, str(error))
        if self._running.get(key) is not running:
            return  # cancelled meanwhile, and settled by the canceller
        del self._running[key]
        await self._reply(line, call.id)

    async def _reply(self, line: bytes, request_id: types.RequestId) -> None:
        try:
            try:
                self._sink.send_nowait((line, request_id))
            except anyio.WouldBlock:  # the writer is behind: wait for room, whatever is cancelled
                with anyio.CancelScope(shield=True):
                    await self._sink.send((line, request_id))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._requests.answered(request_id)  # the writer is gone: nothing will be written


class _EncodingStream:
    """The server's write stream: encodes each message and queues its bytes for the writer.

    A reply stays in flight until the writer has written it; one that can no
    longer be queued never will be, so it leaves at once.
    """

    def __init__(
        self,
        sink: MemoryObjectSendStream[tuple[bytes, types.RequestId | None]],
        requests: _InFlight,
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

    async def __aenter__(self) -> _EncodingStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def _duplicate_id(request_id: types.RequestId) -> bytes:
    return _error_line(
        types.INVALID_REQUEST,
        f"Invalid Request: request id {clipped_repr(request_id)} is already in flight; "
        "wait for its reply or use another id",
        request_id,
    )


def _too_long(size: int, limit: int) -> bytes:
    return _error_line(
        types.INVALID_REQUEST,
        f"Invalid Request: a line of more than {size} bytes is over the {limit}-byte limit and was dropped",
    )
