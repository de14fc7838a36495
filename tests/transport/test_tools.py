"""The MCP tools in-process: the ids they answer with."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import actorstate
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
