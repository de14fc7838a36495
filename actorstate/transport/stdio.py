"""The stdio transport: JSON-RPC lines on stdin/stdout, with no thread hop per message.

The SDK's own stdio transport wraps the pipes in ``anyio.wrap_file``, so
every line read and every write is a worker-thread round trip. This one puts
the pipes in non-blocking mode and waits on them with
``anyio.wait_readable``/``wait_writable`` (epoll through asyncio or trio),
and splits lines itself. This module needs nothing of the MCP SDK: the lines
the fast paths do not take go to :mod:`.sdk_wire`, loaded when the first of
them comes, which feeds the SDK server the streams of ``SessionMessage`` its
``Server.run`` expects.

It also answers what the SDK transport drops silently: a line that cannot
be read as JSON gets a JSON-RPC parse error (-32700), a line that is JSON but
not a JSON-RPC message gets -32600 (-32602 when only a request's params are
wrong: not an object, or holding text that is not valid Unicode; see
:mod:`.sdk_wire`), and a line longer than the limit gets -32600 too. Each
reply names the problem; the server keeps serving after each, whatever the
line (nesting at any depth included). Split and joined lines are fine:
input is split on newlines whatever the read boundaries.

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
first: the ``tools/call`` requests it takes are answered here and never reach
the SDK. One the session can take at once is answered from the reader with
no task at all (in commit mode its reply goes out once its commit is over);
any other runs in a task of its own. ``notifications/cancelled`` cancels them as the
SDK cancels its own, and when serving stops those still running are answered
"Connection closed", as the SDK answers its own. With a
:class:`~.handshake.HandshakeFastPath`, the handshake, ``tools/list`` and
``ping`` it takes are answered here too; before the server's first message,
it reads the handshake answered here, replayed. With both, a client that
only shakes hands, lists and calls tools never has the SDK loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import orjson

from ..backend import Cancellable, TaskSet, open_task_set
from .fast_path import FastCall, ToolCallFastPath, connection_closed_line, error_line, reply_line
from .framing import LineFramer, TooLong
from .in_flight import InFlight, request_key
from .left_to_the_sdk import left_to_the_sdk
from .limits import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_LINE_BYTES, DEFAULT_STOP_GRACE
from .wire_errors import duplicate_id, too_long

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from .handshake import HandshakeFastPath, HandshakeReply
    from .sdk_wire import EncodingStream, SdkWire
    from .tools import Outcome

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_STOP_GRACE",
    "StdioWire",
    "stdio_transport",
]

_READ_CHUNK = 256 * 1024
# The reader lets the writer run after this many lines, even while more input
# waits. Answers from the reader need no other task, so without a pause every
# reply waited for the whole chunk to be served: a client with 32 calls in
# flight got them all at once and then the server sat idle while it sent the
# next 32. Measured with that client (the stdio benchmark's): memory mode went
# from 25.7-26.6K to 33.0-33.7K calls/s; 8 lines gave 29.8K (a write and two task
# switches for every 8 cost more), 24 gave 26.7-29.4K; with 128 in flight,
# 36.0K before and 37.5K after; with 8 in flight nothing changes.
_LINES_PER_TURN = 16
_NOTIFICATION_KEYS = frozenset({"jsonrpc", "method", "params"})

logger = logging.getLogger(__name__)


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
class SdkStreams:
    """The streams for the SDK server's ``Server.run``."""

    read_stream: MemoryObjectReceiveStream[Any]
    write_stream: EncodingStream


class StdioWire:
    """What :func:`stdio_transport` yields: the server's streams once it is needed, and a way to stop reading."""

    def __init__(
        self, sdk: _SdkLink, read_stream: MemoryObjectReceiveStream[Any], stop_intake: Callable[[], None]
    ):
        self._sdk = sdk
        self._read_stream = read_stream
        self.stop_intake = stop_intake
        """Stop reading input, as at end of input: every request already read is answered."""

    async def wait_for_sdk(self) -> SdkStreams | None:
        """The streams for ``Server.run`` once a message needs the SDK (imported by then), or None
        once intake has ended, everything read answered, without any."""
        wire = await self._sdk.wait()
        return None if wire is None else SdkStreams(self._read_stream, wire.write_stream)


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
    """Serve the wire over the given fds; yield a :class:`StdioWire`.

    The fast paths answer what they take; the first line they do not take
    loads the SDK's side of the wire (:mod:`.sdk_wire`, in a worker thread:
    lines wait, in order, meanwhile), and the block gets the streams for
    ``Server.run`` from :meth:`StdioWire.wait_for_sdk`. Without fast paths
    it is loaded at once. The read stream ends at end of input, or after
    ``stop_intake()``, once every request already read is answered (or the
    grace period is over); the block should then return (as ``Server.run``
    does, or at once if the SDK was never needed), and queued replies are
    written before this exits.

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
    out_send, out_receive = anyio.create_memory_object_stream[tuple[bytes, int | str | None]](buffer)
    requests = InFlight()
    fast_calls = _FastCalls(fast_path, out_send.clone(), requests) if fast_path is not None else None

    def make_sdk_wire(wire_class: type[SdkWire]) -> SdkWire:
        return wire_class(
            to_server,
            out_send,
            requests,
            max_in_flight,
            fast_path=fast_path,
            cancel_fast_call=fast_calls.cancel if fast_calls is not None else None,
            handshake=handshake,
        )

    sdk = _SdkLink(make_sdk_wire)
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
        try:
            with reader_scope:
                async with to_server, out_send:
                    if fast_calls is None and handshake is None:
                        await sdk.load()  # it answers everything: loaded while the client starts
                    await read_into()
                    # End of input, or intake stopped. The SDK server cancels
                    # whatever is still running when its input ends; a client that
                    # wrote its requests and closed stdin (or a server told to stop)
                    # still owes every request read an answer, so wait for them.
                    with anyio.move_on_after(stop_grace):
                        await requests.wait_for_fewer_than(1)
        finally:
            sdk.intake_ended()

    async def read_into() -> None:
        """Read input into lines (see :class:`LineFramer`); serve them, and refuse those too long."""
        nonlocal read_scope
        framer = LineFramer(max_line_bytes)
        handled = 0  # lines served since the reader last let the other tasks run
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
                    await out_send.send((too_long(line.size, max_line_bytes, whole=line.whole), None))
                else:
                    await dispatch(line)
                handled += 1
                if handled == _LINES_PER_TURN:
                    handled = 0
                    await anyio.lowlevel.checkpoint()  # the writer sends what is answered

    async def dispatch(line: bytes) -> None:
        if fast_calls is not None:
            call = fast_calls.take(line)
            if call is not None:
                await requests.wait_for_fewer_than(max_in_flight)
                if call.id in requests:
                    await out_send.send((duplicate_id(call.id), None))
                else:
                    requests.started(call.id)
                    if not await fast_calls.start(call):  # serving stopped meanwhile
                        await out_send.send((connection_closed_line(call.id), call.id))
                return
            if fast_calls.take_cancellation(line, sdk_loaded=sdk.loaded):
                return
        if handshake is not None:
            reply = handshake.take(line)
            if reply is not None:
                await answer_handshake(reply)
                return
        wire = await sdk.load()
        await wire.deliver(line)

    async def answer_handshake(reply: HandshakeReply) -> None:
        if reply.line is None or reply.id is None:
            return  # a notification, kept for the replay
        await requests.wait_for_fewer_than(max_in_flight)
        if reply.id in requests:
            await out_send.send((duplicate_id(reply.id), None))
            return
        requests.started(reply.id)
        if fast_path is not None and reply.method == "initialize":
            # Watched as the server's own initialize reply would be.
            fast_path.request_seen(reply.method, reply.id)
            fast_path.reply_seen(reply.id, reply.result)
        await out_send.send((reply.line, reply.id))

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
                    yield StdioWire(sdk, from_wire, stop_intake)
                else:
                    async with fast_calls.serving():
                        yield StdioWire(sdk, from_wire, stop_intake)
            finally:
                # The server has stopped (and closed its write stream), or never
                # started; once the reader ends too, the writer drains what is
                # queued and stops.
                sdk.close()
                from_wire.close()  # the server's read stream, if it never started
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


def _import_sdk_wire() -> type[SdkWire]:
    from .sdk_wire import SdkWire

    return SdkWire


class _SdkLink:
    """The SDK's side of the wire: loaded by the reader when a line first needs it, waited for by the server."""

    def __init__(self, make: Callable[[type[SdkWire]], SdkWire]) -> None:
        self._make = make
        self._wire: SdkWire | None = None
        self._settled = anyio.Event()  # loaded, or intake ended without it
        self._closed = False

    @property
    def loaded(self) -> bool:
        return self._wire is not None

    async def load(self) -> SdkWire:
        """The SDK's side of the wire, imported (in a worker thread, the loop serving on) when first asked for."""
        if self._wire is None:
            wire_class = await anyio.to_thread.run_sync(_import_sdk_wire)
            await anyio.lowlevel.checkpoint()  # serving may have stopped meanwhile
            if self._closed:
                await anyio.sleep_forever()  # until the reader is cancelled, as it is once serving stops
            self._wire = self._make(wire_class)
            self._settled.set()
        return self._wire

    def intake_ended(self) -> None:
        self._settled.set()

    async def wait(self) -> SdkWire | None:
        await self._settled.wait()
        return self._wire

    def close(self) -> None:
        """Serving is over: the server's write stream is closed, and the SDK is not loaded any more."""
        self._closed = True
        if self._wire is not None:
            self._wire.write_stream.close()


class _FastCall:
    """One fast-path call in flight: its id as the client sent it, and what cancels it (its task,
    or its reply held for a commit)."""

    __slots__ = ("handle", "id")

    def __init__(self, request_id: int | str) -> None:
        self.id = request_id
        self.handle: Cancellable | None = None


class _FastCalls:
    """The ``tools/call`` requests the fast path took.

    Each is answered from the reader when it can be, with no task at all
    (:meth:`.ToolCallFastPath.answer_now`): the reply goes out at once, or,
    in commit mode, when the commit holding its turn is over. Any other runs
    in a task of its own.

    Keyed as :class:`InFlight` keys them, so a cancellation finds its request.
    A call is settled exactly once, by whoever takes it out of the table first:
    its task or its commit with the reply, or a cancellation (the client's,
    unanswered; the server stopping, "Connection closed"). A call found gone
    writes nothing.
    """

    def __init__(
        self,
        fast_path: ToolCallFastPath,
        sink: MemoryObjectSendStream[tuple[bytes, int | str | None]],
        requests: InFlight,
    ) -> None:
        self._fast_path = fast_path
        self._sink = sink
        self._requests = requests
        self._running: dict[int | str, _FastCall] = {}
        self._tasks: TaskSet | None = None

    def take(self, line: bytes) -> FastCall | None:
        if self._tasks is None:  # not serving (yet, or any more): the SDK path decides
            return None
        return self._fast_path.take(line)

    async def start(self, call: FastCall) -> bool:
        """Answer the call now, or hold it for its commit, or run it in a task of its own;
        False if serving has stopped."""
        tasks = self._tasks
        if tasks is None:
            return False
        try:
            answered = self._fast_path.answer_now(call)
        except Exception as error:
            answered = _raised(call.name, call.id, error)
        if isinstance(answered, bytes):
            await self._reply(answered, call.id)
            return True
        key = request_key(call.id)
        running = self._running[key] = _FastCall(call.id)
        if answered is None:
            running.handle = tasks.start(self._run, call, key, running)
        else:
            running.handle = answered
            answered.then(lambda outcome: self._committed(call.name, key, running, outcome))
        return True

    def cancel(self, request_id: object) -> bool:
        """The client cancelled a request: if it is one of ours, it stops and is never answered (True)."""
        if isinstance(request_id, bool) or not isinstance(request_id, int | str):
            return False
        running = self._running.pop(request_key(request_id), None)
        if running is None:
            return False
        assert running.handle is not None
        running.handle.cancel()
        self._requests.answered(running.id)  # settled, unanswered, as the SDK does
        return True

    def take_cancellation(self, line: bytes, *, sdk_loaded: bool) -> bool:
        """Whether ``line`` is a plain ``notifications/cancelled`` taken here: one of our calls,
        which it cancels, or any while the SDK is not loaded (no request of its can be in flight,
        so it would only log: a cancellation that arrives after its reply must not load it).

        Taken here, it needs no SDK: its server would find no request of its
        own under that id (ids in flight are unique across both paths), and
        so do nothing but log. Any other cancellation goes to the SDK's side
        of the wire, which cancels a call of ours too.
        """
        if b'"notifications/cancelled"' not in line or (sdk_loaded and not self._running):
            return False
        if left_to_the_sdk(line):
            return False
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if type(document) is not dict or not document.keys() <= _NOTIFICATION_KEYS:
            return False
        if document.get("jsonrpc") != "2.0" or document.get("method") != "notifications/cancelled":
            return False
        params = document.get("params")
        if type(params) is not dict:
            return False
        return self.cancel(params.get("requestId")) or not sdk_loaded

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
                        assert running.handle is not None
                        running.handle.cancel()
                    with anyio.CancelScope(shield=True):
                        for running in stopped:
                            await self._reply(connection_closed_line(running.id), running.id)
        finally:
            self._sink.close()

    async def _run(self, call: FastCall, key: int | str, running: _FastCall) -> None:
        try:
            line = await self._fast_path.answer(call)
        except Exception as error:
            line = _raised(call.name, call.id, error)
        if self._running.get(key) is not running:
            return  # cancelled meanwhile, and settled by the canceller
        del self._running[key]
        await self._reply(line, call.id)

    def _committed(self, name: str, key: int | str, running: _FastCall, outcome: Outcome) -> None:
        """A held call's reply is released (its commit is over): it goes out, from inside the commit."""
        if self._running.get(key) is not running:
            return  # cancelled meanwhile, and settled by the canceller
        del self._running[key]
        try:
            line = reply_line(running.id, outcome)
        except Exception as error:
            line = _raised(name, running.id, error)
        try:
            self._sink.send_nowait((line, running.id))
        except anyio.WouldBlock:  # the writer is behind: a task waits for room
            assert self._tasks is not None  # serving: else the call was settled on the way out
            self._tasks.start(self._reply, line, running.id)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._requests.answered(running.id)  # the writer is gone: nothing will be written

    async def _reply(self, line: bytes, request_id: int | str) -> None:
        try:
            try:
                self._sink.send_nowait((line, request_id))
            except anyio.WouldBlock:  # the writer is behind: wait for room, whatever is cancelled
                with anyio.CancelScope(shield=True):
                    await self._sink.send((line, request_id))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._requests.answered(request_id)  # the writer is gone: nothing will be written


def _raised(name: str, request_id: int | str, error: Exception) -> bytes:
    """A call whose tool raised unexpectedly (a bug): logged, and answered as the SDK answers a
    raising handler."""
    logger.error("tools/call %r raised", name, exc_info=error)
    return error_line(request_id, 0, str(error))
