"""The bare SDK baseline of the stdio and HTTP scenarios: the same session tools on a bare SDK server.

``MCPServer`` over the SDK's stdio transport (or, with ``--http PORT``,
its own Streamable HTTP server: ``server.run("streamable-http")``, uvicorn
on 127.0.0.1), sessions in a dict, one ``anyio.Lock`` per session, no
persistence: what a straightforward port of the Node.js server to the
official SDK looks like.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("sdk-baseline")
sessions: dict[str, dict[str, Any]] = {}
locks: dict[str, anyio.Lock] = {}


def _session(session_id: str) -> dict[str, Any]:
    session = sessions.get(session_id)
    if session is None:
        raise ToolError("Session not found or expired")
    return session


@server.tool()
async def create_session(clientId: str = "anonymous") -> dict[str, str]:
    session_id = str(uuid.uuid4())
    sessions[session_id] = {"client": clientId, "metadata": {}, "events": [], "total": 0}
    locks[session_id] = anyio.Lock()
    return {"sessionId": session_id, "message": "Session created."}


@server.tool()
async def add_context(sessionId: str, key: str, value: str) -> str:
    async with locks[sessionId]:
        session = _session(sessionId)
        session["metadata"][key] = value
        session["events"] = [
            *session["events"][-99:],
            {"type": "context", "payload": {"key": key}, "time": time.time()},
        ]
        session["total"] += 1
        return f"Context added. Session has {session['total']} events."


@server.tool()
async def record_action(sessionId: str, action: str, details: str = "") -> str:
    async with locks[sessionId]:
        session = _session(sessionId)
        session["events"] = [
            *session["events"][-99:],
            {"type": "action", "payload": {"action": action, "details": details}, "time": time.time()},
        ]
        session["total"] += 1
        return f"Action recorded. Total events in session: {session['total']}"


@server.tool()
async def get_context(sessionId: str, maxTurns: int = 10) -> dict[str, Any]:
    async with locks[sessionId]:
        session = _session(sessionId)
        return {
            "sessionId": sessionId,
            "totalEvents": session["total"],
            "metadata": dict(session["metadata"]),
            "recentEvents": session["events"][-maxTurns:],
        }


@server.tool()
async def set_preference(sessionId: str, key: str, value: str) -> str:
    async with locks[sessionId]:
        session = _session(sessionId)
        session["metadata"][key] = value
        return f"Preference set. Current metadata: {session['metadata']}"


@server.tool()
async def increment_counter(sessionId: str, key: str = "counter", by: int = 1) -> dict[str, Any]:
    async with locks[sessionId]:
        session = _session(sessionId)
        value = session["metadata"].get(key, 0) + by
        session["metadata"][key] = value
        return {"sessionId": sessionId, "key": key, "value": value}


@server.tool()
async def end_session(sessionId: str) -> str:
    sessions.pop(sessionId, None)
    return "Session ended and cleaned up."


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
