"""A lean MCP client over Streamable HTTP for the HTTP scenario: raw HTTP/1.1 on asyncio streams.

Each simulated client holds one keep-alive connection and sends one
2026-07-28 sessionless ``tools/call`` at a time (the request carries its
protocol version, capabilities and client info in ``_meta``, and the
``MCP-Protocol-Version`` and ``Mcp-Method`` headers). The SDK's own client
costs milliseconds of CPU per call, which on a shared 2-core machine would
measure the client; this one costs tens of microseconds.

A server that answers with an SSE stream instead of JSON is read too (the
``data:`` line of its one ``message`` event).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from benchmarks.suite import BenchmarkFailure

PROTOCOL = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "actorstate-bench", "version": "1"},
}


class HttpMcpClient:
    """One keep-alive connection to an MCP endpoint; ``call`` sends a tool call and reads its reply."""

    def __init__(self, host: str, port: int, path: str, token: str | None = None) -> None:
        self.host, self.port, self.path = host, port, path
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.next_id = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass

    def request_bytes(self, tool: str, arguments: dict[str, Any]) -> bytes:
        self.next_id += 1
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": self.next_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments, "_meta": META},
            }
        ).encode()
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"MCP-Protocol-Version: {PROTOCOL}\r\nMcp-Method: tools/call\r\nMcp-Name: {tool}\r\n"
            f"{auth}Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool's result; a JSON-RPC error, an isError result or an HTTP error fails the benchmark."""
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(self.request_bytes(tool, arguments))
        status, body = await self._response()
        if status != 200:
            raise BenchmarkFailure(f"{tool}: HTTP {status}: {body[:300]!r}")
        reply = json.loads(body)
        result = reply.get("result")
        if result is None or result.get("isError"):
            raise BenchmarkFailure(f"{tool} answered an error: {json.dumps(reply)[:300]}")
        checked: dict[str, Any] = result
        return checked

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        status_line = await self.reader.readline()
        if not status_line:
            raise BenchmarkFailure("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            raise BenchmarkFailure(f"a reply with neither length nor chunks: {headers}")
        if headers.get("content-type", "").startswith("text/event-stream"):
            data = [line[5:].strip() for line in body.splitlines() if line.startswith(b"data:")]
            body = next((d for d in data if d.startswith(b"{") and b'"id"' in d), b"")
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()
