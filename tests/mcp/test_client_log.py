"""Logging to the client: the logging capability, session events and store trouble arrive as
notifications/message at the level the client set, read by the official client."""

from __future__ import annotations

import logging
import sqlite3
import sys
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import mcp.types as types
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client

import actorstate
from actorstate import Config
from actorstate.mcp import build_server
from actorstate.transport.caller import Caller
from actorstate.transport.notifications import ClientNotifications

from ..runtime.crash_hook import CrashOn

if TYPE_CHECKING:
    from pathlib import Path

# The official client warns that the 2026-07-28 revision deprecates logging/setLevel,
# the request these tests are about.
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        "ignore:The logging capability is deprecated:mcp.shared.exceptions.MCPDeprecationWarning"
    ),
]


class Heard:
    """The notifications a client got, and a wait for the next one that matches."""

    def __init__(self) -> None:
        self.messages: list[types.LoggingMessageNotificationParams] = []
        self._arrived = anyio.Event()

    async def __call__(self, params: types.LoggingMessageNotificationParams) -> None:
        self.messages.append(params)
        self._arrived.set()
        self._arrived = anyio.Event()

    def events(self) -> list[tuple[str, str]]:
        return [
            (message.data["event"], message.data["sessionId"])
            for message in self.messages
            if message.logger == "actorstate.sessions"
        ]

    async def wait_for(self, match: Any) -> types.LoggingMessageNotificationParams:
        with anyio.fail_after(10):  # a timeout only: the notification is usually there at once
            while True:
                for message in self.messages:
                    if match(message):
                        return message
                await self._arrived.wait()


async def test_the_capability_is_declared_and_session_events_arrive_at_the_level_set() -> None:
    """After logging/setLevel debug, a created session is told; at warning it is not, a restart is."""
    heard = Heard()
    clock = actorstate.clock.ManualClock()
    hook = CrashOn(crashes=1)
    async with (
        actorstate.open_state(config=Config(restart_backoff=1), fault_hook=hook, clock=clock) as state,
        Client(build_server(state), mode="legacy", logging_callback=heard) as client,
    ):
        assert client.server_capabilities.logging is not None
        await client.set_logging_level("debug")
        created = await client.call_tool("create_session", {})
        first = created.structured_content["sessionId"]  # type: ignore[index]
        told = await heard.wait_for(lambda message: message.data.get("sessionId") == first)
        assert (told.level, told.logger, told.data) == (
            "debug",
            "actorstate.sessions",
            {"event": "created", "sessionId": first},
        )

        await client.set_logging_level("warning")
        second = (await client.call_tool("create_session", {})).structured_content["sessionId"]  # type: ignore[index]
        hook.session_id = second
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "increment_counter", {"sessionId": second})
            await hook.first_crash.wait()
            await anyio.wait_all_tasks_blocked()  # the restart's wait has begun
            clock.advance(1)
            restarted = await heard.wait_for(lambda message: message.data.get("event") == "restarted")
        assert restarted.level == "warning"
        assert heard.events() == [("created", first), ("restarted", second)]


async def test_store_trouble_reaches_the_client(tmp_path: Path) -> None:
    """A commit that fails (the database at its page limit) is told as an error, with why."""
    heard = Heard()
    made: list[sqlite3.Connection] = []

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        made.append(sqlite3.connect(*args, **kwargs))
        return made[-1]

    async with (
        actorstate.open_state(tmp_path / "full.db", connect=connect) as state,
        Client(build_server(state), mode="legacy", logging_callback=heard) as client,
    ):
        await client.set_logging_level("error")
        session_id = (await client.call_tool("create_session", {})).structured_content["sessionId"]  # type: ignore[index]
        await state.housekeeping()  # the database thread is idle after this
        pages = made[0].execute("PRAGMA page_count").fetchone()[0]
        made[0].execute(f"PRAGMA max_page_count = {pages}")
        failed = await client.call_tool(
            "set_preference", {"sessionId": session_id, "key": "big", "value": "x" * 60_000}
        )
        assert failed.is_error
        told = await heard.wait_for(lambda message: message.logger == "actorstate.snapshots")
    assert told.level == "error"
    assert "database or disk is full" in told.data
    assert heard.events() == []  # created is debug: below the level set


async def test_the_stdio_server_sends_them_too(tmp_path: Path) -> None:
    """`actorstate serve` over stdio: its handshake declares logging, and events follow setLevel."""
    heard = Heard()
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "actorstate", "serve", "--db", str(tmp_path / "log.db")]
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, logging_callback=heard) as session,
    ):
        initialized = await session.initialize()
        assert initialized.capabilities.logging is not None
        await session.set_logging_level("debug")
        created = await session.call_tool("create_session", {})
        session_id = created.structured_content["sessionId"]  # type: ignore[index]
        told = await heard.wait_for(lambda message: message.data.get("sessionId") == session_id)
    assert told.data == {"event": "created", "sessionId": session_id}


class _Recorder:
    """A connection's side of sending: what was sent to it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send_notification(self, notification: Any) -> None:
        self.sent.append(notification.params.data)


async def test_a_principal_hears_only_of_its_own_sessions() -> None:
    """Over HTTP a principal hears of its own sessions' events; store trouble goes to the owner
    and operators only; the owner hears everything."""
    client_log = ClientNotifications()
    listeners = {name: _Recorder() for name in ("alice", "bob", "operator", "owner")}
    callers = {
        "alice": Caller("alice"),
        "bob": Caller("bob"),
        "operator": Caller("ops", operator=True),
        "owner": Caller(),
    }
    async with actorstate.open_state() as state, client_log.running(state):
        for name, recorder in listeners.items():
            client_log.set_level(name, recorder, callers[name], "debug")  # type: ignore[arg-type]
        alices = await state.create_session("alice")
        bobs = await state.create_session("bob")
        logging.getLogger("actorstate.snapshots").error("commit of 1 sessions failed: disk I/O error")
        with anyio.fail_after(10):
            while len(listeners["owner"].sent) < 3:
                await anyio.lowlevel.checkpoint()
    assert listeners["alice"].sent == [{"event": "created", "sessionId": alices.id}]
    assert listeners["bob"].sent == [{"event": "created", "sessionId": bobs.id}]
    assert listeners["operator"].sent == ["commit of 1 sessions failed: disk I/O error"]
    assert len(listeners["owner"].sent) == 3
