"""A tiny JSON-RPC client over a server subprocess's pipes, for tests that need the raw wire."""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
from typing import IO, Any

# The initialize request every raw-wire test opens with.
INITIALIZE_PARAMS: dict[str, Any] = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "raw", "version": "1"},
}
INITIALIZE_REQUEST: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": INITIALIZE_PARAMS,
}


class RawClient:
    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        python_flags: tuple[str, ...] = (),
        stderr: IO[bytes] | None = None,
    ) -> None:
        """Start ``actorstate serve`` with ``args``; ``stderr``: a file for its log, else a pipe."""
        self.process = subprocess.Popen(
            [sys.executable, *python_flags, "-m", "actorstate", "serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr is None else stderr,
            env={**os.environ, **(env or {})},
        )
        self._buffer = b""
        self._next_id = 0

    def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def wait_consumed(self, timeout: float = 30.0) -> None:
        """Wait until the server has read everything written so far (the pipe is empty)."""
        assert self.process.stdin is not None
        deadline = time.monotonic() + timeout
        while struct.unpack("i", fcntl.ioctl(self.process.stdin.fileno(), termios.FIONREAD, b"\0" * 4))[0]:
            if time.monotonic() > deadline:
                raise TimeoutError("the server stopped reading")
            time.sleep(0.001)

    def send(self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False) -> int:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not notify:
            self._next_id += 1
            message["id"] = self._next_id
        self.send_raw(json.dumps(message).encode() + b"\n")
        return self._next_id

    def receive(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.process.stdout], [], [], remaining)[0]:
                raise TimeoutError("no reply from the server")
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            if not chunk:
                raise EOFError("the server closed its output")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = self.send(method, params)
        reply = self.receive()
        assert reply.get("id") == request_id, reply
        return reply

    def initialize(self) -> dict[str, Any]:
        reply = self.request("initialize", INITIALIZE_PARAMS)
        self.send("notifications/initialized", notify=True)
        return reply

    def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request("tools/call", {"name": tool, "arguments": arguments})["result"]
        return result

    def close(self, timeout: float = 30.0) -> tuple[int, str]:
        """Close stdin (end of input) and wait for a clean exit; return code and stderr."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        code = self.process.wait(timeout=timeout)
        stderr = ""
        if self.process.stderr is not None:
            stderr = self.process.stderr.read().decode()
            self.process.stderr.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code, stderr

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
