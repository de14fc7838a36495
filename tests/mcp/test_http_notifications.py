"""Over Streamable HTTP with authentication, notifications respect identity: a principal hears
of its own sessions only, lists and subscribes to its own only (the official client, legacy
protocol sessions, against the server actorstate serve --http runs)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

import actorstate

from ..transport.test_http import TOKENS, http_server, mcp_http_client
from .test_client_log import Heard
from .test_session_resources import Updates

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        "ignore:The logging capability is deprecated:mcp.shared.exceptions.MCPDeprecationWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:resources/(un)?subscribe is removed:mcp.shared.exceptions.MCPDeprecationWarning"
    ),
    # As in tests/transport/test_http.py: the SDK's HTTP client leaves its SSE readers unfinished
    # when it closes under trio (client side only).
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
        "pytest.PytestUnraisableExceptionWarning"
    ),
]


@contextlib.asynccontextmanager
async def _legacy_client(url: str, token: str, **callbacks: Any) -> AsyncIterator[Client]:
    async with mcp_http_client({"Authorization": f"Bearer {token}"}) as http:
        async with Client(
            streamable_http_client(url, http_client=http), mode="legacy", **callbacks
        ) as client:
            yield client


async def test_each_principal_hears_lists_and_watches_only_its_own_sessions() -> None:
    """Alice and bob each hear only their own sessions' events, list only their own as resources,
    and bob cannot subscribe to alice's session (answered as an unknown one)."""
    alice_heard, bob_heard, alice_updates = Heard(), Heard(), Updates()
    async with (
        actorstate.open_state() as state,
        http_server(state, verifier=TOKENS) as url,
        _legacy_client(
            url, "alice_token", logging_callback=alice_heard, message_handler=alice_updates
        ) as alice,
        _legacy_client(url, "bob_token", logging_callback=bob_heard) as bob,
    ):
        await alice.set_logging_level("debug")
        await bob.set_logging_level("debug")
        alices = (await alice.call_tool("create_session", {})).structured_content["sessionId"]  # type: ignore[index]
        bobs = (await bob.call_tool("create_session", {})).structured_content["sessionId"]  # type: ignore[index]
        await alice_heard.wait_for(lambda message: message.data.get("sessionId") == alices)
        # One sender, in order: had alice's event gone to bob, it would have come before his own.
        await bob_heard.wait_for(lambda message: message.data.get("sessionId") == bobs)
        assert alices not in {session_id for _, session_id in bob_heard.events()}
        assert bobs not in {session_id for _, session_id in alice_heard.events()}

        alice_listed = [str(r.uri) for r in (await alice.list_resources(cache_mode="bypass")).resources]
        bob_listed = [str(r.uri) for r in (await bob.list_resources(cache_mode="bypass")).resources]
        assert alice_listed[1:] == [f"session://{alices}"]
        assert bob_listed[1:] == [f"session://{bobs}"]

        with pytest.raises(MCPError, match="Session not found or expired"):
            await bob.subscribe_resource(f"session://{alices}")
        await alice.subscribe_resource(f"session://{alices}")
        await alice.call_tool("increment_counter", {"sessionId": alices})
        await alice_updates.wait_for(f"session://{alices}")
