"""A real ``actorstate serve`` process, and a raw JSON-RPC client on its pipes.

The runner drives the server only over the wire, as any MCP client would:
it writes one JSON-RPC request per line to the process's stdin and matches
the lines on its stdout to requests by id. Many logical clients share the one
connection (stdio allows one client per process); each waits for its own
reply.

What a call can come to, as :class:`Reply` says it:

- a tool result: ``structured`` holds its ``structuredContent``, or
  ``error`` its text when ``isError`` is set;
- a JSON-RPC error (``"Connection closed"`` for a call still running when the
  server stopped): ``error`` holds its message, ``rpc_error`` is set;
- no reply at all: :class:`ServerGone` (the process exited, or was killed,
  before answering) or a timeout, which the caller sets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from typing import IO, TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import signal
    from collections.abc import Awaitable, Callable, Mapping
    from pathlib import Path

    from anyio.abc import Process

__all__ = ["Reply", "ServerGone", "ServerProcess", "serve_command"]

PROTOCOL_VERSION = "2025-11-25"
# Requests a server reads before it waits for replies to go out.
SERVER_IN_FLIGHT = 4096


class ServerGone(Exception):
    """The server process ended (or its pipes broke) before it answered."""


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """A server's answer to one ``tools/call``."""

    structured: dict[str, Any] | None = None
    error: str | None = None
    rpc_error: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def serve_command(db: Path, durability: str) -> list[str]:
    """The command line that starts a server on ``db``: this interpreter, so the same install."""
    return [
        sys.executable,
        "-m",
        "actorstate",
        "serve",
        "--db",
        str(db),
        "--durability",
        durability,
        "--log-level",
        "WARNING",
        # More than a session's mailbox holds (Config.mailbox_size), so a flood reaches past it.
        "--max-in-flight",
        str(SERVER_IN_FLIGHT),
    ]


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class _Waiter:
    __slots__ = ("done", "message")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.message: dict[str, Any] | None = None


class ServerProcess:
    """One server process: start it with :meth:`start` inside a task group that outlives it.

    ``name`` (``"server-1"``) is how faults name their target. The server's
    stderr goes to ``log``.
    """

    def __init__(
        self, name: str, command: list[str], log: IO[bytes], env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self._command = command
        self._log = log
        self._env = env
        self._process: Process | None = None
        self._waiters: dict[int | str, _Waiter] = {}
        self._next_id = 0
        self._send_lock = anyio.Lock()
        self._closed = False
        self.exited = anyio.Event()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServerGone(f"{self.name} was not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Started, and neither exited nor done with its output."""
        return self._process is not None and self._process.returncode is None and not self._closed

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the process, read its replies in ``task_group``, and complete the MCP handshake.

        The caller sets the timeout.

        Error handling:
            Raises :class:`ServerGone` if the process exits before answering ``initialize``.
        """
        self._process = await anyio.open_process(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=self._env,
            start_new_session=True,  # a Ctrl-C at the terminal reaches the runner, not its servers
        )
        task_group.start_soon(self._read_replies)
        await self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "actorstate-chaos", "version": "1"},
            },
        )
        await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        drop_after: float | None = None,
        caller: str | None = None,
    ) -> Reply | None:
        """Call ``tool``; the caller sets the timeout (a cancelled call simply stops waiting).

        ``caller`` is ignored: over stdio the one client owns the process
        (the ``clientId`` argument labels its sessions).

        ``drop_after``: stop waiting after that many seconds, as a client
        that drops the request: the server is told (``notifications/cancelled``)
        and None is returned; whether the call took effect is unknown.

        Error handling:
            Raises :class:`ServerGone` when the process ends before answering.
        """
        params = {"name": tool, "arguments": arguments}
        if drop_after is None:
            message = await self.request("tools/call", params)
        else:
            answered = None
            with anyio.move_on_after(drop_after):
                answered = await self.request("tools/call", params, on_give_up=self._cancel)
            if answered is None:
                return None
            message = answered
        error = message.get("error")
        if error is not None:
            text = error.get("message") if isinstance(error, dict) else None
            return Reply(error=str(text or error), rpc_error=True)
        result = message.get("result")
        if not isinstance(result, dict):
            return Reply(error=f"a reply without a result: {str(message)[:200]}", rpc_error=True)
        if result.get("isError"):
            content = result.get("content") or [{}]
            text = content[0].get("text") if isinstance(content[0], dict) else None
            return Reply(error=str(text or "isError without a text"))
        structured = result.get("structuredContent")
        return Reply(structured=structured if isinstance(structured, dict) else {})

    async def request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        on_give_up: Callable[[int], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Send one request and wait for the message that answers it.

        ``on_give_up(id)`` runs (shielded) if the wait is cancelled after the request was sent.
        """
        self._next_id += 1
        request_id = self._next_id
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        return await self._exchange(_encode(message), request_id, on_give_up)

    async def request_line(self, line: bytes, request_id: str) -> dict[str, Any]:
        """Send a raw ``line`` (which must carry ``request_id``) and wait for the message answering it."""
        return await self._exchange(line, request_id, None)

    async def send_line(self, line: bytes) -> None:
        """Send a raw ``line``, expecting no answer that could be matched to it."""
        await self._send_bytes(line)

    async def _exchange(
        self, line: bytes, request_id: int | str, on_give_up: Callable[[Any], Awaitable[None]] | None
    ) -> dict[str, Any]:
        waiter = _Waiter()
        self._waiters[request_id] = waiter
        sent = False
        try:
            await self._send_bytes(line)
            sent = True
            await waiter.done.wait()
        except anyio.get_cancelled_exc_class():
            if sent and on_give_up is not None and waiter.message is None:
                with anyio.CancelScope(shield=True):
                    await on_give_up(request_id)
            raise
        finally:
            self._waiters.pop(request_id, None)
        if waiter.message is None:
            raise ServerGone(f"{self.name} exited before answering (connection closed)")
        return waiter.message

    async def _cancel(self, request_id: int) -> None:
        message = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
        with contextlib.suppress(ServerGone):
            await self._send(message)

    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_bytes(_encode(message))

    async def _send_bytes(self, line: bytes) -> None:
        if self._closed or self._process is None or self._process.stdin is None:
            raise ServerGone(f"{self.name} is not running")
        try:
            async with self._send_lock:
                await self._process.stdin.send(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
            raise ServerGone(f"{self.name} stopped reading: {error!r}") from None

    async def _read_replies(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        buffer = b""
        try:
            async for chunk in self._process.stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._dispatch(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            # The end of stdout: whoever still waits gets no reply.
            self._closed = True
            for waiter in self._waiters.values():
                waiter.done.set()
            with anyio.CancelScope(shield=True):
                await self._process.wait()
            self.exited.set()

    def _dispatch(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        request_id = message.get("id")
        waiter = self._waiters.get(request_id) if isinstance(request_id, int | str) else None
        if waiter is not None:
            waiter.message = message
            waiter.done.set()

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the process (nothing if it has exited)."""
        if self._process is not None and self._process.returncode is None:
            try:
                os.kill(self._process.pid, signum)
            except ProcessLookupError:
                pass

    async def close_input(self) -> None:
        """End the server's input: it answers what it read, commits and exits."""
        if self._process is not None and self._process.stdin is not None:
            async with self._send_lock:
                await self._process.stdin.aclose()

    async def wait(self) -> int:
        """Wait until the process has exited and its output is read; its exit status."""
        await self.exited.wait()
        assert self._process is not None
        assert self._process.returncode is not None
        return self._process.returncode
