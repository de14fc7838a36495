"""The stdio MCP server end to end, driven by the official MCP Python client."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from actorstate import Config

from .test_tool_metadata import EXPECTED, listed_metadata

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

TOOL_NAMES = {
    "create_session",
    "add_context",
    "record_action",
    "get_context",
    "set_preference",
    "increment_counter",
    "end_session",
    "list_sessions",
    "server_stats",
}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "actorstate", "serve", "--db", str(tmp_path / "mcp.db")]
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def _call(client: ClientSession, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result


async def _error(client: ClientSession, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


async def test_tools_and_schemas_are_listed(client: ClientSession) -> None:
    """Every tool is listed with object schemas in and out; maxTurns is bounded by the default Config."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOL_NAMES
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
    assert tools["get_context"].input_schema["properties"]["maxTurns"]["maximum"] == Config().max_turns_limit
    assert tools["get_context"].input_schema["required"] == ["sessionId"]


async def test_tools_are_listed_with_titles_and_annotations(client: ClientSession) -> None:
    """The stdio server (its fast path answers tools/list) lists every tool's title and hints."""
    tools = (await client.list_tools()).tools
    assert {tool.name: listed_metadata(tool) for tool in tools} == EXPECTED


async def test_every_tool(client: ClientSession) -> None:
    """Each tool's text and structured reply, in the words of the server it replaces."""
    created = await _call(client, "create_session", clientId="alice")
    session_id = created.structured_content["sessionId"]
    assert created.structured_content["message"].startswith("Session created.")

    added = await _call(client, "add_context", sessionId=session_id, key="topic", value="billing")
    assert added.content[0].text == "Context added. Session has 1 events."
    recorded = await _call(client, "record_action", sessionId=session_id, action="search", details="q=refund")
    assert recorded.content[0].text == "Action recorded. Total events in session: 2"
    preference = await _call(client, "set_preference", sessionId=session_id, key="lang", value="fr")
    assert preference.content[0].text == 'Preference set. Current metadata: {"topic":"billing","lang":"fr"}'
    counter = await _call(client, "increment_counter", sessionId=session_id)
    assert counter.content[0].text == "Counter: 1"
    counter = await _call(client, "increment_counter", sessionId=session_id, key="visits", by=5)
    assert counter.structured_content == {"sessionId": session_id, "key": "visits", "value": 5}

    context = (await _call(client, "get_context", sessionId=session_id, maxTurns=1)).structured_content
    assert context["totalEvents"] == 2
    assert context["metadata"] == {"topic": "billing", "lang": "fr", "counter": 1, "visits": 5}
    assert [(e["type"], e["payload"]) for e in context["recentEvents"]] == [
        ("action", {"action": "search", "details": "q=refund"})
    ]

    listed = (await _call(client, "list_sessions", clientId="alice")).structured_content
    assert [s["sessionId"] for s in listed["sessions"]] == [session_id]
    stats = (await _call(client, "server_stats")).structured_content
    assert stats["resident_actors"] >= 1
    assert stats["uptime_seconds"] >= 0
    assert "commit_latency_ms_p50" in stats

    resource = await client.read_resource(f"session://{session_id}")
    assert '"visits": 5' in resource.contents[0].text  # type: ignore[union-attr]
    stats_resource = await client.read_resource("actorstate://stats")
    assert "resident_actors" in stats_resource.contents[0].text  # type: ignore[union-attr]

    ended = await _call(client, "end_session", sessionId=session_id)
    assert ended.content[0].text == "Session ended and cleaned up."
    assert await _error(client, "get_context", sessionId=session_id) == "Session not found or expired"


async def test_invalid_arguments_get_clear_errors(client: ClientSession) -> None:
    """Each kind of bad argument gets an isError result saying what is wrong, and the server keeps serving."""
    session_id = (await _call(client, "create_session")).structured_content["sessionId"]
    assert await _error(client, "get_context") == "missing required argument 'sessionId'"
    assert "session id must be a UUID" in await _error(client, "get_context", sessionId="nope")
    assert "maxTurns must be an integer from 1 to 50" in await _error(
        client, "get_context", sessionId=session_id, maxTurns=0
    )
    assert "unknown argument(s) colour" in await _error(
        client, "increment_counter", sessionId=session_id, colour=1
    )
    assert "must be an integer" in await _error(client, "increment_counter", sessionId=session_id, by="2")
    assert "the limit is 256" in await _error(
        client, "set_preference", sessionId=session_id, key="k" * 300, value=1
    )
    assert "missing required argument 'value'" in await _error(
        client, "add_context", sessionId=session_id, key="k"
    )
    unknown = "00000000-0000-4000-8000-000000000000"
    assert await _error(client, "increment_counter", sessionId=unknown) == "Session not found or expired"
    assert "unknown tool 'nope'" in await _error(client, "nope")
    # The server is still serving.
    assert (await _call(client, "increment_counter", sessionId=session_id)).structured_content["value"] == 1


async def test_counters_exact_with_32_calls_in_flight(client: ClientSession) -> None:
    """320 increments from 32 concurrent callers each get a distinct value, and the counter ends at 320."""
    session_id = (await _call(client, "create_session")).structured_content["sessionId"]
    values: list[int] = []

    async def bump() -> None:
        for _ in range(10):
            values.append(
                (await _call(client, "increment_counter", sessionId=session_id)).structured_content["value"]
            )

    async with anyio.create_task_group() as tg:
        for _ in range(32):
            tg.start_soon(bump)
    assert sorted(values) == list(range(1, 321))
    context = (await _call(client, "get_context", sessionId=session_id)).structured_content
    assert context["metadata"]["counter"] == 320


async def test_list_sessions_shows_only_the_named_client(client: ClientSession) -> None:
    """list_sessions lists exactly the sessions created with that clientId, none of another client's."""
    alice = [
        (await _call(client, "create_session", clientId="alice")).structured_content["sessionId"]
        for _ in range(2)
    ]
    bob = (await _call(client, "create_session", clientId="bob")).structured_content["sessionId"]
    listed = (await _call(client, "list_sessions", clientId="alice")).structured_content["sessions"]
    assert sorted(s["sessionId"] for s in listed) == sorted(alice)
    listed = (await _call(client, "list_sessions", clientId="bob")).structured_content["sessions"]
    assert [s["sessionId"] for s in listed] == [bob]
    assert (await _call(client, "list_sessions", clientId="carol")).structured_content["sessions"] == []
