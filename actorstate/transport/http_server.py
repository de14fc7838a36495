"""A lean HTTP/1.1 server for the ASGI app, on anyio: trio or asyncio, the same code.

Measured with 100 keep-alive clients (``python -m benchmarks --scenario
http``), hypercorn spent more than half of the server's CPU per call in its
HTTP layer (h11's pure-Python parsing and its per-event state machine), five
times what the tool call itself costs. This server parses with ``httptools``
(llhttp, the parser of Node.js, in C) and keeps the rest to what MCP over
Streamable HTTP needs:

- one task per connection, requests answered one at a time in order
  (pipelined ones are queued as they parse, up to ``MAX_QUEUED_REQUESTS``
  and ``MAX_READ_AHEAD`` bytes, then the connection is not read until they
  are answered), keep-alive by HTTP/1.1's rules;
- a request body is read whole before the app runs, up to ``max_body``
  (past it: ``413`` and the connection closes), and the bodies still
  arriving on all connections together up to ``max_bodies_receiving``
  beyond ``BODY_ALLOWANCE`` each (past it: ``503`` and the connection
  closes); headers up to
  ``MAX_HEAD_BYTES`` and ``MAX_HEADERS`` (``431``); a parse error, a
  target that is no URL, or an HTTP/1.1 request without exactly one
  ``Host`` answers ``400``, a version other than 1.x ``505``;
  ``Expect: 100-continue`` is answered ``100 Continue`` when the request
  is next in line; an ``Upgrade`` is answered as a plain request, the
  connection closing after it; a ``CONNECT`` (its target an authority, no
  URL) is answered ``400``;
- a request must arrive whole (head and body) within the keep-alive
  timeout of the connection going idle, however slowly it trickles in;
- a client that half-closes (sends its end of stream) gets the replies to
  the requests it sent; the connection closes after them;
- at most ``max_connections`` connections (by default what the process's
  descriptor limit leaves room for): at the cap, the idle connection held
  longest is closed to admit a new one; with none idle the new one is
  answered ``503``;
- a client that reads nothing for ``send_timeout`` while a write waits for
  it is let go: its connection closes, and the app learns it left;
- a reply with ``Content-Length`` (or one body message) goes out in one
  write, head and body; a streamed reply (an SSE stream) is chunked (to an
  HTTP/1.0 client: sent as it comes and ended by closing the connection);
- while a reply runs, the connection is read for the client leaving, so
  the app's ``receive()`` answers ``http.disconnect`` when it does (what
  ends an SSE stream and cancels the call behind it); a client's end of
  stream counts as leaving only once a streamed reply has begun (before
  it, the client may be waiting for its reply on a half-closed socket);
- stopping: the listener closes at once, idle connections close, a request
  in flight finishes (its connection then closes) until ``graceful_timeout``,
  after which the rest are cancelled.

It speaks HTTP/1.1 and 1.0 only, over plain TCP: TLS and HTTP/2 belong to the
proxy in front of a server beyond loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import http
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import httptools
import sniffio
from anyio.abc import SocketAttribute

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable

    from starlette.types import ASGIApp, Message, Scope


__all__ = ["HttpServer", "HttpServerStatistics"]

logger = logging.getLogger("actorstate.http")

READ_SIZE = 65536
MAX_HEAD_BYTES = 65536
# Counted for each header beside its name and value (": " and CRLF), so a
# head of many tiny headers meets MAX_HEAD_BYTES as its size on the wire.
HEADER_OVERHEAD = 4
# Apache's default (LimitRequestFields): each header costs the app's
# middleware a little, and no client needs more.
MAX_HEADERS = 100
# Bytes read ahead of the request being answered (pipelined requests, or a
# client talking while its stream runs), and requests parsed and waiting,
# before the server stops reading the connection; it reads again once every
# queued request is answered. A tiny pipelined request parses into objects
# some fifteen times its size: the count bounds that.
MAX_READ_AHEAD = 1 << 20
MAX_QUEUED_REQUESTS = 128
# Bytes of request bodies still arriving, over every connection. Each body
# may reach ``max_body`` before the app (and the token check) sees it, so
# clients sending bodies slowly on many connections, no token needed, would
# otherwise hold max_body times the connections in memory. Past this, the
# request whose body would go over is answered 503 and its connection closes.
# The first BODY_ALLOWANCE bytes of each body do not count: a tool call is a
# few hundred bytes, and one who fills the bound must not lock them out (what
# they hold is bounded by the connections times the allowance).
MAX_BODIES_RECEIVING = 64 << 20
BODY_ALLOWANCE = 16 << 10
# Descriptors left to the rest of the process (the store's files and
# sockets, logs) under the default connection cap: a tenth of the limit, at
# least this plus room for what asyncio accepts before the cap applies.
DESCRIPTORS_KEPT = 64
# Connections asyncio accepts per wake-up of the listener. They reach
# connection_made (where the cap applies) two loop turns later, so the cap
# may be overshot by a few batches. asyncio takes the batch from
# create_server's backlog, and at the descriptor limit logs a traceback (and
# schedules a retry) for every accept the batch has left: with a backlog of
# 4096, tens of thousands.
ACCEPT_BATCH = 16
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def default_max_connections() -> int:
    """Connections the process's descriptor limit leaves room for (``RLIMIT_NOFILE``'s soft limit).

    Past the limit ``accept`` fails (``EMFILE``) and clients wait unanswered
    in the backlog; the store's files and sockets need descriptors too.
    """
    try:
        import resource
    except ImportError:  # not on Unix: no limit to read
        return 10_000
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(16, soft - max(DESCRIPTORS_KEPT + 4 * ACCEPT_BATCH, soft // 10))


@dataclasses.dataclass(frozen=True)
class HttpServerStatistics:
    """What an :class:`HttpServer` holds now, summed over its connections."""

    connections: int
    # Requests read and parsed, waiting for their turn on their connection.
    requests_queued: int
    # Connections not read until their queued requests are answered.
    connections_not_reading: int
    # Connections whose client sent its end of stream (still answered).
    connections_half_closed: int


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


class _BodiesReceiving:
    """The bytes of request bodies still arriving, over every connection of a server, and their bound."""

    __slots__ = ("_warned_at", "held", "limit", "refused")

    def __init__(self, limit: int) -> None:
        self.held = 0
        self.limit = limit
        self.refused = 0
        self._warned_at = -math.inf

    def refusing(self) -> None:
        """A request is refused for the bound: counted, and logged at most once a minute."""
        self.refused += 1
        now = time.monotonic()
        if now - self._warned_at >= 60:
            self._warned_at = now
            logger.warning(
                "refusing HTTP requests (%d so far): %d bytes of request bodies are arriving at once, "
                "the limit; clients sending large bodies slowly on many connections hold it",
                self.refused,
                self.limit,
            )


class _RequestParser:
    """httptools' callbacks: completed requests (or the refusal that ends the connection) queue in ``ready``."""

    def __init__(self, max_body: int, receiving: _BodiesReceiving) -> None:
        self.max_body = max_body
        self.receiving = receiving
        # Bytes of the request being read that count in ``receiving``.
        self.counted = 0
        self.parser = httptools.HttpRequestParser(self)
        self.current = _Request()
        self.ready: deque[_Request | _Refusal] = deque()
        # Nothing more is read: a refusal is queued, or the last request queued ends the connection.
        self.broken = False
        # The request being read asked for ``100 Continue`` before it sends its body.
        self.continue_wanted = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            last = self.ready[-1] if self.ready else None
            if isinstance(last, _Request):
                # Upgrading is the server's choice: the request is answered as a plain one.
                # What the client sends after it would be another protocol, so the
                # connection ends with that reply.
                last.keep_alive = False
                self.broken = True
            else:
                self._refuse(400, "protocol upgrades are not supported here")
        except httptools.HttpParserError:
            self._refuse(400, "the request is not valid HTTP/1.1")

    def _refuse(self, status: int, message: str) -> None:
        if not self.broken:
            self.broken = True
            self.ready.append(_Refusal(status, message))
            self.release()

    def release(self) -> None:
        """The request being read is whole, refused or abandoned: its body no longer counts as arriving."""
        self.receiving.held -= self.counted
        self.counted = 0

    # httptools' callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        self.current = _Request()

    def on_url(self, url: bytes) -> None:
        self.current.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # _count_head inlined: this runs for every header of every request.
        request = self.current
        request.headers.append((name.lower(), value))
        request.head_size += len(name) + len(value) + HEADER_OVERHEAD
        if request.head_size > MAX_HEAD_BYTES:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        request = self.current
        parser = self.parser
        request.method = parser.get_method()
        request.version = version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        if version != "1.1" and version != "1.0":
            self._refuse(505, f"HTTP/{version} is not served here: this server speaks HTTP/1.1 (and 1.0)")
            return
        if len(request.headers) > MAX_HEADERS:
            self._refuse(431, f"the request has more than {MAX_HEADERS} headers")
            return
        hosts = 0
        expects_continue = False
        for name, value in request.headers:
            # Comparisons, not a set: most names differ in length, which fails them at once.
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                if value.isdigit() and int(value) > self.max_body:
                    # Answered at once, before the body is sent (the connection then closes).
                    self._refuse(413, f"Request body too large: the limit is {self.max_body} bytes")
                    return
            elif name == b"expect":
                expects_continue = value.lower() == b"100-continue"
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            # RFC 9112 3.2: two hosts could route one way in a proxy and another here.
            self._refuse(400, "an HTTP/1.1 request needs exactly one Host header")
        elif expects_continue and version == "1.1":
            self.continue_wanted = True

    def on_body(self, body: bytes) -> None:
        request = self.current
        size = len(body)
        request.body_size += size
        if request.body_size > self.max_body:
            request.body.clear()
            self._refuse(413, f"Request body too large: the limit is {self.max_body} bytes")
        elif not self.broken:
            counts = min(size, request.body_size - BODY_ALLOWANCE)
            if counts > 0:
                receiving = self.receiving
                if receiving.held + counts > receiving.limit:
                    request.body.clear()
                    receiving.refusing()
                    self._refuse(
                        503,
                        f"the server is receiving {receiving.limit} bytes of request bodies from all its "
                        "clients at once, its limit: send this request again in a moment",
                    )
                    return
                receiving.held += counts
                self.counted += counts
            request.body.append(body)

    def on_message_complete(self) -> None:
        self.release()
        self.continue_wanted = False
        if not self.broken:
            self.ready.append(self.current)

    def _count_head(self, size: int) -> None:
        self.current.head_size += size
        if self.current.head_size > MAX_HEAD_BYTES:
            self._refuse_head()

    def _refuse_head(self) -> None:
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
    closed: bool  # the client left (a socket error, or the connection closed)
    eof: bool  # the client sent its end of stream: it sends nothing more, and may still read
    streaming: bool  # a streamed reply (chunked, no length) is under way
    paused: bool  # not read until the queued requests are answered
    server_address: tuple[Any, ...] | None
    client_address: tuple[Any, ...] | None

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def until_client_leaves(self) -> None:
        """Return once the client has gone (its requests after this one are queued meanwhile)."""
        raise NotImplementedError

    def close_if_idle(self) -> bool:
        """Close the connection if no request is being answered on it; True if this closed it."""
        raise NotImplementedError

    def stream_begins(self) -> None:
        """A streamed reply starts: from now on the client's end of stream means it left."""
        raise NotImplementedError

    def abandon(self) -> None:
        """The client reads nothing: close the connection now, cancelling what runs on it."""
        raise NotImplementedError

    def lingering(self) -> bool:
        """Closed by the server, but waiting to send its last bytes to a client that reads nothing."""
        return False

    # Lingering at the send watch's last look: abandoned if still lingering at the next.
    lingered = False

    # A write waiting for the client to read (``sending``), and how many writes began: the
    # server's send watch abandons a connection still sending the same write a period later.
    sending = False
    writes = 0
    writes_seen = 0

    async def answer(self, request: _Request | _Refusal) -> bool:
        """Answer one request; True to keep the connection for the next."""
        if isinstance(request, _Refusal):
            await self.write(_refusal_bytes(request.status, request.message))
            return False
        # The direct lane first (see HttpServer's lane): what it takes never meets the app.
        lane = self.server.lane
        if lane is not None:
            taken = lane.take(request.method, request.url, request.headers, request.body)
            if taken is not None:
                reply = _Reply(self, request)
                return await self._answer_in_lane(reply, lane.answer(taken, reply.send))
        try:
            reply = _Reply(self, request)
        except httptools.HttpParserInvalidURLError:
            # llhttp takes targets its URL parser refuses (CONNECT's authority, a bad port).
            await self.write(_refusal_bytes(400, "the request's target is not a valid URL"))
            return False
        return await self._answer_with(reply, self.server.app(reply.scope(), reply.receive, reply.send))

    async def _answer_in_lane(self, reply: _Reply, answering: Awaitable[None]) -> bool:
        """``_answer_with`` for a call of the lane; its client leaving cancels it, as the app's
        calls learn it from ``receive()``."""
        keep = False  # unless the call ends before its client leaves
        async with anyio.create_task_group() as group:

            async def cancel_when_client_leaves() -> None:
                await self.until_client_leaves()
                group.cancel_scope.cancel()

            group.start_soon(cancel_when_client_leaves)
            keep = await self._answer_with(reply, answering)
            group.cancel_scope.cancel()
        return keep

    async def _answer_with(self, reply: _Reply, answering: Awaitable[None]) -> bool:
        """Await ``answering`` (the app, or the lane, sending through ``reply``); True to keep the connection."""
        try:
            await answering
        except Exception:
            # A reply's head waits for its first body (an event stream's excepted): while
            # nothing of it is written, the client can still be told 500.
            if not reply.body_head_written:
                logger.exception("the HTTP app failed on %s", reply.path)
                await self.write(_refusal_bytes(500, "internal server error"))
                return False
            if not reply.finished:
                logger.exception("the HTTP app failed on %s while replying", reply.path)
                return False
        finally:
            self.streaming = False
        if not reply.finished:
            if not reply.body_head_written:
                await self.write(_refusal_bytes(500, "internal server error: no reply"))
            return False
        return reply.keep_alive and not self.closed and not self.server.stopping

    def reading_limited(self) -> bool:
        """Enough is read ahead of the request being answered: stop reading until the queue empties."""
        parser = self.parser
        return self.read_ahead > MAX_READ_AHEAD or len(parser.ready) > MAX_QUEUED_REQUESTS or parser.broken

    read_ahead = 0


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
        self.parser = _RequestParser(server.max_body, server.bodies_receiving)
        self.closed = False
        self.eof = False
        self.streaming = False
        self.paused = False
        self.left = anyio.Event()
        self.idle_scope: anyio.CancelScope | None = None
        self.scope = anyio.CancelScope()
        # A reply's watcher for the client leaving may still be unwinding its
        # read when the next request is read: reads take turns.
        self.receiving = anyio.Lock(fast_acquire=True)
        # A client that reset its connection before it was served has no
        # address any more (getpeername fails): anyio then has no attribute,
        # and a lookup without a default would raise out of the server.
        self.server_address, self.client_address = _addresses(
            stream.extra(SocketAttribute.local_address, None),
            stream.extra(SocketAttribute.remote_address, None),
        )

    async def run(self) -> None:
        try:
            with self.scope:
                while not self.server.stopping:
                    request = await self._next_request()
                    if request is None or not await self.answer(request):
                        return
        except Exception:
            # One connection's failure is its own: the server serves on.
            logger.exception("an HTTP connection failed")
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def refuse(self, status: int, message: str) -> None:
        """Answer the connection's first request unread, and close it."""
        try:
            await self.write(_refusal_bytes(status, message))
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    def close_if_idle(self) -> bool:
        scope = self.idle_scope
        if scope is None or scope.cancel_called:
            return False
        scope.cancel()
        return True

    def stream_begins(self) -> None:
        self.streaming = True
        if self.eof:
            self.left.set()

    def _gone(self) -> None:
        self.closed = True
        self.left.set()

    async def write(self, data: bytes) -> None:
        if self.closed:
            return
        # Whether a send will wait cannot be known before it does: each one is marked.
        self.sending = True
        self.writes += 1
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._gone()
        finally:
            self.sending = False

    def abandon(self) -> None:
        self._gone()
        self.scope.cancel()

    async def _read_more(self) -> int:
        """Read once and feed the parser: the bytes read, 0 when the client sends no more."""
        try:
            data = await self.stream.receive(READ_SIZE)
        except anyio.EndOfStream:
            self.eof = True
            if self.streaming:
                self.left.set()
            return 0
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._gone()
            return 0
        self.parser.feed(data)
        return len(data)

    async def _next_request(self) -> _Request | _Refusal | None:
        """The next request, or None to close (the client left or sent all, idle too long, stopping).

        The request must arrive whole within the keep-alive timeout: one
        deadline for all its reads, so a client trickling bytes cannot hold
        the connection.
        """
        parser = self.parser
        if not parser.ready:
            deadline = anyio.current_time() + self.server.keep_alive_timeout
            while not parser.ready:
                if self.eof or self.closed:
                    return None
                if parser.continue_wanted:
                    parser.continue_wanted = False
                    await self.write(_CONTINUE)
                with anyio.CancelScope(deadline=deadline) as scope:
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
        request = parser.ready.popleft()
        if not parser.ready:
            self.read_ahead = 0
            self.paused = False
        return request

    async def until_client_leaves(self) -> None:
        async with self.receiving:
            while not self.closed and not self.eof:
                # Once paused, not read again until every queued request is taken (as on asyncio).
                if self.paused or self.reading_limited():
                    self.paused = True
                    break
                self.read_ahead += await self._read_more()
        # Nothing more to read for now: a write failing, or a stream begun
        # after the client's end of stream, tells that it left.
        await self.left.wait()


class _AsyncioConnection(asyncio.Protocol, _Connection):
    """A connection as an asyncio protocol: the loop feeds the parser, a task answers what is ready.

    On asyncio, anyio's streams stop and restart reading the socket around
    every receive (a selector registration each way, twice per request
    here); a protocol is read continuously, and learns at once when its
    client leaves.
    """

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.parser = _RequestParser(server.max_body, server.bodies_receiving)
        self.closed = False
        self.eof = False
        self.streaming = False
        self.paused = False
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.left = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.server_address = self.client_address = None

    # A call of the lane is being answered; its client left, and _client_left cancelled it.
    lane_busy = False
    lane_left = False

    def _client_left(self) -> None:
        """The client left (``receive()`` answers ``http.disconnect`` from now on): a lane call
        running is cancelled, as the app's calls are when they learn it."""
        self.left.set()
        if self.lane_busy and self.task is not None and not self.lane_left:
            self.lane_left = True
            self.task.cancel()  # see _answer_in_lane

    async def _answer_in_lane(self, reply: _Reply, answering: Awaitable[None]) -> bool:
        # The cancellation is the task's own (an anyio cancel scope and a watching task
        # per request cost more than a tenth of a lane call's CPU): the runtime takes a
        # cancelled caller at any checkpoint, and runs what must not be cut short in
        # tasks of its own.
        self.lane_busy = True
        try:
            return await self._answer_with(reply, answering)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.lane_left or task is None or task.uncancel() > 0:
                raise  # cancelled by someone else too (the server stopping)
            return False
        finally:
            self.lane_busy = False

    # asyncio's protocol callbacks -----------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server_address, self.client_address = _addresses(
            transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        )
        if self.server.stopping:
            transport.close()
        elif not self.server.admit(self):
            transport.write(_refusal_bytes(503, self.server.full_message()))
            transport.close()
        else:
            self._idle()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        if self.task is None:
            if parser.ready:
                self._cancel_idle_timer()
                self.task = asyncio.get_running_loop().create_task(self._answer_ready())
            elif parser.continue_wanted:
                self._continue()
        else:
            self.read_ahead += len(data)
            if self.reading_limited():
                self.paused = True
                assert self.transport is not None
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        # A half-close: the client sends no more, and may still be reading its replies.
        self.eof = True
        if self.streaming:
            self._client_left()
        # With nothing being answered there is nothing left to send (a request
        # begun cannot complete now): returning False closes the transport.
        if self.task is None:
            self.parser.release()
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client_left()
        self.writable.set()
        self._cancel_idle_timer()
        self.server.forget(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # ---------------------------------------------------------------------
    async def _answer_ready(self) -> None:
        transport = self.transport
        assert transport is not None
        parser = self.parser
        try:
            while parser.ready and not self.closed:
                request = parser.ready.popleft()
                if self.read_ahead and not parser.ready:
                    # Read again only once every queued request is taken: resuming at each
                    # one would let a pipelining client that never reads its replies grow
                    # the queue by MAX_READ_AHEAD per reply.
                    self.read_ahead = 0
                    if self.paused:
                        self.paused = False
                        transport.resume_reading()
                if not await self.answer(request):
                    self._close()
                    return
        except Exception:
            # One connection's failure is its own: the server serves on.
            logger.exception("an HTTP connection failed")
            self._close()
            return
        finally:
            self.task = None
        if self.server.stopping or self.eof:
            self._close()
        elif not self.closed:
            if parser.continue_wanted:
                self._continue()
            self._idle()

    def _continue(self) -> None:
        """The request being read waits for ``100 Continue`` to send its body, and is next in line."""
        self.parser.continue_wanted = False
        assert self.transport is not None
        self.transport.write(_CONTINUE)

    def _idle(self) -> None:
        # The next request must arrive whole before this fires (data_received cancels it
        # only once a request is complete), however slowly its bytes trickle in.
        self.idle_timer = asyncio.get_running_loop().call_later(
            self.server.keep_alive_timeout, self.close_if_idle
        )

    def _cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def close_if_idle(self) -> bool:
        transport = self.transport
        if self.task is not None or transport is None or transport.is_closing():
            return False
        self._close()
        return True

    def _close(self) -> None:
        """Stop reading and close once what is written has gone out.

        asyncio reports the connection lost only once its last bytes have
        been sent, which a client that reads nothing never lets happen: the
        body being received is let go now, and the send watch aborts a
        connection left closing (see :meth:`lingering`).
        """
        self.parser.release()
        assert self.transport is not None
        self.transport.close()

    def lingering(self) -> bool:
        transport = self.transport
        return transport is not None and transport.is_closing() and transport.get_write_buffer_size() > 0

    def stream_begins(self) -> None:
        self.streaming = True
        if self.eof:
            self._client_left()

    async def write(self, data: bytes) -> None:
        if self.closed:
            return
        assert self.transport is not None
        self.transport.write(data)
        if not self.writable.is_set():
            # The transport's buffer is full: wait for the client to read (watched by the server).
            self.sending = True
            self.writes += 1
            try:
                await self.writable.wait()
            finally:
                self.sending = False

    def abandon(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows: the reply's watcher learns it

    async def until_client_leaves(self) -> None:
        await self.left.wait()


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    """A reply of ``text/event-stream`` and no length: one that may wait long for its first event."""
    stream = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            return False
        if lowered == b"content-type" and value.lower().startswith(b"text/event-stream"):
            stream = True
    return stream


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
            if not self.head_only and not self.connection.closed and _is_event_stream(self.headers):
                # An event stream's head goes now, not with its first event,
                # which may be a keep-alive ping 15 s away. Any other reply's
                # waits for its first body, so the two leave in one write.
                await self.connection.write(self._head(b"", True))
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
                self.connection.stream_begins()
                if self.request.version == "1.1":
                    self.chunked = True
                    lines.append(b"transfer-encoding: chunked\r\n")
                else:
                    # HTTP/1.0 knows no chunks: the body ends when the connection closes.
                    self.keep_alive = False
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


class Lane(Protocol):
    """Requests answered before the app: :mod:`.http_lane`'s ``DirectLane``.

    ``take`` gets each parsed request first and returns what it will answer,
    or None (the app answers it); ``answer`` then sends the reply through
    ``send`` as the app would. A client leaving cancels ``answer``.
    """

    def take(
        self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]], body: list[bytes]
    ) -> Any: ...

    async def answer(self, taken: Any, send: Any) -> None: ...


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
        max_connections: int | None = None,
        send_timeout: float = 60.0,
        lane: Lane | None = None,
        max_bodies_receiving: int = MAX_BODIES_RECEIVING,
    ) -> None:
        self.app = app
        self.lane = lane
        self.max_body = max_body
        self.bodies_receiving = _BodiesReceiving(max_bodies_receiving)
        self.keep_alive_timeout = keep_alive_timeout
        self.graceful_timeout = graceful_timeout
        self.backlog = backlog
        self.max_connections = max_connections if max_connections is not None else default_max_connections()
        self.send_timeout = send_timeout
        self.date = _DateHeader()
        self.stopping = False
        # Oldest first (a dict keeps insertion order): the first idle one is shed at the cap.
        self.connections: dict[Any, None] = {}
        self._stop_requested = anyio.Event()

    def statistics(self) -> HttpServerStatistics:
        """What the server holds now (computed when asked: nothing is counted per request)."""
        connections = list(self.connections)
        return HttpServerStatistics(
            connections=len(connections),
            requests_queued=sum(len(connection.parser.ready) for connection in connections),
            connections_not_reading=sum(connection.paused for connection in connections),
            connections_half_closed=sum(
                connection.eof and not connection.closed for connection in connections
            ),
        )

    def admit(self, connection: _Connection) -> bool:
        """Make room for a new connection: False when the cap is reached and none is idle.

        At the cap the idle connection held longest closes (an idle
        keep-alive connection, or one whose request has not all arrived),
        as nginx reuses its connections: whoever holds connections open
        cannot lock others out, and clients reopen a closed idle connection.
        """
        if len(self.connections) >= self.max_connections:
            for other in self.connections:
                if other.close_if_idle():
                    break
            else:
                return False
        self.connections[connection] = None
        return True

    def forget(self, connection: _Connection) -> None:
        """The connection has ended: it holds no place, and a body it was receiving no bytes."""
        self.connections.pop(connection, None)
        connection.parser.release()

    def abandon_stuck_sends(self) -> None:
        """Close each connection whose write has waited for its client since the last look.

        A client that never reads its replies would otherwise hold its
        connection busy for good (never idle, so never shed at the cap),
        and a few thousand of them would lock everyone else out. So is a
        connection the server closed whose last bytes its client never
        takes (asyncio keeps it until they are sent).
        """
        for connection in list(self.connections):
            lingering = connection.lingering()
            if (connection.sending and connection.writes == connection.writes_seen) or (
                lingering and connection.lingered
            ):
                logger.info(
                    "closing an HTTP connection whose client has read nothing for %s s", self.send_timeout
                )
                connection.abandon()
            connection.writes_seen = connection.writes
            connection.lingered = lingering

    async def _watch_sends(self) -> None:
        # Looked at every half timeout: a write stuck for one to two looks is abandoned.
        while True:
            await anyio.sleep(self.send_timeout / 2)
            self.abandon_stuck_sends()

    def full_message(self) -> str:
        return (
            f"the server holds as many connections as it may ({self.max_connections}), "
            "all of them busy: retry shortly"
        )

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
        try:
            async with anyio.create_task_group() as connections:
                async with anyio.create_task_group() as accepting:
                    accepting.start_soon(self._accept, listener, connections)
                    accepting.start_soon(self._watch_sends)
                    await self._stop_requested.wait()
                    accepting.cancel_scope.cancel()
                await listener.aclose()
                self._begin_stopping()
                connections.cancel_scope.deadline = anyio.current_time() + (
                    self.graceful_timeout if self.graceful_timeout >= 0 else math.inf
                )
        finally:
            # Cancelled (a second stop signal): the port must close all the same.
            with anyio.CancelScope(shield=True):
                await listener.aclose()

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
        if not self.admit(connection):
            await connection.refuse(503, self.full_message())
            return
        try:
            await connection.run()
        finally:
            self.forget(connection)

    async def _serve_on_asyncio(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _AsyncioConnection(self), sock=sock, backlog=ACCEPT_BATCH)
        sock.listen(self.backlog)  # the kernel's queue stays as asked; ACCEPT_BATCH is asyncio's batch
        send_watch = loop.create_task(self._watch_sends())
        try:
            await self._stop_requested.wait()
            send_watch.cancel()  # as on trio: past the stop, the grace period bounds every send
            server.close()
            self._begin_stopping()
            busy = {connection.task for connection in self.connections if connection.task is not None}
            if busy:
                timeout = self.graceful_timeout if self.graceful_timeout >= 0 else None
                await asyncio.wait(busy, timeout=timeout)
        finally:
            # Past the grace period, or cancelled: what still runs is cancelled.
            send_watch.cancel()
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
