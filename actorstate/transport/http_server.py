"""A lean HTTP/1.1 server for the ASGI app, on anyio: trio or asyncio, the same code.

Measured with 100 keep-alive clients (``python -m benchmarks --scenario
http``), hypercorn spent more than half of the server's CPU per call in its
HTTP layer (h11's pure-Python parsing and its per-event state machine), five
times what the tool call itself costs. This server parses with ``httptools``
(llhttp, the parser of Node.js, in C) and keeps the rest to what MCP over
Streamable HTTP needs:

- one task per connection, requests answered one at a time in order
  (pipelined ones are queued as they parse), keep-alive by HTTP/1.1's rules;
- a request body is read whole before the app runs, up to ``max_body``
  (past it: ``413`` and the connection closes); headers up to
  ``MAX_HEAD_BYTES`` (``431``); a parse error answers ``400``;
- a reply with ``Content-Length`` (or one body message) goes out in one
  write, head and body; a streamed reply (an SSE stream) is chunked;
- while a reply streams, the connection is read for the client leaving, so
  the app's ``receive()`` answers ``http.disconnect`` when it does (what
  ends an SSE stream and cancels the call behind it);
- stopping: the listener closes at once, idle connections close, a request
  in flight finishes (its connection then closes) until ``graceful_timeout``,
  after which the rest are cancelled.

It speaks HTTP/1.1 and 1.0 only, over plain TCP: TLS and HTTP/2 belong to the
proxy in front of a server beyond loopback.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import httptools
import sniffio
from anyio.abc import SocketAttribute

if TYPE_CHECKING:
    import socket

    from starlette.types import ASGIApp, Message, Scope


__all__ = ["HttpServer"]

logger = logging.getLogger("actorstate.http")

READ_SIZE = 65536
MAX_HEAD_BYTES = 65536
# Bytes read ahead of the request being answered (pipelined requests, or a
# client talking while its stream runs) before the server stops reading.
MAX_READ_AHEAD = 1 << 20


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS_LINES = {status.value: _status_line(status.value) for status in http.HTTPStatus}


class _DateHeader:
    """The ``Date`` header (HTTP/1.1 asks an origin server with a clock for it), formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: " + email.utils.formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        return self._line


class _Request:
    __slots__ = (
        "body",
        "body_size",
        "head_size",
        "headers",
        "keep_alive",
        "method",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True


class _Refusal:
    """A request answered by the server itself, after which the connection closes."""

    __slots__ = ("message", "status")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class _RequestParser:
    """httptools' callbacks: completed requests (or the refusal that ends the connection) queue in ``ready``."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.parser = httptools.HttpRequestParser(self)
        self.current = _Request()
        self.ready: deque[_Request | _Refusal] = deque()
        self.broken = False  # a refusal is queued: nothing after it is read

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported here")
        except httptools.HttpParserError:
            self._refuse(400, "the request is not valid HTTP/1.1")

    def _refuse(self, status: int, message: str) -> None:
        if not self.broken:
            self.broken = True
            self.ready.append(_Refusal(status, message))

    # httptools' callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        self.current = _Request()

    def on_url(self, url: bytes) -> None:
        self.current.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.lower(), value))
        self._count_head(len(name) + len(value))

    def on_headers_complete(self) -> None:
        request = self.current
        request.method = self.parser.get_method()
        request.version = self.parser.get_http_version()
        request.keep_alive = self.parser.should_keep_alive()
        for name, value in request.headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                # Answered at once, before the body is sent (the connection then closes).
                self._refuse(413, f"Request body too large: the limit is {self.max_body} bytes")

    def on_body(self, body: bytes) -> None:
        request = self.current
        request.body_size += len(body)
        if request.body_size > self.max_body:
            request.body.clear()
            self._refuse(413, f"Request body too large: the limit is {self.max_body} bytes")
        elif not self.broken:
            request.body.append(body)

    def on_message_complete(self) -> None:
        if not self.broken:
            self.ready.append(self.current)

    def _count_head(self, size: int) -> None:
        self.current.head_size += size
        if self.current.head_size > MAX_HEAD_BYTES:
            self._refuse(431, f"the request's line and headers exceed {MAX_HEAD_BYTES} bytes")


def _refusal_bytes(status: int, message: str) -> bytes:
    body = message.encode() + b"\n"
    return (
        _STATUS_LINES[status]
        + b"content-type: text/plain; charset=utf-8\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )


class _Connection:
    """What a reply needs of its connection, and the answering of one request; the I/O is the subclass's."""

    server: HttpServer
    parser: _RequestParser
    closed: bool  # the client left (end of stream or a socket error)
    server_address: tuple[Any, ...] | None
    client_address: tuple[Any, ...] | None

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def until_client_leaves(self) -> None:
        """Return once the client has gone (its requests after this one are queued meanwhile)."""
        raise NotImplementedError

    async def answer(self, request: _Request | _Refusal) -> bool:
        """Answer one request; True to keep the connection for the next."""
        if isinstance(request, _Refusal):
            await self.write(_refusal_bytes(request.status, request.message))
            return False
        reply = _Reply(self, request)
        try:
            await self.server.app(reply.scope(), reply.receive, reply.send)
        except Exception:
            if not reply.started:
                logger.exception("the HTTP app failed on %s", reply.path)
                await self.write(_refusal_bytes(500, "internal server error"))
                return False
            if not reply.finished:
                logger.exception("the HTTP app failed on %s while replying", reply.path)
                return False
        if not reply.finished:
            if not reply.started and not self.closed:
                await self.write(_refusal_bytes(500, "internal server error: no reply"))
            return False
        return reply.keep_alive and not self.closed and not self.server.stopping


def _addresses(local: object, remote: object) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
    return (
        tuple(local[:2]) if isinstance(local, tuple) else None,
        tuple(remote[:2]) if isinstance(remote, tuple) else None,
    )


class _AnyioConnection(_Connection):
    """A connection on anyio's socket streams (trio): one task reads and answers."""

    def __init__(self, server: HttpServer, stream: anyio.abc.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.parser = _RequestParser(server.max_body)
        self.closed = False
        self.read_ahead = 0
        self.idle_scope: anyio.CancelScope | None = None
        # A reply's watcher for the client leaving may still be unwinding its
        # read when the next request is read: reads take turns.
        self.receiving = anyio.Lock(fast_acquire=True)
        self.server_address, self.client_address = _addresses(
            stream.extra(SocketAttribute.local_address), stream.extra(SocketAttribute.remote_address)
        )

    async def run(self) -> None:
        try:
            while not self.server.stopping:
                request = await self._next_request()
                if request is None or not await self.answer(request):
                    return
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    def close_if_idle(self) -> None:
        if self.idle_scope is not None:
            self.idle_scope.cancel()

    async def write(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.closed = True

    async def _read_more(self) -> int:
        """Read once and feed the parser: the bytes read, 0 when the client is gone."""
        try:
            data = await self.stream.receive(READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.closed = True
            return 0
        self.parser.feed(data)
        return len(data)

    async def _next_request(self) -> _Request | _Refusal | None:
        """The next request, or None to close (the client left, idle too long, stopping)."""
        parser = self.parser
        while not parser.ready:
            with anyio.CancelScope(deadline=anyio.current_time() + self.server.keep_alive_timeout) as scope:
                self.idle_scope = scope
                try:
                    if self.server.stopping:
                        return None
                    async with self.receiving:
                        if not parser.ready and not await self._read_more():
                            return None
                finally:
                    self.idle_scope = None
            if scope.cancelled_caught:
                return None
        self.read_ahead = 0
        return parser.ready.popleft()

    async def until_client_leaves(self) -> None:
        async with self.receiving:
            while not self.closed:
                if self.read_ahead > MAX_READ_AHEAD or self.parser.broken:
                    await anyio.sleep_forever()
                self.read_ahead += await self._read_more()


class _AsyncioConnection(asyncio.Protocol, _Connection):
    """A connection as an asyncio protocol: the loop feeds the parser, a task answers what is ready.

    On asyncio, anyio's streams stop and restart reading the socket around
    every receive (a selector registration each way, twice per request
    here); a protocol is read continuously, and learns at once when its
    client leaves.
    """

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.parser = _RequestParser(server.max_body)
        self.closed = False
        self.read_ahead = 0
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.left = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.server_address = self.client_address = None

    # asyncio's protocol callbacks -----------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server_address, self.client_address = _addresses(
            transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        )
        self.server.connections.add(self)
        if self.server.stopping:
            transport.close()
        else:
            self._idle()

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if self.task is None:
            if self.parser.ready:
                self._cancel_idle_timer()
                self.task = asyncio.get_running_loop().create_task(self._answer_ready())
        else:
            self.read_ahead += len(data)
            if self.read_ahead > MAX_READ_AHEAD or self.parser.broken:
                assert self.transport is not None
                self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.left.set()
        self.writable.set()
        self._cancel_idle_timer()
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # ---------------------------------------------------------------------
    async def _answer_ready(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while self.parser.ready and not self.closed:
                request = self.parser.ready.popleft()
                if self.read_ahead:
                    self.read_ahead = 0
                    transport.resume_reading()
                if not await self.answer(request):
                    transport.close()
                    return
        finally:
            self.task = None
        if self.server.stopping:
            transport.close()
        else:
            self._idle()

    def _idle(self) -> None:
        self.idle_timer = asyncio.get_running_loop().call_later(
            self.server.keep_alive_timeout, self.close_if_idle
        )

    def _cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def close_if_idle(self) -> None:
        if self.task is None and self.transport is not None:
            self.transport.close()

    async def write(self, data: bytes) -> None:
        if self.closed:
            return
        assert self.transport is not None
        self.transport.write(data)
        if not self.writable.is_set():
            await self.writable.wait()

    async def until_client_leaves(self) -> None:
        await self.left.wait()


class _Reply:
    """One request's ASGI exchange: its scope, ``receive`` and ``send``."""

    def __init__(self, connection: _Connection, request: _Request) -> None:
        self.connection = connection
        self.request = request
        url = httptools.parse_url(request.url)
        self.raw_path = url.path
        self.path = url.path.decode("latin-1")
        self.query = url.query or b""
        self.body_sent = False
        self.started = False
        self.finished = False
        self.chunked = False
        self.head_only = request.method == b"HEAD"
        self.keep_alive = request.keep_alive
        self.status = 200
        self.headers: list[tuple[bytes, bytes]] = []

    def scope(self) -> Scope:
        from urllib.parse import unquote

        request = self.request
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.version,
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(self.path) if "%" in self.path else self.path,
            "raw_path": self.raw_path,
            "query_string": self.query,
            "root_path": "",
            "headers": request.headers,
            "client": self.connection.client_address,
            "server": self.connection.server_address,
        }

    async def receive(self) -> Message:
        if not self.body_sent:
            self.body_sent = True
            body = b"".join(self.request.body)
            self.request.body = []
            return {"type": "http.request", "body": body, "more_body": False}
        # The body was read: what is left to learn is the client leaving.
        await self.connection.until_client_leaves()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("the reply has already started")
            self.started = True
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            return
        if kind != "http.response.body":
            return
        if not self.started:
            raise RuntimeError("a body before the reply started")
        if self.finished:
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        connection = self.connection
        if connection.closed:
            # The client left: the app's sends go nowhere (it learns it from receive()).
            self.finished = not more
            return
        if not self.body_head_written:
            data = self._head(body, more)
        else:
            data = b""
        if not self.head_only and self.status not in (204, 304):
            if self.chunked:
                if body:
                    data += b"%x\r\n%b\r\n" % (len(body), body)
                if not more:
                    data += b"0\r\n\r\n"
            else:
                data += body
        self.finished = not more
        if data:
            await connection.write(data)

    body_head_written = False

    def _head(self, body: bytes, more: bool) -> bytes:
        self.body_head_written = True
        lines = [_STATUS_LINES.get(self.status) or _status_line(self.status)]
        has_length = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                has_length = True
            elif lowered == b"connection":
                if value.lower() == b"close":
                    self.keep_alive = False
                continue
            elif lowered == b"transfer-encoding":
                continue
            lines.append(b"%b: %b\r\n" % (name, value))
        if not has_length and self.status not in (204, 304) and not (100 <= self.status < 200):
            if more:
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(self.connection.server.date.line())
        if self.connection.server.stopping:
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        elif self.request.version == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)


class HttpServer:
    """Serves ``app`` on a listening socket until :meth:`stop`.

    On asyncio each connection is an asyncio protocol (:class:`_AsyncioConnection`);
    on trio, a task reading an anyio stream (:class:`_AnyioConnection`). Both
    answer through :meth:`_Connection.answer`, so the HTTP they speak is the same.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        keep_alive_timeout: float = 75.0,
        graceful_timeout: float = 10.0,
        backlog: int = 4096,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.keep_alive_timeout = keep_alive_timeout
        self.graceful_timeout = graceful_timeout
        self.backlog = backlog
        self.date = _DateHeader()
        self.stopping = False
        self.connections: set[Any] = set()
        self._stop_requested = anyio.Event()

    def stop(self) -> None:
        """Stop accepting; idle connections close, requests in flight finish."""
        self._stop_requested.set()

    async def serve(self, sock: socket.socket) -> None:
        """Serve connections on ``sock`` (listening; this server closes it) until :meth:`stop`."""
        if sniffio.current_async_library() == "asyncio":
            await self._serve_on_asyncio(sock)
        else:
            await self._serve_on_anyio(sock)

    def _begin_stopping(self) -> None:
        self.stopping = True
        for connection in list(self.connections):
            connection.close_if_idle()

    async def _serve_on_anyio(self, sock: socket.socket) -> None:
        listener = await anyio.abc.SocketListener.from_socket(sock)
        async with anyio.create_task_group() as connections:
            async with anyio.create_task_group() as accepting:
                accepting.start_soon(self._accept, listener, connections)
                await self._stop_requested.wait()
                accepting.cancel_scope.cancel()
            await listener.aclose()
            self._begin_stopping()
            connections.cancel_scope.deadline = anyio.current_time() + (
                self.graceful_timeout if self.graceful_timeout >= 0 else math.inf
            )

    async def _accept(self, listener: anyio.abc.SocketListener, connections: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (anyio.BrokenResourceError, OSError) as error:
                # Out of descriptors, say: wait a moment instead of spinning.
                logger.warning("accepting a connection failed: %s", error)
                await anyio.sleep(0.1)
                continue
            connections.start_soon(self._connection, stream)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        connection = _AnyioConnection(self, stream)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    async def _serve_on_asyncio(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _AsyncioConnection(self), sock=sock, backlog=self.backlog)
        try:
            await self._stop_requested.wait()
            server.close()
            self._begin_stopping()
            busy = {connection.task for connection in self.connections if connection.task is not None}
            if busy:
                timeout = self.graceful_timeout if self.graceful_timeout >= 0 else None
                await asyncio.wait(busy, timeout=timeout)
        finally:
            # Past the grace period, or cancelled: what still runs is cancelled.
            server.close()
            self.stopping = True
            tasks = [connection.task for connection in self.connections if connection.task is not None]
            for task in tasks:
                task.cancel()
            for connection in list(self.connections):
                connection.transport.abort()
            if tasks:
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(tasks)
