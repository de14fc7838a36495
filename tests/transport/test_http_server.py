"""The HTTP/1.1 server under ``serve --http``, on raw sockets: keep-alive, pipelining, chunked
streams, clients leaving, every refusal, and a graceful stop, on asyncio and trio; and what a
hostile or broken client tries: trickled requests, pipelining without reading, half-closed
sockets, ``Expect: 100-continue``, upgrades, more connections than the server may hold."""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import pytest
import sniffio

from actorstate.transport.http_server import (
    BODY_ALLOWANCE,
    MAX_BODIES_RECEIVING,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MAX_QUEUED_REQUESTS,
    MAX_READ_AHEAD,
    HttpServer,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from starlette.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

MAX_BODY = 1000
# A guard against hanging, never a timing assertion: what never comes fails the test.
HANG_GUARD_SECONDS = 10


class Replies:
    """Reads HTTP/1.1 replies off one connection."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return False
        self.buffer += data
        return True

    async def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not await self._fill():
                raise EOFError("the connection closed")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill():
                raise EOFError("the connection closed")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def head(self) -> tuple[int, dict[str, str]]:
        """The next reply's status and headers (lower-case names)."""
        status = int((await self._line()).split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while line := await self._line():
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        return status, headers

    async def body(self, headers: dict[str, str]) -> bytes:
        """The body after ``headers``: by its length, or its chunks joined."""
        if "content-length" in headers:
            return await self._exactly(int(headers["content-length"]))
        body = b""
        assert headers.get("transfer-encoding") == "chunked", headers
        while size := int(await self._line(), 16):
            body += await self._exactly(size)
            assert await self._line() == b""
        assert await self._line() == b""
        return body

    async def read(self) -> tuple[int, dict[str, str], bytes]:
        """The next reply: status, headers (lower-case names), body (chunks joined)."""
        status, headers = await self.head()
        if 100 <= status < 200:  # an interim reply has no body
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, await self._exactly(int(headers["content-length"]))
        body = b""
        assert headers.get("transfer-encoding") == "chunked", headers
        while size := int(await self._line(), 16):
            body += await self._exactly(size)
            assert await self._line() == b""
        assert await self._line() == b""
        return status, headers, body

    async def closed(self) -> bool:
        """True once the server has closed the connection (nothing more to read)."""
        return self.buffer == b"" and not await self._fill()

    async def rest(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        while await self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def request(path: str = "/", body: bytes = b"", *, version: str = "1.1", extra: str = "") -> bytes:
    method = "POST" if body else "GET"
    head = f"{method} {path} HTTP/{version}\r\nhost: test\r\n{extra}"
    if body:
        head += f"content-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class App:
    """An ASGI app for the tests: echoes, streams, waits, raises, as the path says."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.entered = anyio.Event()
        self.saw_disconnect = anyio.Event()
        self.cancelled = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        message = await receive()
        body = message["body"]
        if path == "/raise":
            raise RuntimeError("a planted failure")
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-kind", b"stream")]})
            for part in (b"one,", b"two,", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if path == "/stream-later":
            headers = [(b"content-type", b"text/event-stream"), (b"x-kind", b"later")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            self.entered.set()
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"at last", "more_body": False})
            return
        if path == "/wait-for-disconnect":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"started", "more_body": True})
            self.entered.set()
            if (await receive())["type"] == "http.disconnect":
                self.saw_disconnect.set()
            return
        if path == "/big":
            # More than the socket buffers hold: the send waits for the client to read.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"B" * (32 << 20)})
            return
        if path == "/sixty":
            # Under asyncio's high-water mark: written without waiting, whoever reads it.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"6" * 60_000})
            return
        if path == "/slow":
            self.entered.set()
            try:
                await self.release.wait()
            except anyio.get_cancelled_exc_class():
                self.cancelled.set()
                raise
        reply = f"{scope['method']} {path} {scope['query_string'].decode()} {len(body)}".encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": reply})


class HoldingApp:
    """Holds the n-th request until the test sets ``release[n]``, watching meanwhile for the client
    leaving as the fast path does (then it replies nothing); the reply's body is n."""

    def __init__(self) -> None:
        self.entered: defaultdict[int, anyio.Event] = defaultdict(anyio.Event)
        self.release: defaultdict[int, anyio.Event] = defaultdict(anyio.Event)
        self.left = anyio.Event()
        self.taken = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        number = self.taken
        self.taken += 1
        await receive()
        async with anyio.create_task_group() as group:
            group.start_soon(self._cancel_when_client_leaves, receive, group.cancel_scope)
            self.entered[number].set()
            await self.release[number].wait()
            group.cancel_scope.cancel()
        if self.left.is_set():
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(number).encode()})

    async def _cancel_when_client_leaves(self, receive: Receive, scope: anyio.CancelScope) -> None:
        if (await receive())["type"] == "http.disconnect":
            self.left.set()
            scope.cancel()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (polled; the guard fails the test if it never holds)."""
    with anyio.fail_after(HANG_GUARD_SECONDS):
        while not condition():  # noqa: ASYNC110 - the server's figures have no event to wait on
            await anyio.sleep(0.005)


@contextlib.asynccontextmanager
async def serving(
    app: Any,
    graceful_timeout: float = 10.0,
    keep_alive_timeout: float = 75.0,
    max_connections: int | None = None,
    receive_buffer: int | None = None,
    send_buffer: int | None = None,
    max_body: int = MAX_BODY,
    send_timeout: float = 60.0,
    max_bodies_receiving: int = MAX_BODIES_RECEIVING,
) -> AsyncIterator[tuple[HttpServer, int]]:
    sock = socket.socket()
    if receive_buffer is not None:  # inherited by every accepted socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    port = sock.getsockname()[1]
    server = HttpServer(
        app,
        max_body=max_body,
        graceful_timeout=graceful_timeout,
        keep_alive_timeout=keep_alive_timeout,
        send_timeout=send_timeout,
        max_connections=max_connections,
        max_bodies_receiving=max_bodies_receiving,
    )
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, sock)
        yield server, port
        server.stop()


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[anyio.abc.SocketStream, Replies]]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        yield stream, Replies(stream)


async def test_one_connection_carries_request_after_request() -> None:
    """Keep-alive: three requests on one connection, each answered in order with its length."""
    async with serving(App()) as (_, port), connection(port) as (stream, replies):
        for number in range(3):
            await stream.send(request(f"/echo?n={number}", b"x" * (number + 1)))
            status, headers, body = await replies.read()
            assert (status, body) == (200, f"POST /echo n={number} {number + 1}".encode())
            assert "connection" not in headers
            assert "date" in headers


async def test_pipelined_requests_are_answered_in_order() -> None:
    """Two requests in one write are both answered, the first first."""
    async with serving(App()) as (_, port), connection(port) as (stream, replies):
        await stream.send(request("/a", b"1") + request("/b", b"22"))
        assert (await replies.read())[2] == b"POST /a  1"
        assert (await replies.read())[2] == b"POST /b  2"


async def test_http_1_0_closes_after_its_reply_unless_kept_alive() -> None:
    """An HTTP/1.0 request gets ``connection: close`` and the connection ends; with keep-alive it stays."""
    async with serving(App()) as (_, port):
        async with connection(port) as (stream, replies):
            await stream.send(request("/old", version="1.0"))
            status, headers, _ = await replies.read()
            assert (status, headers["connection"]) == (200, "close")
            assert await replies.closed()
        async with connection(port) as (stream, replies):
            await stream.send(request("/old", version="1.0", extra="connection: keep-alive\r\n"))
            assert (await replies.read())[1]["connection"] == "keep-alive"
            await stream.send(request("/again", version="1.0", extra="connection: keep-alive\r\n"))
            assert (await replies.read())[2] == b"GET /again  0"


async def test_an_idle_connection_closes_after_the_keep_alive_timeout() -> None:
    """A connection with no request for the keep-alive timeout is closed by the server."""
    async with serving(App(), keep_alive_timeout=0.05) as (_, port), connection(port) as (stream, replies):
        await stream.send(request("/one"))
        assert (await replies.read())[0] == 200
        with anyio.fail_after(10):
            assert await replies.closed()


async def test_a_streamed_reply_is_chunked_and_the_connection_goes_on() -> None:
    """A reply sent in parts (an SSE stream's shape) arrives chunked, whole; the next request follows."""
    async with serving(App()) as (_, port), connection(port) as (stream, replies):
        await stream.send(request("/stream"))
        status, headers, body = await replies.read()
        assert (status, body, headers["x-kind"]) == (200, b"one,two,three", "stream")
        await stream.send(request("/after"))
        assert (await replies.read())[2] == b"GET /after  0"


async def test_an_event_streams_head_goes_out_before_its_first_event() -> None:
    """An event stream (``text/event-stream``, no length) sends its head at once: the client reads
    it while the body is still to come (its first event may be a keep-alive ping 15 s away)."""
    app = App()
    async with serving(app) as (_, port), connection(port) as (stream, replies):
        await stream.send(request("/stream-later"))
        with anyio.fail_after(10):  # without the head sent at once: waits for the release, never set
            status, headers = await replies.head()
        assert (status, headers["x-kind"], headers["transfer-encoding"]) == (200, "later", "chunked")
        assert not app.release.is_set()
        app.release.set()
        assert await replies.body(headers) == b"at last"


async def test_the_app_learns_that_the_client_left() -> None:
    """A client closing its connection mid-stream makes the app's ``receive()`` answer ``http.disconnect``."""
    app = App()
    async with serving(app) as (_, port):
        async with connection(port) as (stream, _):
            await stream.send(request("/wait-for-disconnect"))
            await app.entered.wait()
        with anyio.fail_after(10):
            await app.saw_disconnect.wait()


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, b"not valid HTTP/1.1"),
        (
            b"GET / HTTP/1.1\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n",
            431,
            f"exceed {MAX_HEAD_BYTES} bytes".encode(),
        ),
        (
            b"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 5000\r\n\r\n",
            413,
            f"the limit is {MAX_BODY} bytes".encode(),
        ),
        # Accepted by llhttp, refused by the URL parser: once a crash of the whole server (trio).
        (b"GET http://a:b/ HTTP/1.1\r\nhost: test\r\n\r\n", 400, b"not a valid URL"),
        (b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n", 400, b"not a valid URL"),
        (b"GET / HTTP/2.0\r\nhost: test\r\n\r\n", 505, b"HTTP/2.0 is not served here"),
        (b"GET /\r\n\r\n", 505, b"HTTP/0.9 is not served here"),
        # Each counted with its colon and line end: 13,105 empty headers pass 64 KiB at the last one.
        (b"GET / HTTP/1.1\r\nhost: test\r\n" + b"a:\r\n" * 13105 + b"\r\n", 431, b"exceed"),
        (
            b"GET / HTTP/1.1\r\nhost: test\r\n"
            + b"".join(b"x-%d: 1\r\n" % number for number in range(MAX_HEADERS))
            + b"\r\n",
            431,
            f"more than {MAX_HEADERS} headers".encode(),
        ),
        (b"GET / HTTP/1.1\r\n\r\n", 400, b"exactly one Host"),
        (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 400, b"exactly one Host"),
    ],
    ids=[
        "unparsable",
        "head-too-large",
        "body-too-large",
        "target-not-a-url",
        "connect",
        "http-2",
        "http-0.9",
        "many-tiny-headers",
        "too-many-headers",
        "no-host",
        "two-hosts",
    ],
)
async def test_bad_requests_are_refused_with_their_status_and_the_server_goes_on(
    raw: bytes, status: int, says: bytes
) -> None:
    """Each refusal answers its status with a message and closes; the next connection is served."""
    async with serving(App()) as (_, port):
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with connection(port) as (stream, replies):
                await stream.send(raw)  # the too-large body is never sent: the refusal comes first
                got, headers, body = await replies.read()
                assert (got, headers["connection"]) == (status, "close")
                assert says in body
                assert await replies.closed()
            async with connection(port) as (stream, replies):
                await stream.send(request("/fine"))
                assert (await replies.read())[0] == 200


async def test_clients_resetting_their_connections_at_once_leave_the_server_serving() -> None:
    """A client that connects and resets at once (as a load balancer's TCP health check may) is
    gone before it is served: it has no address any more. The server drops it and serves on."""
    async with serving(App()) as (server, port):
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                # Linger on, with no time: close sends a reset instead of a FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await until(lambda: not server.connections)
        async with connection(port) as (stream, replies):
            await stream.send(request("/fine"))
            assert (await replies.read())[0] == 200


async def test_bodies_still_arriving_are_bounded_over_all_connections() -> None:
    """Bodies sent slowly on many connections hold at most ``max_bodies_receiving`` bytes past each
    one's allowance: the request whose body would go over is answered 503 and closed. A body that
    arrives whole, a refused one and one whose client leaves give their bytes back, so later
    requests are served; a body within the allowance is served however full the bound is."""
    size = BODY_ALLOWANCE + 1000  # each body counts its last 1,000 bytes
    head = b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: %d\r\n\r\n" % size
    async with serving(App(), max_body=size, max_bodies_receiving=2500) as (server, port):
        receiving = server.bodies_receiving
        async with connection(port) as (first, first_replies), connection(port) as (second, _):
            for stream in (first, second):
                await stream.send(head + b"x" * (BODY_ALLOWANCE + 900))
            await until(lambda: receiving.held == 1800)
            async with connection(port) as (third, third_replies):
                await third.send(head + b"x" * (BODY_ALLOWANCE + 600))
                await until(lambda: receiving.held == 2400)
                await third.send(b"x" * 400)
                status, _, body = await third_replies.read()
                assert status == 503
                assert b"2500 bytes of request bodies" in body
                assert await third_replies.closed()
            assert (receiving.held, receiving.refused) == (1800, 1)
            async with connection(port) as (small, small_replies):
                await small.send(request("/echo", b"s" * BODY_ALLOWANCE))  # over the room left, not counted
                assert (await small_replies.read())[2] == b"POST /echo  %d" % BODY_ALLOWANCE
            await first.send(b"y" * 100)  # whole now: answered, and its bytes leave the count
            assert (await first_replies.read())[:3:2] == (200, b"POST /echo  %d" % size)
            assert receiving.held == 900
            async with connection(port) as (fourth, fourth_replies):
                await fourth.send(request("/echo", b"z" * size))
                assert (await fourth_replies.read())[2] == b"POST /echo  %d" % size
        # The second client left with its body half sent.
        await until(lambda: receiving.held == 0)


async def test_a_body_cut_off_by_the_keep_alive_timeout_gives_its_bytes_back() -> None:
    """A request whose body stops coming is closed at the keep-alive timeout, and what of its body
    had come stops counting toward the bound."""
    size = BODY_ALLOWANCE + 1000
    head = b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: %d\r\n\r\n" % size
    async with serving(App(), max_body=size, keep_alive_timeout=0.2) as (server, port):
        async with connection(port) as (stream, replies):
            await stream.send(head + b"x" * (BODY_ALLOWANCE + 500))
            await until(lambda: server.bodies_receiving.held == 500)
            assert await replies.closed()
        await until(lambda: server.bodies_receiving.held == 0 and not server.connections)


async def test_a_connection_closed_with_its_last_reply_unread_is_let_go() -> None:
    """A client that asks the server to close after a reply, then reads none of it, leaves the
    reply's last bytes unsent: the connection is let go after the send timeout all the same, its
    place given back (asyncio would otherwise keep it until the bytes are sent)."""
    async with serving(App(), send_timeout=0.4, receive_buffer=4096, send_buffer=4096) as (server, port):
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window
            sock.connect(("127.0.0.1", port))
            sock.sendall(request("/sixty", extra="connection: close\r\n"))
            with anyio.fail_after(HANG_GUARD_SECONDS):
                assert (await anyio.to_thread.run_sync(sock.recv, 100)).startswith(b"HTTP/1.1 200")
            # The rest of the reply stays unread, and the server has closed its end.
            await until(lambda: not server.connections)
        finally:
            sock.close()


async def test_an_app_that_raises_answers_500_and_the_server_goes_on() -> None:
    """A failure before the reply starts answers 500 on that connection; others are served."""
    async with serving(App()) as (_, port):
        async with connection(port) as (stream, replies):
            await stream.send(request("/raise"))
            assert (await replies.read())[0] == 500
        async with connection(port) as (stream, replies):
            await stream.send(request("/fine"))
            assert (await replies.read())[0] == 200


async def test_an_app_that_raises_after_starting_but_before_its_body_answers_500() -> None:
    """A failure after ``http.response.start`` but before any body (nothing of the reply written
    yet) still answers 500 instead of closing the connection without a reply."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("failed after the start")

    async with serving(app) as (_, port), connection(port) as (stream, replies):
        await stream.send(request("/"))
        status, _, body = await replies.read()
        assert (status, body) == (500, b"internal server error\n")
        assert await replies.closed()


async def test_a_server_cancelled_outright_closes_its_port() -> None:
    """Serving cancelled (a second stop signal) with a connection open and a request in flight:
    the port is closed all the same, so no new connection is taken in and left unanswered."""
    app = App()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    port = sock.getsockname()[1]
    server = HttpServer(app, max_body=MAX_BODY)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, sock)
        async with connection(port) as (stream, _):
            await stream.send(request("/slow"))
            await app.entered.wait()
            group.cancel_scope.cancel()
    with pytest.raises(OSError, match=r"[Cc]onnect"):
        await anyio.connect_tcp("127.0.0.1", port)


async def test_a_stop_closes_idle_connections_and_lets_a_request_in_flight_finish() -> None:
    """After stop: an idle connection is closed, the request in flight gets its reply (then the
    connection closes), and no new connection is taken."""
    app = App()
    async with serving(app) as (server, port):
        async with connection(port) as (idle, idle_replies), connection(port) as (busy, busy_replies):
            await idle.send(request("/warm"))
            await idle_replies.read()
            await busy.send(request("/slow"))
            await app.entered.wait()
            server.stop()
            assert await idle_replies.closed()
            app.release.set()
            status, headers, body = await busy_replies.read()
            assert (status, body, headers["connection"]) == (200, b"GET /slow  0", "close")
            assert await busy_replies.closed()
        with pytest.raises(OSError, match=r"[Cc]onnect"):
            await anyio.connect_tcp("127.0.0.1", port)
    assert not app.cancelled.is_set()


async def test_a_request_past_the_graceful_timeout_is_cancelled() -> None:
    """A request still running when the grace period ends is cancelled, and the server returns."""
    app = App()
    async with serving(app, graceful_timeout=0.05) as (server, port), connection(port) as (stream, _):
        await stream.send(request("/slow"))
        await app.entered.wait()
        server.stop()
        with anyio.fail_after(10):
            await app.cancelled.wait()


async def test_a_client_expecting_100_continue_is_told_to_send_its_body() -> None:
    """A request with ``Expect: 100-continue`` gets ``100 Continue`` once its head is in (a client
    waiting for it would otherwise hang), then, its body sent, its reply."""
    body = b"z" * 10
    raw = request("/upload", body, extra="expect: 100-continue\r\n")
    async with serving(App()) as (_, port), connection(port) as (stream, replies):
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await stream.send(raw[: -len(body)])
            assert (await replies.read())[0] == 100
            await stream.send(body)
            assert (await replies.read())[:3:2] == (200, b"POST /upload  10")


async def test_an_upgrade_request_is_answered_as_a_plain_one_and_the_connection_closes() -> None:
    """A request asking to upgrade (WebSocket here) gets the app's reply with ``connection: close``,
    and nothing else: the bytes after it, another protocol's, are never read as HTTP."""
    upgrade = request("/ws", extra="connection: upgrade\r\nupgrade: websocket\r\n")
    async with serving(App()) as (_, port), connection(port) as (stream, replies):
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await stream.send(upgrade + b"\x81\x05hello" + request("/after"))
            status, headers, body = await replies.read()
            assert (status, body, headers["connection"]) == (200, b"GET /ws  0", "close")
            assert await replies.closed()


async def test_a_streamed_reply_to_http_1_0_is_sent_unchunked_and_ends_with_the_connection() -> None:
    """HTTP/1.0 knows no chunked encoding: a streamed reply goes out as it comes, without
    ``transfer-encoding``, and the connection's end marks its end."""
    async with serving(App()) as (_, port), connection(port) as (stream, replies):
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await stream.send(request("/stream", version="1.0"))
            head, _, body = (await replies.rest()).partition(b"\r\n\r\n")
            assert body == b"one,two,three"
            assert b"transfer-encoding" not in head.lower()
            assert b"connection: close" in head.lower()


@pytest.mark.parametrize("part", ["head", "body"])
async def test_a_request_trickled_byte_by_byte_is_cut_at_the_keep_alive_timeout(part: str) -> None:
    """A slowloris client, sending its request a byte at a time, each byte well within the keep-alive
    timeout, still has the whole request (head and body) to send within it: the server closes the
    connection and the request never reaches the app. (The trickle lasts seconds, the timeout 0.3 s.)"""
    app = App()
    raw = request("/trickled", b"b" * 400, extra="x-pad: " + "p" * 400 + "\r\n")
    start = 0 if part == "head" else raw.index(b"\r\n\r\n") + 4

    async def trickle(stream: anyio.abc.SocketStream) -> None:
        for byte in raw[start:]:
            await stream.send(bytes([byte]))
            await anyio.sleep(0.01)

    async with serving(app, keep_alive_timeout=0.3) as (_, port), connection(port) as (stream, replies):
        await stream.send(raw[:start])
        async with anyio.create_task_group() as group:
            group.start_soon(trickle, stream)
            with anyio.fail_after(HANG_GUARD_SECONDS):
                assert await replies.closed()
            group.cancel_scope.cancel()
    assert not app.entered.is_set()


async def test_a_client_that_half_closes_still_gets_every_reply() -> None:
    """A client that sends its requests and then its end of stream (``shutdown(SHUT_WR)``) is still
    reading: both pipelined requests are answered, though the app watches for the client leaving
    (as the fast path does), and then the connection closes."""
    app = HoldingApp()
    async with serving(app) as (server, port), connection(port) as (stream, replies):
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await stream.send(request("/first") + request("/second"))
            await stream.send_eof()
            await app.entered[0].wait()
            await until(lambda: server.statistics().connections_half_closed == 1)
            app.release[0].set()
            app.release[1].set()
            assert (await replies.read())[:3:2] == (200, b"0")
            assert (await replies.read())[:3:2] == (200, b"1")
            assert await replies.closed()
    assert not app.left.is_set()


async def test_a_stream_begun_after_the_client_half_closed_tells_the_app_it_left() -> None:
    """Once a reply streams (an SSE stream could run forever), the client's end of stream counts as
    leaving: the app's ``receive()`` answers ``http.disconnect``."""
    app = App()
    async with serving(app) as (_, port), connection(port) as (stream, _):
        await stream.send(request("/wait-for-disconnect"))
        await stream.send_eof()
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await app.saw_disconnect.wait()


@pytest.mark.parametrize("body_size", [100, 60_000], ids=["small-requests", "large-requests"])
async def test_a_client_pipelining_without_reading_its_replies_is_read_only_so_far(body_size: int) -> None:
    """A client that pipelines without end, never reading a reply, is read only until
    ``MAX_QUEUED_REQUESTS`` wait or ``MAX_READ_AHEAD`` bytes (plus what one read brings), and not
    read again while any still waits: answering one must not let the queue grow by another
    bound's worth, or memory grows without limit."""
    app = HoldingApp()
    one = request("/flood", b"f" * body_size)
    # The server's receive buffer is small, so one read brings a few requests at most.
    per_read = 2 * 16384 // len(one) + 1
    bound = min(MAX_QUEUED_REQUESTS, MAX_READ_AHEAD // len(one)) + 2 * per_read + 1

    async def flood(stream: anyio.abc.SocketStream) -> None:
        while True:
            await stream.send(one * 4)  # blocks once the server stops reading

    async with (
        # No grace at the end: the last request is held for good.
        serving(app, receive_buffer=8192, graceful_timeout=0, max_body=body_size) as (server, port),
        connection(port) as (stream, _),
        anyio.create_task_group() as group,
    ):
        group.start_soon(flood, stream)
        for number in range(3):
            with anyio.fail_after(HANG_GUARD_SECONDS):
                await app.entered[number].wait()
            await until(lambda: server.statistics().connections_not_reading == 1)
            assert server.statistics().requests_queued <= bound
            app.release[number].set()
        group.cancel_scope.cancel()


async def test_at_the_connection_cap_the_idle_connection_held_longest_makes_room() -> None:
    """With the server holding as many connections as it may, a new client is served: the idle
    keep-alive connection is closed to make room (one busy with a request is not)."""
    app = App()
    async with serving(app, max_connections=2) as (_, port):
        async with connection(port) as (idle, idle_replies), connection(port) as (busy, busy_replies):
            await idle.send(request("/warm"))
            await idle_replies.read()
            await busy.send(request("/slow"))
            await app.entered.wait()
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(HANG_GUARD_SECONDS):
                async with connection(port) as (new, new_replies):
                    await new.send(request("/new"))
                    assert (await new_replies.read())[2] == b"GET /new  0"
                assert await idle_replies.closed()
                app.release.set()
                assert (await busy_replies.read())[2] == b"GET /slow  0"


async def test_at_the_connection_cap_with_every_connection_busy_a_new_one_is_answered_503() -> None:
    """With every connection the server may hold busy, a new one is answered ``503`` with the
    reason and closed; the busy one is answered, and a later client is served."""
    app = App()
    async with serving(app, max_connections=1) as (_, port):
        async with connection(port) as (busy, busy_replies):
            await busy.send(request("/slow"))
            await app.entered.wait()
            with anyio.fail_after(HANG_GUARD_SECONDS):
                async with connection(port) as (_, refused_replies):
                    status, headers, body = await refused_replies.read()
                    assert (status, headers["connection"]) == (503, "close")
                    assert b"as many connections as it may (1)" in body
                    assert await refused_replies.closed()
                app.release.set()
                assert (await busy_replies.read())[2] == b"GET /slow  0"
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with connection(port) as (later, later_replies):
                await later.send(request("/later"))
                assert (await later_replies.read())[0] == 200


@pytest.mark.slow
async def test_a_real_server_at_its_descriptor_limit_still_serves_a_new_client(tmp_path: Path) -> None:
    """``actorstate serve --http`` allowed 256 descriptors and sent 400 idle connections still
    serves a new client (idle ones are closed to make room: once, the server ran out of
    descriptors, new clients waited unanswered in the backlog, and asyncio logged a traceback per
    accept it tried), never fails an accept, and stops with exit 0 on SIGTERM."""
    backend = sniffio.current_async_library()
    command = (
        f"ulimit -n 256 && exec {shlex.quote(sys.executable)} -m actorstate serve --http 127.0.0.1:0 "
        f"--db {shlex.quote(str(tmp_path / 'state.db'))} --backend {backend} --stop-grace 1"
    )
    stderr = bytearray()
    listening = anyio.Event()

    async def read_stderr(process: anyio.abc.Process) -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:  # read throughout, so logging never blocks on the pipe
            stderr.extend(chunk)
            if b"serving MCP over HTTP at" in stderr:
                listening.set()

    process = await anyio.open_process(
        ["sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(read_stderr, process)
            with anyio.fail_after(60):
                await listening.wait()
            found = re.search(rb"http://127\.0\.0\.1:(\d+)/mcp", stderr)
            assert found is not None
            port = int(found.group(1))
            with contextlib.ExitStack() as idle:
                # Blocking connects, as fast as they come: the server sees them arrive in bursts.
                for _ in range(400):
                    idle.enter_context(socket.create_connection(("127.0.0.1", port)))
                with anyio.fail_after(HANG_GUARD_SECONDS):
                    async with connection(port) as (stream, replies):
                        await stream.send(f"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode())
                        assert (await replies.read())[0] == 200
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(60):
                assert await process.wait() == 0
    finally:
        if process.returncode is None:  # a failure above: the server must not outlive the test
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()
    assert b"Too many open files" not in stderr
    assert b"accepting a connection failed" not in stderr


async def test_a_client_that_reads_nothing_is_let_go_after_the_send_timeout() -> None:
    """A client that never reads a reply larger than the socket buffers holds its connection only
    until the send timeout: the server closes it (once, such a connection stayed busy for good,
    never idle, so never shed at the connection cap), and serves the next client."""
    async with serving(App(), send_timeout=0.2) as (server, port):
        async with connection(port) as (stream, replies):
            await stream.send(request("/big"))
            await until(lambda: server.statistics().connections == 0)
            with anyio.fail_after(HANG_GUARD_SECONDS):
                await replies.rest()  # what was sent before the close, then the end
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with connection(port) as (stream, replies):
                await stream.send(request("/next"))
                assert (await replies.read())[2] == b"GET /next  0"
