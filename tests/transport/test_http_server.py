"""The HTTP/1.1 server under ``serve --http``, on raw sockets: keep-alive, pipelining, chunked
streams, clients leaving, every refusal, and a graceful stop, on asyncio and trio."""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import pytest

from actorstate.transport.http_server import MAX_HEAD_BYTES, HttpServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

MAX_BODY = 1000


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

    async def read(self) -> tuple[int, dict[str, str], bytes]:
        """The next reply: status, headers (lower-case names), body (chunks joined)."""
        status = int((await self._line()).split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while line := await self._line():
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
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
        if path == "/wait-for-disconnect":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"started", "more_body": True})
            self.entered.set()
            if (await receive())["type"] == "http.disconnect":
                self.saw_disconnect.set()
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


@contextlib.asynccontextmanager
async def serving(
    app: Any, graceful_timeout: float = 10.0, keep_alive_timeout: float = 75.0
) -> AsyncIterator[tuple[HttpServer, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    port = sock.getsockname()[1]
    server = HttpServer(
        app, max_body=MAX_BODY, graceful_timeout=graceful_timeout, keep_alive_timeout=keep_alive_timeout
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
        (b"POST / HTTP/1.1\r\ncontent-length: 5000\r\n\r\n", 413, f"the limit is {MAX_BODY} bytes".encode()),
    ],
    ids=["unparsable", "head-too-large", "body-too-large"],
)
async def test_bad_requests_are_refused_with_their_status_and_the_server_goes_on(
    raw: bytes, status: int, says: bytes
) -> None:
    """Each refusal answers its status with a message and closes; the next connection is served."""
    async with serving(App()) as (_, port):
        async with connection(port) as (stream, replies):
            await stream.send(raw)  # the too-large body is never sent: the refusal comes first
            got, headers, body = await replies.read()
            assert (got, headers["connection"]) == (status, "close")
            assert says in body
            assert await replies.closed()
        async with connection(port) as (stream, replies):
            await stream.send(request("/fine"))
            assert (await replies.read())[0] == 200


async def test_an_app_that_raises_answers_500_and_the_server_goes_on() -> None:
    """A failure before the reply starts answers 500 on that connection; others are served."""
    async with serving(App()) as (_, port):
        async with connection(port) as (stream, replies):
            await stream.send(request("/raise"))
            assert (await replies.read())[0] == 500
        async with connection(port) as (stream, replies):
            await stream.send(request("/fine"))
            assert (await replies.read())[0] == 200


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
