"""A lean MCP client over Streamable HTTP for the HTTP scenarios: raw HTTP/1.1 on an asyncio protocol.

Each simulated client holds one keep-alive connection and sends one
2026-07-28 sessionless ``tools/call`` at a time (the request carries its
protocol version, capabilities and client info in ``_meta``, and the
``MCP-Protocol-Version`` and ``Mcp-Method`` headers).

The client shares the machine's two cores with the servers it measures, so
its own cost per call is part of every figure: the SDK's client costs
milliseconds of CPU per call, asyncio streams (a ``readline`` per header)
about 70 µs. This one is an ``asyncio.Protocol`` that keeps the bytes it
received in one buffer and parses a reply in a few slices (about 20 µs a
call): the same for every server measured, so ratios stay fair, and the
servers get the CPU the client no longer takes.

A server that answers with an SSE stream instead of JSON, or in chunks, is
read too (the ``data:`` line of its one ``message`` event).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from benchmarks.suite import BenchmarkFailure

PROTOCOL = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "actorstate-bench", "version": "1"},
}
_END_OF_HEAD = b"\r\n\r\n"


class _Reader(asyncio.Protocol):
    """The connection's protocol: received bytes in one buffer; a waiter woken when they grow."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self) -> None:
        """Wait until more bytes arrive (or the server closes: then fail)."""
        if self.closed:
            raise BenchmarkFailure("the server closed the connection")
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class HttpMcpClient:
    """One keep-alive connection to an MCP endpoint; ``call`` sends a tool call and reads its reply."""

    def __init__(self, host: str, port: int, path: str, token: str | None = None) -> None:
        self.host, self.port, self.path = host, port, path
        self.token = token
        self.reader: _Reader | None = None
        self.next_id = 0
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        # Everything of the head but the tool's name and the body's length, made once.
        self._head_start = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"MCP-Protocol-Version: {PROTOCOL}\r\nMcp-Method: tools/call\r\n{auth}Mcp-Name: "
        ).encode()

    async def connect(self) -> None:
        _, self.reader = await asyncio.get_running_loop().create_connection(_Reader, self.host, self.port)

    async def close(self) -> None:
        if self.reader is not None and self.reader.transport is not None:
            self.reader.transport.close()

    def request_bytes(self, tool: str, arguments: dict[str, Any]) -> bytes:
        self.next_id += 1
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": self.next_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments, "_meta": META},
            }
        )
        return b"%s%s\r\nContent-Length: %d\r\n\r\n%s" % (self._head_start, tool.encode(), len(body), body)

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool's result; a JSON-RPC error, an isError result or an HTTP error fails the benchmark."""
        reader = self.reader
        assert reader is not None
        assert reader.transport is not None
        reader.transport.write(self.request_bytes(tool, arguments))
        status, body = await self._response(reader)
        if status != 200:
            raise BenchmarkFailure(f"{tool}: HTTP {status}: {body[:300]!r}")
        reply = orjson.loads(body)
        result = reply.get("result")
        if result is None or result.get("isError"):
            raise BenchmarkFailure(f"{tool} answered an error: {orjson.dumps(reply)[:300]!r}")
        checked: dict[str, Any] = result
        return checked

    async def _response(self, reader: _Reader) -> tuple[int, bytes]:
        buffer = reader.buffer
        while (end := buffer.find(_END_OF_HEAD)) < 0:
            await reader.more()
        head = bytes(buffer[:end]).decode("latin-1")
        del buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            raise BenchmarkFailure(f"not an HTTP reply: {status_line[:100]!r}") from None
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(buffer) < length:
                await reader.more()
            body = bytes(buffer[:length])
            del buffer[:length]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked(reader)
        else:
            raise BenchmarkFailure(f"a reply with neither length nor chunks: {headers}")
        if headers.get("content-type", "").startswith("text/event-stream"):
            data = [line[5:].strip() for line in body.splitlines() if line.startswith(b"data:")]
            body = next((d for d in data if d.startswith(b"{") and b'"id"' in d), b"")
        return status, body

    async def _chunked(self, reader: _Reader) -> bytes:
        buffer = reader.buffer
        parts: list[bytes] = []
        while True:
            while (line_end := buffer.find(b"\r\n")) < 0:
                await reader.more()
            size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
            while len(buffer) < line_end + 2 + size + 2:
                await reader.more()
            parts.append(bytes(buffer[line_end + 2 : line_end + 2 + size]))
            del buffer[: line_end + 2 + size + 2]
            if size == 0:
                return b"".join(parts)
