"""A tiny MCP server over stdio that answers fast and wrong: it loses every fifth increment.

It speaks just enough MCP for the stdio benchmark's client (initialize,
tools/list and the workload's five tools, replies shaped like
actorstate's), keeps its sessions in a dict, and on every fifth
``increment_counter`` of a session replies with the incremented value but
forgets to store it: a lost update the benchmark must catch.

    python tests/benchmarks/miscounting_server.py      (speaks MCP on stdin/stdout)
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

TOOLS = ("create_session", "increment_counter", "record_action", "set_preference", "get_context")
sessions: dict[str, dict[str, Any]] = {}


def reply(text: str, structured: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if structured is not None:
        result["structuredContent"] = structured
    return result


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if name == "create_session":
        session_id = str(uuid.uuid4())
        sessions[session_id] = {"counter": 0, "calls": 0, "events": 0, "preferences": {}}
        return reply("created", {"sessionId": session_id})
    session = sessions[arguments["sessionId"]]
    if name == "increment_counter":
        session["calls"] += 1
        value = session["counter"] + 1
        if session["calls"] % 5:  # the bug: every fifth increment is never stored
            session["counter"] = value
        return reply(f"Counter: {value}", {"value": value})
    if name == "record_action":
        session["events"] += 1
        return reply(f"Recorded. Total events in session: {session['events']}")
    if name == "set_preference":
        session["preferences"][arguments["key"]] = arguments["value"]
        return reply("set")
    metadata = {"counter": session["counter"], **session["preferences"]}
    return reply("context", {"metadata": metadata, "totalEvents": session["events"]})


def main() -> None:
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue  # a notification
        method = message["method"]
        if method == "initialize":
            result: dict[str, Any] = {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "miscounting", "version": "1"},
            }
        elif method == "tools/list":
            result = {"tools": [{"name": name, "inputSchema": {"type": "object"}} for name in TOOLS]}
        else:
            result = call(message["params"]["name"], message["params"]["arguments"])
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
