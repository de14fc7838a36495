"""The article's durable shape on PostgreSQL: every call its own transaction, over Streamable HTTP.

The cluster scenario's baseline. The session tools of ``sdk_server.py`` on
the SDK's ``MCPServer`` and its own Streamable HTTP server (uvicorn on
127.0.0.1), with the sessions kept in PostgreSQL instead of a dict: each
call takes a connection from a small pool (psycopg 3's asyncio
connections), and in one transaction reads the session's row (``FOR
UPDATE`` when it writes), applies the call to it and writes it back, and
answers only after COMMIT. Nothing is kept in memory between calls and
nothing is batched: the design of a stateful MCP server that stores each
change as it happens, which is what makes its every reply durable.

Usage: ``pg_per_call.py --http PORT --db postgresql://...`` (it creates its
table if missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# Connections kept open to the database: calls past this many wait for one.
POOL_SIZE = 16
_SCHEMA = "CREATE TABLE IF NOT EXISTS baseline_sessions (id text PRIMARY KEY, state jsonb NOT NULL)"

server = MCPServer("pg-per-call-baseline")


class Pool:
    """A fixed number of open connections, handed out one call at a time."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size = url, size
        self.idle: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
        self.opening = asyncio.Lock()  # the first calls arrive together: one of them opens the pool

    async def _open(self) -> asyncio.Queue[psycopg.AsyncConnection[Any]]:
        idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        for _ in range(self.size):
            idle.put_nowait(await psycopg.AsyncConnection.connect(self.url, autocommit=True))
        return idle

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection inside one transaction, committed when the block ends without an error."""
        async with self.opening:
            if self.idle is None:  # opened on the first call, inside the server's event loop
                self.idle = await self._open()
        connection = await self.idle.get()
        try:
            async with connection.transaction():
                yield connection
        finally:
            self.idle.put_nowait(connection)


pool = Pool("", POOL_SIZE)


async def _locked(connection: psycopg.AsyncConnection[Any], session_id: str) -> dict[str, Any]:
    cursor = await connection.execute(
        "SELECT state FROM baseline_sessions WHERE id = %s FOR UPDATE", (session_id,)
    )
    row = await cursor.fetchone()
    if row is None:
        raise ToolError("Session not found or expired")
    state: dict[str, Any] = row[0]
    return state


async def _store(connection: psycopg.AsyncConnection[Any], session_id: str, state: dict[str, Any]) -> None:
    await connection.execute(
        "UPDATE baseline_sessions SET state = %s WHERE id = %s", (Jsonb(state), session_id)
    )


def _event(state: dict[str, Any], event: dict[str, Any]) -> None:
    state["events"] = [*state["events"][-99:], event]
    state["total"] += 1


@server.tool()
async def create_session(clientId: str = "anonymous") -> dict[str, str]:
    session_id = str(uuid.uuid4())
    state = {"client": clientId, "metadata": {}, "events": [], "total": 0}
    async with pool.transaction() as connection:
        await connection.execute(
            "INSERT INTO baseline_sessions (id, state) VALUES (%s, %s)", (session_id, Jsonb(state))
        )
    return {"sessionId": session_id, "message": "Session created."}


@server.tool()
async def add_context(sessionId: str, key: str, value: str) -> str:
    async with pool.transaction() as connection:
        state = await _locked(connection, sessionId)
        state["metadata"][key] = value
        _event(state, {"type": "context", "payload": {"key": key}, "time": time.time()})
        await _store(connection, sessionId, state)
    return f"Context added. Session has {state['total']} events."


@server.tool()
async def record_action(sessionId: str, action: str, details: str = "") -> str:
    async with pool.transaction() as connection:
        state = await _locked(connection, sessionId)
        _event(
            state, {"type": "action", "payload": {"action": action, "details": details}, "time": time.time()}
        )
        await _store(connection, sessionId, state)
    return f"Action recorded. Total events in session: {state['total']}"


@server.tool()
async def get_context(sessionId: str, maxTurns: int = 10) -> dict[str, Any]:
    async with pool.transaction() as connection:
        cursor = await connection.execute("SELECT state FROM baseline_sessions WHERE id = %s", (sessionId,))
        row = await cursor.fetchone()
    if row is None:
        raise ToolError("Session not found or expired")
    state = row[0]
    return {
        "sessionId": sessionId,
        "totalEvents": state["total"],
        "metadata": state["metadata"],
        "recentEvents": state["events"][-maxTurns:],
    }


@server.tool()
async def set_preference(sessionId: str, key: str, value: str) -> str:
    async with pool.transaction() as connection:
        state = await _locked(connection, sessionId)
        state["metadata"][key] = value
        await _store(connection, sessionId, state)
    return f"Preference set. Current metadata: {state['metadata']}"


@server.tool()
async def increment_counter(sessionId: str, key: str = "counter", by: int = 1) -> dict[str, Any]:
    async with pool.transaction() as connection:
        state = await _locked(connection, sessionId)
        value = state["metadata"].get(key, 0) + by
        state["metadata"][key] = value
        await _store(connection, sessionId, state)
    return {"sessionId": sessionId, "key": key, "value": value}


@server.tool()
async def end_session(sessionId: str) -> str:
    async with pool.transaction() as connection:
        await connection.execute("DELETE FROM baseline_sessions WHERE id = %s", (sessionId,))
    return "Session ended and cleaned up."


def main(argv: list[str]) -> None:
    if len(argv) != 4 or argv[0] != "--http" or argv[2] != "--db":
        raise SystemExit("usage: pg_per_call.py --http PORT --db postgresql://...")
    port, url = int(argv[1]), argv[3]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(_SCHEMA)
    pool.url = url
    # The SDK's own server (server.run("streamable-http")), but keeping idle connections for
    # longer than uvicorn's 5 s: the clients' connections wait idle while a hundred sessions are
    # created one after the other, which takes longer than that when every commit waits for the disk.
    app = server.streamable_http_app(host="127.0.0.1")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=600)


if __name__ == "__main__":
    main(sys.argv[1:])
