"""The tools' titles and annotations: listed to the official client, and true of what the tools do.

Both listing paths are compared byte for byte in ``test_handshake``; here the
SDK's in-process server is read through the official client (at the 2026-07-28
revision and with the older initialize handshake), and ``test_mcp_server``
reads the stdio server's fast path the same way.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

import actorstate
from actorstate.transport.server import build_server
from actorstate.transport.tools import ToolContext, ToolError, build_tools, call_tool

pytestmark = pytest.mark.anyio

# Each tool's title and hints, as a client reads them (see build_tools for the reasons).
WRITE = {"readOnlyHint": False, "openWorldHint": False}
READ_ONLY = {"readOnlyHint": True, "openWorldHint": False}
EXPECTED: dict[str, tuple[str, dict[str, bool]]] = {
    "create_session": ("Create session", {**WRITE, "destructiveHint": False, "idempotentHint": False}),
    "add_context": ("Add context", {**WRITE, "destructiveHint": True, "idempotentHint": False}),
    "record_action": ("Record action", {**WRITE, "destructiveHint": False, "idempotentHint": False}),
    "get_context": ("Get context", READ_ONLY),
    "set_preference": ("Set preference", {**WRITE, "destructiveHint": True, "idempotentHint": True}),
    "increment_counter": ("Increment counter", {**WRITE, "destructiveHint": False, "idempotentHint": False}),
    "end_session": ("End session", {**WRITE, "destructiveHint": True, "idempotentHint": True}),
    "list_sessions": ("List sessions", READ_ONLY),
    "server_stats": ("Server stats", READ_ONLY),
}
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


def listed_metadata(tool: Any) -> tuple[str | None, dict[str, bool]]:
    """A listed tool's title and the hints its annotations give (an SDK ``Tool``), checking
    that ``annotations.title`` is its title too."""
    annotations = tool.annotations
    assert annotations is not None, tool.name
    assert annotations.title == tool.title, tool.name
    dumped = annotations.model_dump(by_alias=True, exclude_none=True)
    return tool.title, {hint: dumped[hint] for hint in HINTS if hint in dumped}


def test_every_tool_has_its_title_and_hints() -> None:
    """The table above is build_tools', tool for tool, in the order they are listed."""
    tools = build_tools(actorstate.Config())
    assert list(tools) == list(EXPECTED)
    for name, tool in tools.items():
        assert (tool.title, tool.annotations.hints()) == EXPECTED[name]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_official_client_sees_titles_and_annotations(mode: str) -> None:
    """The SDK's server lists every tool's title and hints, at 2026-07-28 and after an initialize."""
    async with actorstate.open_state() as state, Client(build_server(state), mode=mode) as client:
        tools = (await client.list_tools()).tools
    assert {tool.name: listed_metadata(tool) for tool in tools} == EXPECTED


# -- the hints are true -----------------------------------------------------------------------


async def _snapshot(context: ToolContext) -> Any:
    """What a caller can see of the store: each session's metadata and events (without times)."""
    listed = await call_tool(context, "list_sessions", {"limit": 1000})
    sessions = {}
    for entry in listed.structured["sessions"]:
        session = (
            await call_tool(context, "get_context", {"sessionId": entry["sessionId"], "maxTurns": 50})
        ).structured
        events = [(event["type"], event["payload"]) for event in session["recentEvents"]]
        sessions[entry["sessionId"]] = (session["metadata"], session["totalEvents"], events)
    return sessions


async def _call(context: ToolContext, name: str, arguments: dict[str, Any]) -> None:
    try:
        await call_tool(context, name, arguments)
    except ToolError:
        pass  # a second end_session: its refusal is its reply; the store is what is compared


async def test_the_hints_are_true_of_the_tools() -> None:
    """Read-only tools change nothing; an idempotent tool called again changes nothing more, a tool
    that is not changes something again; a destructive tool can lose a value, the others cannot."""
    async with actorstate.open_state() as state:
        context = ToolContext(state)
        session_id = (await call_tool(context, "create_session", {})).structured["sessionId"]
        await call_tool(context, "add_context", {"sessionId": session_id, "key": "topic", "value": "billing"})
        await call_tool(context, "increment_counter", {"sessionId": session_id, "key": "hits"})
        session = {"sessionId": session_id}
        calls: dict[str, dict[str, Any]] = {
            "create_session": {},
            "add_context": {**session, "key": "topic", "value": "refunds"},
            "record_action": {**session, "action": "search"},
            "get_context": session,
            "set_preference": {**session, "key": "topic", "value": "tax"},
            "increment_counter": {**session, "key": "hits"},
            "list_sessions": {},
            "server_stats": {},
            "end_session": session,  # last: the others need the session
        }
        assert list(calls) == [name for name in EXPECTED if name != "end_session"] + ["end_session"]
        for name, arguments in calls.items():
            hints = EXPECTED[name][1]
            before = await _snapshot(context)
            await _call(context, name, arguments)
            once = await _snapshot(context)
            await _call(context, name, arguments)
            twice = await _snapshot(context)
            if hints["readOnlyHint"]:
                assert before == once == twice, name
                continue
            assert once != before, name
            assert (twice == once) is hints["idempotentHint"], name
            assert _lost(before, once, name, arguments) is hints["destructiveHint"], name


def _lost(before: Any, after: Any, name: str, arguments: dict[str, Any]) -> bool:
    """Whether a session or a metadata value in ``before`` cannot be told from ``after`` and the call.

    A counter incremented is not lost: its value before is its value after minus ``by``.
    """
    for session_id, (metadata, _, _) in before.items():
        if session_id not in after:
            return True
        now = dict(after[session_id][0])
        if name == "increment_counter" and session_id == arguments["sessionId"]:
            now[arguments["key"]] -= arguments.get("by", 1)
        if any(now.get(key) != value for key, value in metadata.items()):
            return True
    return False
