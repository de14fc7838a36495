"""The MCP tools in-process: the ids they answer with, and the limits their schemas state."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from mcp import Client

import actorstate
from actorstate import Config
from actorstate.transport.server import build_server
from actorstate.transport.tools import ToolContext, call_tool

pytestmark = pytest.mark.anyio


def _spellings(session_id: str) -> list[str]:
    """Other ways to write the same UUID that the tools accept."""
    return [session_id.upper(), "{" + session_id + "}", uuid.UUID(session_id).hex, f"urn:uuid:{session_id}"]


@pytest.mark.parametrize("spelling", range(4), ids=["upper", "braces", "hex", "urn"])
async def test_every_tool_answers_with_the_canonical_session_id(spelling: int) -> None:
    """However the caller spells the id, every reply names the session by the id create_session gave."""
    async with actorstate.open_state() as state:
        context = ToolContext(state)
        created = await call_tool(context, "create_session", {"clientId": "alice"})
        canonical = created.structured["sessionId"]
        typed = _spellings(canonical)[spelling]
        assert typed != canonical
        calls: list[tuple[str, dict[str, Any]]] = [
            ("add_context", {"key": "topic", "value": "billing"}),
            ("record_action", {"action": "search"}),
            ("set_preference", {"key": "lang", "value": "fr"}),
            ("increment_counter", {}),
            ("get_context", {}),
            ("end_session", {}),
        ]
        for name, arguments in calls:
            result = await call_tool(context, name, {"sessionId": typed, **arguments})
            assert result.structured["sessionId"] == canonical, name
            assert typed not in result.text, name


async def _listed_tools(state: actorstate.State) -> dict[str, Any]:
    async with Client(build_server(state)) as client:
        return {tool.name: tool for tool in (await client.list_tools()).tools}


async def _session_resource_description(state: actorstate.State) -> str | None:
    async with Client(build_server(state)) as client:
        (template,) = (await client.list_resource_templates()).resource_templates
        return template.description


async def test_tool_schemas_state_the_limits_of_the_config() -> None:
    """maxTurns' bounds and default, list_sessions' page size and the events a session resource shows
    are the served state's Config values."""
    config = Config(max_turns_limit=20, default_max_turns=5, list_page_size=7, max_list_page_size=30)
    async with actorstate.open_state(config=config) as state:
        tools = await _listed_tools(state)
        description = await _session_resource_description(state)
    assert description == "One session as JSON: metadata and its last 20 events"
    max_turns = tools["get_context"].input_schema["properties"]["maxTurns"]
    assert (max_turns["minimum"], max_turns["maximum"], max_turns["default"]) == (1, 20, 5)
    limit = tools["list_sessions"].input_schema["properties"]["limit"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 30, 7)


async def test_default_config_schemas_and_what_the_tools_do_agree() -> None:
    """With the default Config, an omitted maxTurns returns the schema's default number of events."""
    async with actorstate.open_state() as state:
        tools = await _listed_tools(state)
        default = tools["get_context"].input_schema["properties"]["maxTurns"]["default"]
        assert default == state.config.default_max_turns
        context = ToolContext(state)
        session_id = (await call_tool(context, "create_session", {})).structured["sessionId"]
        for number in range(default + 3):
            await call_tool(context, "record_action", {"sessionId": session_id, "action": f"a{number}"})
        events = (await call_tool(context, "get_context", {"sessionId": session_id})).structured
        assert len(events["recentEvents"]) == default
