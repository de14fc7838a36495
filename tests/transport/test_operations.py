"""The operations endpoints of the HTTP server, over real HTTP in the test's event loop (trio and
asyncio): /healthz and /readyz answer without a token and outside the registry's limits, /readyz
answers 503 when the store does not answer and while the server drains (requests still taken),
and a server nobody probed stops at once."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import pytest

import actorstate
from actorstate.store.memory import MemoryStore
from actorstate.transport.http import HttpSettings, serve_http
from actorstate.transport.operations import OperationsSettings
from actorstate.transport.registry import RegistryLimits
from tests.transport.test_http import TOKENS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from actorstate import State

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
    "pytest.PytestUnraisableExceptionWarning"
)
# Generous: only a timeout for polling, never a measurement.
DEADLINE = 30.0


@contextlib.asynccontextmanager
async def serving(state: State, **settings: Any) -> AsyncIterator[tuple[str, anyio.Event, anyio.Event]]:
    """Serve ``state`` on a free loopback port: the server's base URL, the event that asks it to
    stop, and the event set once serve_http has returned. No drain unless ``operations`` says
    so; leaving the block stops the server and waits for it."""
    listening, stop, returned = anyio.Event(), anyio.Event(), anyio.Event()
    urls: list[str] = []
    settings.setdefault("operations", OperationsSettings(drain_period=0))

    def on_listening(url: str) -> None:
        urls.append(url.removesuffix("/mcp"))
        listening.set()

    async def run() -> None:
        await serve_http(state, HttpSettings(port=0, **settings), on_listening=on_listening, stop=stop)
        returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await listening.wait()
        yield urls[0], stop, returned
        stop.set()


async def get(base: str, path: str, token: str | None = None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient() as http:
        return await http.get(base + path, headers=headers)


async def mcp_status(base: str, token: str) -> int:
    """The HTTP status of one sessionless tools/list on /mcp with ``token``."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/list",
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
    async with httpx2.AsyncClient() as http:
        return (await http.post(base + "/mcp", json=body, headers=headers)).status_code


async def status_becomes(base: str, path: str, status: int) -> httpx2.Response:
    """Poll ``path`` until it answers ``status`` (a timeout, not a measurement)."""
    with anyio.fail_after(DEADLINE):
        while True:
            response = await get(base, path)
            if response.status_code == status:
                return response
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_healthz_and_readyz_answer_without_a_token(tmp_path: Path) -> None:
    """On a server that wants tokens, /healthz answers 200 "ok" and /readyz 200 "ready" (its
    SQLite store answered) without one, while /mcp without a token is 401."""
    async with actorstate.open_state(tmp_path / "state.db") as state:
        async with serving(state, verifier=TOKENS) as (base, _, _):
            health = await get(base, "/healthz")
            ready = await get(base, "/readyz")
            assert (health.status_code, health.text) == (200, "ok\n")
            assert (ready.status_code, ready.text) == (200, "ready\n")
            async with httpx2.AsyncClient() as http:
                refused = await http.post(base + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert refused.status_code == 401


@pytest.mark.anyio
async def test_probes_are_outside_the_registry_limits() -> None:
    """A principal at its limit of one request per second is refused (429) on /mcp, yet
    /healthz and /readyz keep answering 200 for anyone: probes are not counted by the registry."""
    limits = RegistryLimits(rate=0.001, burst=1)
    async with (
        actorstate.open_state() as state,
        serving(state, verifier=TOKENS, limits=limits) as (base, _, _),
    ):
        assert await mcp_status(base, "alice_token") == 200  # the burst's one request
        assert await mcp_status(base, "alice_token") == 429
        for _ in range(20):
            assert (await get(base, "/readyz", "alice_token")).status_code == 200
            assert (await get(base, "/healthz")).status_code == 200
        assert await mcp_status(base, "alice_token") == 429


@pytest.mark.anyio
async def test_readyz_is_503_when_the_store_is_gone() -> None:
    """With the store closed under the running server, /readyz answers 503 naming the store's
    refusal, and /healthz still 200 (the process serves)."""
    store = MemoryStore("the test store")
    async with actorstate.open_state(store) as state, serving(state) as (base, _, _):
        assert (await get(base, "/readyz")).status_code == 200
        await store.close()
        ready = await get(base, "/readyz")
        assert ready.status_code == 503
        assert "not ready: the store did not answer: the test store is closed" in ready.text
        assert (await get(base, "/healthz")).status_code == 200


class StallingConnection(sqlite3.Connection):
    """Holds the database thread in the size query while ``stall`` is set, as a hung disk would."""

    stall = threading.Event()
    release = threading.Event()

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql == "PRAGMA page_count" and self.stall.is_set():
            self.release.wait(DEADLINE)
        return super().execute(sql, *args, **kwargs)


@pytest.mark.anyio
async def test_readyz_is_503_when_the_store_does_not_answer_in_time(tmp_path: Path) -> None:
    """With the SQLite worker stuck in a query, /readyz answers 503 after the probe timeout,
    and two probes at once share one query (one job on the worker); once the database answers
    again, /readyz is 200."""

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return sqlite3.connect(*args, factory=StallingConnection, **kwargs)

    StallingConnection.stall.clear()
    StallingConnection.release.clear()
    settings = OperationsSettings(probe_timeout=0.2)
    try:
        async with actorstate.open_state(tmp_path / "state.db", connect=connect) as state:
            async with serving(state, operations=settings) as (base, _, _):
                StallingConnection.stall.set()
                answers: list[httpx2.Response] = []

                async def probe() -> None:
                    answers.append(await get(base, "/readyz"))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(probe)
                    tg.start_soon(probe)
                assert [answer.status_code for answer in answers] == [503, 503]
                assert all("did not answer within 0.2 s" in answer.text for answer in answers)
                StallingConnection.stall.clear()
                StallingConnection.release.set()
                await status_becomes(base, "/readyz", 200)
    finally:
        StallingConnection.release.set()


@pytest.mark.anyio
async def test_a_drain_ends_and_intake_stops() -> None:
    """After a short drain the server stops by itself: serve_http returns and the port refuses
    connections."""
    settings = OperationsSettings(drain_period=0.05)
    async with (
        actorstate.open_state() as state,
        serving(state, operations=settings) as (base, stop, returned),
    ):
        assert (await get(base, "/readyz")).status_code == 200
        stop.set()
        with anyio.fail_after(DEADLINE):
            await returned.wait()
        with pytest.raises(httpx2.ConnectError):
            await get(base, "/healthz")


@pytest.mark.anyio
async def test_a_server_nobody_probed_stops_without_draining() -> None:
    """Without a /readyz probe there is no load balancer to drain: a stop returns at once even
    with an hour's drain period."""
    settings = OperationsSettings(drain_period=3600)
    async with (
        actorstate.open_state() as state,
        serving(state, operations=settings) as (base, stop, returned),
    ):
        assert (await get(base, "/healthz")).status_code == 200
        stop.set()
        with anyio.fail_after(DEADLINE):
            await returned.wait()
