"""The ready-made tools on a server of one's own (add_session_tools, session_tools): listed and
answering exactly as on the ready-made server, read through the official client."""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

import actorstate
from actorstate import Config, InvalidInput
from actorstate.mcp import (
    SESSION_TOOLS,
    CallerSession,
    StateContext,
    add_session_tools,
    build_server,
    session_tools,
    state_lifespan,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio


def _listed(tool: Any) -> dict[str, Any]:
    return tool.model_dump(by_alias=True, exclude_none=True)


async def test_every_tool_is_listed_as_the_ready_made_server_lists_it() -> None:
    """Names, order, titles, annotations and both schemas: the same as build_server's listing
    (a Config with other limits shows in both)."""
    config = Config(max_turns_limit=70)
    app: MCPServer[Any] = MCPServer("own", lifespan=state_lifespan(config=config))
    add_session_tools(app, config=config)
    async with Client(app) as client:
        own = [_listed(tool) for tool in (await client.list_tools()).tools]
    async with actorstate.open_state(config=config) as state, Client(build_server(state)) as client:
        ready_made = [_listed(tool) for tool in (await client.list_tools()).tools]
    assert [tool["name"] for tool in own] == list(SESSION_TOOLS)
    assert own == ready_made
    assert own[3]["inputSchema"]["properties"]["maxTurns"]["maximum"] == 70


async def test_the_tools_answer_in_the_ready_made_servers_words() -> None:
    """Each call's text, structured result and refusal are the ready-made server's, on the same
    state: no "Error executing tool" before a refusal, and the table's own argument checks."""
    async with actorstate.open_state() as state:
        app: MCPServer[Any] = MCPServer("own", lifespan=lambda server: _yielding(StateContext(state)))
        add_session_tools(app)
        calls: list[tuple[str, dict[str, Any]]] = [
            ("add_context", {"key": "topic", "value": '["looks", "like", "JSON"]'}),
            ("record_action", {"action": "search", "details": "q=refund"}),
            ("set_preference", {"key": "lang", "value": "fr"}),
            ("increment_counter", {"by": 2}),
            ("get_context", {"maxTurns": 1}),
            ("get_context", {"maxTurns": 0}),
            ("increment_counter", {"key": "topic"}),
            ("get_context", {"extra": 1}),
            ("list_sessions", {}),
            ("end_session", {}),
            ("get_context", {}),
        ]
        async with Client(app) as own, Client(build_server(state)) as ready_made:
            session_id = (await own.call_tool("create_session", {})).structured_content["sessionId"]  # type: ignore[index]
            answers = []
            for client in (own, ready_made):
                # The same calls on two sessions, one made by each server.
                if client is ready_made:
                    created = await client.call_tool("create_session", {})
                    session_id = created.structured_content["sessionId"]  # type: ignore[index]
                replies = []
                for name, arguments in calls:
                    if name != "list_sessions":
                        arguments = {"sessionId": session_id, **arguments}
                    result = await client.call_tool(name, arguments)
                    replies.append(
                        [
                            result.is_error,
                            [block.text for block in result.content],  # type: ignore[union-attr]
                            result.structured_content,
                        ]
                    )
                answers.append(_without(replies, session_id))
    assert answers[0] == answers[1]
    # The JSON-looking string stayed a string, and a refusal reads as the table wrote it.
    assert answers[0][4][2]["metadata"]["topic"] == '["looks", "like", "JSON"]'
    assert answers[0][5][:2] == [True, ["maxTurns must be an integer from 1 to 50, not 0"]]


async def test_a_chosen_subset_is_added_next_to_ones_own_tools() -> None:
    """Only the tools named are added, in that order, after the server's own."""
    app: MCPServer[Any] = MCPServer("own", lifespan=state_lifespan())

    @app.tool()
    async def view(sessionId: str, session: CallerSession) -> dict[str, Any]:
        """The session's metadata."""
        return (await session.context())["metadata"]

    add_session_tools(app, ["end_session", "create_session"])
    async with Client(app) as client:
        assert [tool.name for tool in (await client.list_tools()).tools] == [
            "view",
            "end_session",
            "create_session",
        ]


async def test_session_tools_go_to_the_constructor() -> None:
    """session_tools() gives the SDK's tool records for MCPServer(tools=...)."""
    app: MCPServer[Any] = MCPServer("own", lifespan=state_lifespan(), tools=session_tools(["create_session"]))
    async with Client(app) as client:
        created = await client.call_tool("create_session", {"clientId": "alice"})
        assert not created.is_error
        assert created.structured_content is not None
        assert created.structured_content["message"].startswith("Session created.")


def test_unknown_and_taken_names_are_refused() -> None:
    """A name that is no tool is refused naming the tools; a name the server has already, too."""
    with pytest.raises(
        InvalidInput, match=r"no session tool named 'get_cart'; the tools are: create_session, "
    ):
        session_tools(["get_context", "get_cart"])
    app: MCPServer[Any] = MCPServer("own")

    @app.tool()
    def create_session() -> str:
        """One of the server's own."""
        return "mine"

    with pytest.raises(ValueError, match="the server has a tool named 'create_session' already"):
        add_session_tools(app)


@asynccontextmanager
async def _yielding(context: StateContext) -> AsyncIterator[StateContext]:
    yield context


def _without(replies: list[Any], session_id: str) -> list[Any]:
    """``replies`` with the session id and times written alike, so two sessions' replies compare."""
    text = re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+Z?", "<time>", json.dumps(replies).replace(session_id, "<id>"))
    loaded: list[Any] = json.loads(text)
    return loaded
