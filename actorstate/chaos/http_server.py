"""A real ``actorstate serve --http`` process, and HTTP clients on it for every principal.

The HTTP counterpart of :class:`.server.ServerProcess`, with the same
interface, so the runner drives either. The server listens on a loopback
port of its own choosing (``--http 127.0.0.1:0``) and logs its URL, which is
read from its stderr (everything it logs is copied to the log file). It
takes the tokens of a tokens file the runner made: one per principal, and
an operator's for ``server_stats``.

Every call is one ``tools/call`` (or ``resources/read``) POST, made with
the calling principal's bearer token on that principal's connection pool,
so a principal's concurrent workers are concurrent HTTP clients. Most
principals speak 2026-07-28 (sessionless requests); those named in
``older_protocol`` speak 2025-11-25: their calls go under one protocol
session each (``initialize`` first, then ``Mcp-Session-Id``), opened again
when the server answers that it no longer knows it (after a restart). What
a call can come to, as :class:`.server.Reply` says it:

- a tool result or a JSON-RPC error, as over stdio;
- an HTTP refusal (a limit's ``429`` or ``503``, a ``401``): ``error`` holds
  the status and its text, ``rpc_error`` is set (the outcome is unknown to
  the runner, which does not read limits' messages);
- no reply: :class:`.server.ServerGone` (the connection failed or broke, the
  process is gone) or a timeout, which the caller sets;
- a call *dropped* by its client (``drop_after``): the request is cancelled
  mid-flight, which closes its connection; ``None``.

While calls are dropped, :meth:`tear_requests` also sends requests torn off
mid-send (a head, or a head and part of the body, then the connection
closes), which no call waits for: the server must go on serving.

A graceful stop is SIGTERM (there is no input to end): :meth:`close_input`
sends it, and the server must answer what it has in flight and exit 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.parse
from typing import IO, TYPE_CHECKING, Any

import anyio
import httpx2

from .server import Reply, ServerGone

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping
    from pathlib import Path

    from anyio.abc import Process, TaskGroup

__all__ = ["OLDER_PROTOCOL_VERSION", "OPERATOR", "HttpServerProcess", "http_serve_command"]

PROTOCOL_VERSION = "2026-07-28"
OLDER_PROTOCOL_VERSION = "2025-11-25"
_META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "actorstate-chaos", "version": "1"},
}
# The token name of the principal that reads server_stats (an operator's token).
OPERATOR = "chaos-operator"
_LISTENING = re.compile(rb"serving MCP over HTTP at (http://\S+)")
# While calls are dropped, a torn request this often.
TEAR_EVERY = 0.01
# Connections one principal's pool keeps to one server: past it, calls queue in the pool.
POOL_CONNECTIONS = 256
# Limits far above what the runner sends: a flood must reach the sessions' mailboxes, not
# the HTTP limits (those have tests of their own).
_OPEN_LIMITS = ["--max-connections", "100000", "--max-in-flight-per-client", "100000", "--rate-limit", "1e9"]


def http_serve_command(db: Path | str, durability: str, tokens_file: Path) -> list[str]:
    """The command line of an HTTP server on ``db`` (a file, or a ``postgresql://`` URL) taking
    ``tokens_file``'s tokens: this interpreter."""
    return [
        sys.executable,
        "-m",
        "actorstate",
        "serve",
        "--http",
        "127.0.0.1:0",
        "--tokens-file",
        str(tokens_file),
        "--db",
        str(db),
        "--durability",
        durability,
        # INFO: the line naming the URL is one; the server logs little else at INFO.
        "--log-level",
        "INFO",
        *_OPEN_LIMITS,
    ]


class HttpServerProcess:
    """One HTTP server process: start it with :meth:`start` inside a task group that outlives it.

    ``tokens`` maps each principal's name (a token's name in the tokens
    file) to its token; :data:`OPERATOR` among them reads ``server_stats``.
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        log: IO[bytes],
        env: Mapping[str, str] | None,
        tokens: Mapping[str, str],
        older_protocol: frozenset[str] = frozenset(),
    ) -> None:
        self.name = name
        self._command = command
        self._log = log
        self._env = env
        self._tokens = dict(tokens)
        self._process: Process | None = None
        self._clients: dict[str, httpx2.AsyncClient] = {}
        # Pools of tokens since replaced, closed with the rest at the end.
        self._retired: list[httpx2.AsyncClient] = []
        self._next_id = 0
        self._older_protocol = older_protocol
        # Each older-protocol principal's protocol session on this server, opened on first use.
        self._protocol_sessions: dict[str, str] = {}
        self._opening = {principal: anyio.Lock() for principal in older_protocol}
        self.url: str | None = None
        self._listening = anyio.Event()
        self.exited = anyio.Event()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServerGone(f"{self.name} was not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None and not self.exited.is_set()

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def start(self, task_group: TaskGroup) -> None:
        """Start the process and wait until it logs the URL it listens on; the caller sets the timeout.

        Error handling:
            Raises :class:`.server.ServerGone` if the process exits first.
        """
        self._process = await anyio.open_process(
            self._command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self._env,
            start_new_session=True,  # a Ctrl-C at the terminal reaches the runner, not its servers
        )
        task_group.start_soon(self._read_log)
        await self._listening.wait()
        if self.url is None:
            raise ServerGone(f"{self.name} exited before listening")

    async def _read_log(self) -> None:
        """Copy the server's stderr to its log, noting the URL it listens on; then wait for its exit."""
        assert self._process is not None
        assert self._process.stderr is not None
        seen = b""
        try:
            async for chunk in self._process.stderr:
                self._log.write(chunk)
                if self.url is None:
                    seen += chunk
                    found = _LISTENING.search(seen)
                    if found:
                        self.url = found.group(1).decode()
                        self._listening.set()
            self._log.flush()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            self._listening.set()
            with anyio.CancelScope(shield=True):
                await self._process.wait()
                for client in [*self._clients.values(), *self._retired]:
                    await client.aclose()
            self.exited.set()

    def _client(self, principal: str) -> httpx2.AsyncClient:
        client = self._clients.get(principal)
        if client is None:
            client = self._clients[principal] = httpx2.AsyncClient(
                headers={
                    "Authorization": f"Bearer {self._tokens[principal]}",
                    "Accept": "application/json, text/event-stream",
                },
                limits=httpx2.Limits(max_connections=POOL_CONNECTIONS, max_keepalive_connections=64),
                # The caller sets the call's timeout; the pool's own is only a backstop.
                timeout=httpx2.Timeout(60.0),
            )
        return client

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        drop_after: float | None = None,
        caller: str | None = None,
    ) -> Reply | None:
        """Call ``tool`` as principal ``caller`` (None: the operator); see the module docstring.

        Error handling:
            Raises :class:`.server.ServerGone` when no reply came back.
        """
        message = await self._request(
            "tools/call", {"name": tool, "arguments": arguments}, {"Mcp-Name": tool}, drop_after, caller
        )
        if message is None:
            return None
        if isinstance(message, Reply):
            return message
        error = message.get("error")
        if error is not None:
            return _rpc_error(error)
        result = message.get("result")
        if not isinstance(result, dict):
            return Reply(error=f"a reply without a result: {str(message)[:200]}", rpc_error=True)
        if result.get("isError"):
            content = result.get("content") or [{}]
            text = content[0].get("text") if isinstance(content[0], dict) else None
            return Reply(error=str(text or "isError without a text"))
        structured = result.get("structuredContent")
        return Reply(structured=structured if isinstance(structured, dict) else {})

    async def read_resource(self, uri: str, *, caller: str | None = None) -> Reply:
        """Read the resource ``uri`` as ``caller``: its JSON text as ``structured``, or the error.

        Error handling:
            Raises :class:`.server.ServerGone` when no reply came back.
        """
        message = await self._request("resources/read", {"uri": uri}, {"Mcp-Name": uri}, None, caller)
        assert message is not None  # never dropped
        if isinstance(message, Reply):
            return message
        error = message.get("error")
        if error is not None:
            return _rpc_error(error)
        try:
            text = message["result"]["contents"][0]["text"]
            payload = json.loads(text)
        except (KeyError, IndexError, TypeError, ValueError):
            return Reply(error=f"a resource reply of no known shape: {str(message)[:200]}", rpc_error=True)
        return Reply(structured=payload if isinstance(payload, dict) else {"contents": payload})

    def protocol_session_of(self, principal: str) -> str | None:
        """The protocol session ``principal`` holds on this server now, if it speaks the older protocol."""
        return self._protocol_sessions.get(principal)

    async def list_tools_in(self, session_id: str, *, caller: str) -> Reply:
        """A ``tools/list`` under protocol session ``session_id`` as ``caller``: the number of
        tools as ``structured``, or the refusal (for probes: another principal's session id must
        be answered as an unknown one).

        Error handling:
            Raises :class:`.server.ServerGone` when no reply came back.
        """
        message = await self._post(
            "tools/list",
            {},
            {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": OLDER_PROTOCOL_VERSION},
            None,
            caller,
        )
        assert message is not None  # never dropped
        if isinstance(message, Reply):
            return message
        error = message.get("error")
        if error is not None:
            return _rpc_error(error)
        tools = message.get("result", {}).get("tools") if isinstance(message.get("result"), dict) else None
        return Reply(structured={"tools": len(tools) if isinstance(tools, list) else None})

    async def _request(
        self,
        method: str,
        params: dict[str, Any],
        headers: dict[str, str],
        drop_after: float | None,
        caller: str | None,
    ) -> dict[str, Any] | Reply | None:
        """Send one request as ``caller`` in its protocol: see :meth:`_post`."""
        principal = caller or OPERATOR
        if principal not in self._older_protocol:
            headers = {**headers, "MCP-Protocol-Version": PROTOCOL_VERSION}
            return await self._post(method, {**params, "_meta": _META}, headers, drop_after, principal)
        session_id = await self._protocol_session(principal)
        headers = {**headers, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": OLDER_PROTOCOL_VERSION}
        answer = await self._post(method, params, headers, drop_after, principal)
        if isinstance(answer, Reply) and answer.error is not None and answer.error.startswith("HTTP 404"):
            # The server no longer knows the session (it restarted): the next call opens another.
            if self._protocol_sessions.get(principal) == session_id:
                del self._protocol_sessions[principal]
        return answer

    async def _protocol_session(self, principal: str) -> str:
        """``principal``'s protocol session on this server, opened (initialize) if it has none.

        Error handling:
            Raises :class:`.server.ServerGone` when the server does not open one.
        """
        async with self._opening[principal]:
            session_id = self._protocol_sessions.get(principal)
            if session_id is not None:
                return session_id
            if not self.running or self.url is None:
                raise ServerGone(f"{self.name} is not running")
            initialize = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": OLDER_PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": _META["io.modelcontextprotocol/clientInfo"],
                },
            }
            client = self._client(principal)
            try:
                opened = await client.post(self.url, json=initialize)
                session_id = opened.headers.get("mcp-session-id")
                if opened.status_code != 200 or session_id is None:
                    raise ServerGone(
                        f"{self.name} did not open a protocol session: HTTP {opened.status_code}"
                    )
                initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
                headers = {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": OLDER_PROTOCOL_VERSION}
                await client.post(self.url, json=initialized, headers=headers)
            except httpx2.TransportError as error:
                raise ServerGone(f"{self.name}: {type(error).__name__}: {error}") from None
            self._protocol_sessions[principal] = session_id
            return session_id

    async def _post(
        self,
        method: str,
        params: dict[str, Any],
        headers: dict[str, str],
        drop_after: float | None,
        principal: str,
    ) -> dict[str, Any] | Reply | None:
        """POST one request; the JSON-RPC message answering it, a Reply for an HTTP refusal, or
        None when dropped."""
        if not self.running or self.url is None:
            raise ServerGone(f"{self.name} is not running")
        self._next_id += 1
        request_id = self._next_id
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        client = self._client(principal)
        try:
            with anyio.CancelScope() as dropping:
                if drop_after is not None:
                    dropping.deadline = anyio.current_time() + drop_after
                # Cancelling the request mid-flight closes its connection: the server sees the
                # client go, as when a client process dies or a network drops it.
                response = await client.post(
                    self.url, json=body, headers={"Mcp-Method": method, **_ascii_only(headers)}
                )
            if dropping.cancelled_caught:
                return None
        except httpx2.TransportError as error:
            raise ServerGone(f"{self.name}: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            return Reply(error=f"HTTP {response.status_code}: {response.text[:300]}", rpc_error=True)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            return _answer_in_events(response.text, request_id)
        try:
            message = response.json()
        except ValueError:
            return Reply(error=f"a reply that is not JSON: {response.text[:200]!r}", rpc_error=True)
        if not isinstance(message, dict):
            return Reply(error=f"a reply that is not an object: {str(message)[:200]}", rpc_error=True)
        return message

    async def use_token_once_taken(self, principal: str, token: str) -> str | None:
        """Wait until this server takes ``token`` (after a SIGHUP), then make ``principal``'s calls
        with it; the caller sets the timeout. Returns the protocol session the principal had
        opened with the old token, if any, which is forgotten (the server must close it).

        The old token's connection pool is kept to the end (calls may still be in flight on it).

        Error handling:
            Raises :class:`.server.ServerGone` if the server goes first.
        """
        assert self.url is not None
        probe = {"jsonrpc": "2.0", "id": 0, "method": "tools/list", "params": {"_meta": _META}}
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL_VERSION,
            "Mcp-Method": "tools/list",
        }
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(60.0)) as client:
            while True:
                if not self.running:
                    raise ServerGone(f"{self.name} is not running")
                try:
                    answered = await client.post(self.url, json=probe, headers=headers)
                except httpx2.TransportError as error:
                    raise ServerGone(f"{self.name}: {type(error).__name__}: {error}") from None
                if answered.status_code != 401:
                    break
                await anyio.sleep(0.01)
        self._tokens[principal] = token
        retired = self._clients.pop(principal, None)
        if retired is not None:
            self._retired.append(retired)
        return self._protocol_sessions.pop(principal, None)

    async def tear_requests(self, hold: float, rng: random.Random) -> int:
        """For ``hold`` seconds, send requests cut off mid-send on connections of their own; how many."""
        assert self.url is not None
        address = urllib.parse.urlsplit(self.url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        body = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": _META}}
        ).encode()
        head = (
            f"POST {address.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {self._tokens[OPERATOR]}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {PROTOCOL_VERSION}\r\n"
            f"Mcp-Method: tools/list\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        request = head + body
        torn = 0
        deadline = anyio.current_time() + hold
        while anyio.current_time() < deadline and self.running:
            # Anywhere from the middle of the head to one byte short of the whole request.
            cut = rng.randrange(len(head) // 2, len(request))
            try:
                async with await anyio.connect_tcp(host, port) as connection:
                    await connection.send(request[:cut])
                torn += 1
            except OSError:
                pass  # the server is going or gone: the run's watch deals with that
            await anyio.sleep(TEAR_EVERY)
        return torn

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process (nothing if it has exited)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signum)

    async def close_input(self) -> None:
        """Stop the server gracefully (SIGTERM): it answers what it has in flight, commits and exits."""
        import signal

        self.signal(signal.SIGTERM)

    async def wait(self) -> int:
        """Wait until the process has exited and its log is read; its exit status."""
        await self.exited.wait()
        assert self._process is not None
        assert self._process.returncode is not None
        return self._process.returncode


def _ascii_only(headers: dict[str, str]) -> dict[str, str]:
    # A routing header carries a name or a URI; one that is not ASCII is left out (the body names it).
    return {name: value for name, value in headers.items() if value.isascii()}


def _rpc_error(error: Any) -> Reply:
    """A JSON-RPC error as a Reply: its code and message, so two errors compare whole."""
    if isinstance(error, dict):
        return Reply(error=f"error {error.get('code')}: {error.get('message')}", rpc_error=True)
    return Reply(error=f"error: {error}", rpc_error=True)


def _answer_in_events(text: str, request_id: int) -> dict[str, Any] | Reply:
    """The message answering ``request_id`` in an SSE body (pings and notifications skipped)."""
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            message = json.loads(line[5:])
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
    return Reply(error=f"an event stream without the answer: {text[:200]!r}", rpc_error=True)
