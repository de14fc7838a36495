"""Sessions as resources: the caller's sessions listed page by page as session:// resources,
completion of the session://{sessionId} template, and updates for subscribed sessions, read
through the official client."""

from __future__ import annotations

import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import mcp.types as types
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

import actorstate
from actorstate import Config
from actorstate.mcp import build_server
from actorstate.transport import notifications as notifications_module
from actorstate.transport.caller import OWNER, Caller
from actorstate.transport.notifications import ClientNotifications

if TYPE_CHECKING:
    from pathlib import Path

# The official client warns that the 2026-07-28 revision replaced resources/subscribe (with
# subscriptions/listen); these tests are about the handshake revisions' subscriptions.
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        "ignore:resources/(un)?subscribe is removed:mcp.shared.exceptions.MCPDeprecationWarning"
    ),
]

TEMPLATE = types.ResourceTemplateReference(uri="session://{sessionId}")


async def _create(client: Any, **arguments: Any) -> str:
    created = await client.call_tool("create_session", arguments)
    session_id: str = created.structured_content["sessionId"]
    return session_id


class Updates:
    """The resources/updated notifications a client got, and a wait for one."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._arrived = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self._arrived.set()
            self._arrived = anyio.Event()

    async def wait_for(self, uri: str) -> None:
        with anyio.fail_after(10):  # a timeout only
            while uri not in self.uris:
                await self._arrived.wait()


async def test_the_callers_sessions_are_listed_page_by_page() -> None:
    """After the stats resource, every session of the caller, oldest first, pages joined by the
    cursor; each readable as JSON; another client's sessions are not listed."""
    async with (
        actorstate.open_state(config=Config(list_page_size=2)) as state,
        Client(build_server(state)) as client,
    ):
        mine = [await _create(client) for _ in range(5)]
        await _create(client, clientId="someone-else")
        uris: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await client.list_resources(cursor=cursor, cache_mode="bypass")
            uris += [str(resource.uri) for resource in page.resources]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert uris == ["actorstate://stats"] + [f"session://{session_id}" for session_id in mine]
        assert pages == 3
        read = await client.read_resource(f"session://{mine[0]}")
        assert json.loads(read.contents[0].text)["sessionId"] == mine[0]  # type: ignore[union-attr]
        with pytest.raises(MCPError, match="cursor"):
            await client.list_resources(cursor="not-a-cursor", cache_mode="bypass")


async def test_the_template_completes_over_the_callers_sessions() -> None:
    """A sessionId being typed completes to the caller's sessions starting with it, and only those."""
    async with actorstate.open_state() as state, Client(build_server(state), mode="legacy") as client:
        assert client.server_capabilities.completions is not None
        mine = [await _create(client) for _ in range(30)]
        await _create(client, clientId="someone-else")
        everything = await client.complete(TEMPLATE, {"name": "sessionId", "value": ""})
        assert everything.completion.values == mine
        assert everything.completion.has_more is False
        prefix = mine[7][:2]
        some = await client.complete(TEMPLATE, {"name": "sessionId", "value": prefix.upper()})
        assert some.completion.values == [session_id for session_id in mine if session_id.startswith(prefix)]
        other = await client.complete(TEMPLATE, {"name": "other", "value": ""})
        assert other.completion.values == []


async def test_a_subscribed_session_is_told_when_it_changes() -> None:
    """Subscribed: each change to that session brings resources/updated for its URI; another
    session's changes do not; after unsubscribing, nothing more; an unknown session is refused."""
    updates = Updates()
    async with (
        actorstate.open_state() as state,
        Client(build_server(state), mode="legacy", message_handler=updates) as client,
    ):
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe is True
        watched, other = await _create(client), await _create(client)
        await client.subscribe_resource(f"session://{watched}")
        await client.call_tool("increment_counter", {"sessionId": other})
        await client.call_tool("get_context", {"sessionId": watched})  # a read changes nothing
        await client.call_tool("increment_counter", {"sessionId": watched})
        await updates.wait_for(f"session://{watched}")
        assert updates.uris == [f"session://{watched}"]

        await client.subscribe_resource(f"session://{other}")
        await client.unsubscribe_resource(f"session://{watched}")
        await client.call_tool("increment_counter", {"sessionId": watched})
        await client.call_tool("end_session", {"sessionId": other})
        await updates.wait_for(f"session://{other}")
        assert updates.uris == [f"session://{watched}", f"session://{other}"]

        with pytest.raises(MCPError, match="Session not found or expired"):
            await client.subscribe_resource(f"session://{uuid.uuid4()}")


async def test_the_stdio_server_tells_of_changes_made_on_its_fast_path(tmp_path: Path) -> None:
    """`actorstate serve` over stdio: a tools/call answered by the fast path still tells subscribers."""
    updates = Updates()
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "actorstate", "serve", "--db", str(tmp_path / "watched.db")]
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, message_handler=updates) as session,
    ):
        initialized = await session.initialize()
        assert initialized.capabilities.resources is not None
        assert initialized.capabilities.resources.subscribe is True
        session_id = await _create(session)
        await session.subscribe_resource(f"session://{session_id}")
        await session.call_tool("add_context", {"sessionId": session_id, "key": "topic", "value": "billing"})
        await updates.wait_for(f"session://{session_id}")


async def test_connections_and_subscriptions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_SUBSCRIPTIONS a connection's next subscription is refused, saying what to do; past
    MAX_CONNECTIONS the connection that asked first is forgotten and hears nothing more."""
    monkeypatch.setattr(notifications_module, "MAX_SUBSCRIPTIONS", 2)
    monkeypatch.setattr(notifications_module, "MAX_CONNECTIONS", 2)
    notifications = ClientNotifications()
    first, second, third = _Recorder(), _Recorder(), _Recorder()
    async with actorstate.open_state() as state, notifications.running(state):
        ids = [str(uuid.uuid4()) for _ in range(3)]
        notifications.subscribe("first", first, OWNER, ids[0])  # type: ignore[arg-type]
        notifications.subscribe("first", first, OWNER, ids[1])  # type: ignore[arg-type]
        with pytest.raises(actorstate.InvalidInput, match="at most 2 sessions; unsubscribe from one first"):
            notifications.subscribe("first", first, OWNER, ids[2])  # type: ignore[arg-type]
        notifications.subscribe("second", second, OWNER, ids[0])  # type: ignore[arg-type]
        notifications.subscribe("third", third, OWNER, ids[0])  # type: ignore[arg-type]
        notifications.session_changed(ids[0])
        with anyio.fail_after(10):  # a timeout only
            while not third.sent:
                await anyio.lowlevel.checkpoint()
    assert (first.sent, second.sent, third.sent) == ([], [f"session://{ids[0]}"], [f"session://{ids[0]}"])


async def test_a_connection_key_reused_by_another_principal_inherits_no_subscription() -> None:
    """When a connection's key comes back with another principal (the old connection gone, its key
    reused), that principal hears nothing of the sessions the first one subscribed to."""
    notifications = ClientNotifications()
    alice_connection, bob_connection = _Recorder(), _Recorder()
    alice, bob = Caller(principal="alice"), Caller(principal="bob")
    async with actorstate.open_state() as state, notifications.running(state):
        alices, bobs = str(uuid.uuid4()), str(uuid.uuid4())
        notifications.subscribe("key", alice_connection, alice, alices)  # type: ignore[arg-type]
        notifications.subscribe("key", bob_connection, bob, bobs)  # type: ignore[arg-type]
        notifications.session_changed(alices)
        notifications.session_changed(bobs)
        with anyio.fail_after(10):  # a timeout only
            while not bob_connection.sent:
                await anyio.lowlevel.checkpoint()
    assert (alice_connection.sent, bob_connection.sent) == ([], [f"session://{bobs}"])


class _Recorder:
    """A connection's side of sending: the URIs of the updates sent to it."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_notification(self, notification: Any) -> None:
        self.sent.append(str(notification.params.uri))
