"""The older protocol's sessions and event streams over real HTTP: a share per principal, closed
when their token is revoked, and event streams closed at once when the server stops."""

from __future__ import annotations

import contextlib
import json
import signal
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import pytest

import actorstate
from actorstate.transport.authentication import TokensFileVerifier, reload_credentials
from actorstate.transport.http import HttpSettings, serve_http
from actorstate.transport.protocol_sessions import ProtocolSessionGuard
from actorstate.transport.tokens import TokensFile, add_token, revoke_token
from tests.transport.test_http import TOKENS, http_server
from tests.transport.test_http_serve import Server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from starlette.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
    "pytest.PytestUnraisableExceptionWarning"
)

_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
# A deadline for what must happen, never a measure of how fast it did.
_GENEROUS = 60.0


def _headers(token: str, session_id: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
        headers["MCP-Protocol-Version"] = "2025-11-25"
    return headers


async def _open_session(http: httpx2.AsyncClient, url: str, token: str) -> httpx2.Response:
    """An initialize of the older protocol, then its initialized notification when it was taken."""
    reply = await http.post(url, json=_INITIALIZE, headers=_headers(token))
    if reply.status_code == 200:
        session_id = reply.headers["mcp-session-id"]
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=done, headers=_headers(token, session_id))).status_code == 202
    return reply


async def _tools_list(http: httpx2.AsyncClient, url: str, token: str, session_id: str) -> int:
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    return (await http.post(url, json=body, headers=_headers(token, session_id))).status_code


@contextlib.asynccontextmanager
async def _event_stream(
    http: httpx2.AsyncClient, url: str, token: str, session_id: str, operator: str
) -> AsyncIterator[anyio.Event]:
    """A GET event stream of ``session_id``, read in the background; the event is set when it ends.

    Yields once the server counts the stream open (``operator``'s server_stats say so): a stream's
    head may reach the client only with its first event, a ping 15 s later.
    """
    headers = {**_headers(token, session_id), "Accept": "text/event-stream"}
    ended = anyio.Event()
    before = (await _stats(http, url, operator))["http_event_streams"]

    async def read() -> None:
        async with http.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            async for _ in response.aiter_bytes():
                pass
        ended.set()

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        with anyio.fail_after(_GENEROUS):
            while True:
                if (await _stats(http, url, operator))["http_event_streams"] > before:
                    break
                await anyio.sleep(0.01)
        yield ended
        group.cancel_scope.cancel()


async def _stats(http: httpx2.AsyncClient, url: str, token: str) -> dict[str, Any]:
    """server_stats through the sessionless protocol, as an operator."""
    body = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {
            "name": "server_stats",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            },
        },
    }
    headers = {
        **_headers(token),
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "server_stats",
    }
    reply = await http.post(url, json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    text = reply.text
    if reply.headers["content-type"].startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and '"id"' in line)
    result: dict[str, Any] = json.loads(text)["result"]["structuredContent"]
    return result


# -- a share per principal ----------------------------------------------------------------


@pytest.mark.anyio
async def test_each_principal_has_its_share_of_protocol_sessions() -> None:
    """With a share of two per principal (ten in all), alice's third initialize is answered 429
    naming the flag and the ways out, while bob still opens his; once alice ends one of hers
    (DELETE) she opens another. The sessionless protocol is never counted."""
    async with (
        actorstate.open_state() as state,
        http_server(
            state, verifier=TOKENS, max_protocol_sessions=10, max_protocol_sessions_per_client=2
        ) as url,
        httpx2.AsyncClient() as http,
    ):
        first = await _open_session(http, url, "alice_token")
        second = await _open_session(http, url, "alice_token")
        third = await _open_session(http, url, "alice_token")
        assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
        message = third.json()["error"]["message"]
        assert "you have 2 protocol sessions open" in message
        assert "--max-protocol-sessions-per-client 2" in message
        assert "2026-07-28" in message
        assert third.headers["retry-after"] == "1"
        assert (await _open_session(http, url, "bob_token")).status_code == 200
        stats = await _stats(http, url, "root_token")
        assert stats["http_protocol_sessions"] == 3
        assert stats["http_protocol_sessions_refused"] == 1

        ended = await http.delete(url, headers=_headers("alice_token", first.headers["mcp-session-id"]))
        assert ended.status_code == 200
        assert (await _open_session(http, url, "alice_token")).status_code == 200


class _MintingApp:
    """Stands for the session manager: an initialize POST mints a session id (once ``gate`` is
    set, when there is one); a request under an id it ended (``ended``) is answered 404, any other
    200."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.gate: anyio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        session_id = headers.get(b"mcp-session-id")
        status, extra = 200, []
        if session_id is None:
            if self.gate is not None:
                await self.gate.wait()
            extra = [(b"mcp-session-id", uuid.uuid4().hex.encode())]
        elif session_id.decode() in self.ended:
            status = 404
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": b""})


async def _asgi(
    app: ProtocolSessionGuard, method: str, session_id: str | None = None
) -> tuple[int, str | None]:
    """One request to ``app``: its status and the session id it minted."""
    headers = [] if session_id is None else [(b"mcp-session-id", session_id.encode())]
    scope = {"type": "http", "method": method, "path": "/mcp", "headers": headers}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    minted = dict(start.get("headers", [])).get(b"mcp-session-id")
    return start["status"], minted.decode() if minted else None


@pytest.mark.anyio
async def test_a_session_the_manager_ended_frees_the_share() -> None:
    """A session idle for the manager's idle timeout, or answered 404, no longer counts toward its
    principal's share; one in use past the timeout still does."""
    now = [0.0]
    inner = _MintingApp()
    guard = ProtocolSessionGuard(
        inner, lambda scope: "alice", max_per_principal=2, idle_timeout=600.0, clock=lambda: now[0]
    )
    _, first = await _asgi(guard, "POST")
    _, second = await _asgi(guard, "POST")
    assert first is not None
    assert second is not None
    assert (await _asgi(guard, "POST"))[0] == 429
    now[0] = 599.0
    await _asgi(guard, "POST", second)  # second is in use: its idle time starts again
    assert (await _asgi(guard, "POST"))[0] == 429
    now[0] = 600.0  # first has idled out; second has not
    assert guard.held_by("alice") == 1
    status, third = await _asgi(guard, "POST")
    assert status == 200
    assert third is not None
    inner.ended.add(second)
    assert (await _asgi(guard, "POST", second))[0] == 404
    assert guard.held_by("alice") == 1


@pytest.mark.anyio
async def test_another_principals_requests_under_a_session_id_change_nothing(tmp_path: Path) -> None:
    """Bob's requests under alice's protocol session id (answered 404 like an unknown id) neither
    end its tracking nor keep it alive: a revocation of alice's token still closes it."""
    path = tmp_path / "tokens.json"
    alice, bob = add_token(path, "alice"), add_token(path, "bob")
    root = add_token(path, "root", operator=True)
    verifier = TokensFileVerifier(TokensFile(path))
    async with (
        actorstate.open_state() as state,
        http_server(state, verifier=verifier) as url,
        httpx2.AsyncClient(timeout=_GENEROUS) as http,
    ):
        alice_session = (await _open_session(http, url, alice)).headers["mcp-session-id"]
        assert await _tools_list(http, url, bob, alice_session) == 404
        assert (await _stats(http, url, root))["http_protocol_sessions"] == 1
        revoke_token(path, "alice")
        assert await reload_credentials(verifier)
        stats = await _stats(http, url, root)
        assert stats["http_protocol_sessions"] == 0
        assert stats["http_closed_on_revocation"] == 1
        alice_again = add_token(path, "alice")
        assert await reload_credentials(verifier)
        assert await _tools_list(http, url, alice_again, alice_session) == 404


@pytest.mark.anyio
async def test_initializes_in_progress_count_toward_the_share() -> None:
    """With a share of one, a second initialize arriving while the first is still being answered
    is refused: concurrent initializes cannot overshoot the share; once the first is answered its
    session counts instead."""
    inner = _MintingApp()
    inner.gate = anyio.Event()
    guard = ProtocolSessionGuard(inner, lambda scope: "alice", max_per_principal=1)
    statuses: list[int] = []

    async def first() -> None:
        statuses.append((await _asgi(guard, "POST"))[0])

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await anyio.wait_all_tasks_blocked()
        assert (await _asgi(guard, "POST"))[0] == 429
        inner.gate.set()
    assert statuses == [200]
    assert guard.held_by("alice") == 1
    inner.gate = None
    assert (await _asgi(guard, "POST"))[0] == 429


# -- revocation ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_revoked_token_loses_its_open_streams_and_protocol_sessions(tmp_path: Path) -> None:
    """After alice's token is revoked and the tokens reloaded, her open GET event stream ends at
    once and her protocol session is gone (its id answers 404 even to a new token of hers); bob's
    stream and session, whose token stands, are untouched."""
    path = tmp_path / "tokens.json"
    alice, bob = add_token(path, "alice"), add_token(path, "bob")
    root = add_token(path, "root", operator=True)
    verifier = TokensFileVerifier(TokensFile(path))
    async with (
        actorstate.open_state() as state,
        http_server(state, verifier=verifier) as url,
        httpx2.AsyncClient(timeout=_GENEROUS) as http,
    ):
        alice_session = (await _open_session(http, url, alice)).headers["mcp-session-id"]
        bob_session = (await _open_session(http, url, bob)).headers["mcp-session-id"]
        async with (
            _event_stream(http, url, alice, alice_session, root) as alice_ended,
            _event_stream(http, url, bob, bob_session, root) as bob_ended,
        ):
            assert (await _stats(http, url, root))["http_event_streams"] == 2
            revoke_token(path, "alice")
            assert await reload_credentials(verifier)
            with anyio.fail_after(_GENEROUS):
                await alice_ended.wait()
            assert not bob_ended.is_set()
            stats = await _stats(http, url, root)
            assert stats["http_event_streams"] == 1
            assert stats["http_protocol_sessions"] == 1
            assert stats["http_closed_on_revocation"] == 2
            assert await _tools_list(http, url, bob, bob_session) == 200
            assert await _tools_list(http, url, alice, alice_session) == 401
            alice_again = add_token(path, "alice")
            assert await reload_credentials(verifier)
            assert await _tools_list(http, url, alice_again, alice_session) == 404


# -- stop -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_stop_closes_open_event_streams_at_once() -> None:
    """With a grace period of an hour, a stop with an idle event stream open still ends the
    server at once: the stream is closed (its response ends cleanly) instead of holding the stop
    up for the whole grace period."""
    async with actorstate.open_state() as state:
        listening, stop, served = anyio.Event(), anyio.Event(), anyio.Event()
        urls: list[str] = []

        def on_listening(url: str) -> None:
            urls.append(url)
            listening.set()

        async def serve() -> None:
            settings = HttpSettings(port=0, verifier=TOKENS, graceful_timeout=3600.0)
            await serve_http(state, settings, on_listening=on_listening, stop=stop)
            served.set()

        async with anyio.create_task_group() as group, httpx2.AsyncClient(timeout=_GENEROUS) as http:
            group.start_soon(serve)
            await listening.wait()
            url = urls[0]
            session_id = (await _open_session(http, url, "alice_token")).headers["mcp-session-id"]
            async with _event_stream(http, url, "alice_token", session_id, "root_token") as ended:
                stop.set()
                with anyio.fail_after(_GENEROUS):
                    await ended.wait()
                    await served.wait()


@pytest.mark.slow
@pytest.mark.anyio
async def test_sighup_after_a_revoke_closes_the_stream_of_a_real_server(tmp_path: Path) -> None:
    """`actorstate serve --http` as run: after `tokens revoke alice` and SIGHUP, alice's open
    event stream ends, and the server logs that it closed what her token held."""
    path = tmp_path / "tokens.json"
    alice, root = add_token(path, "alice"), add_token(path, "root", operator=True)
    server = Server(tmp_path, "--tokens-file", str(path), "--durability", "memory")
    try:
        async with httpx2.AsyncClient(timeout=_GENEROUS) as http:
            session_id = (await _open_session(http, server.url, alice)).headers["mcp-session-id"]
            async with _event_stream(http, server.url, alice, session_id, root) as ended:
                revoke_token(path, "alice")
                server.signal(signal.SIGHUP, "protocol sessions of revoked tokens")
                with anyio.fail_after(_GENEROUS):
                    await ended.wait()
            assert (await _stats(http, server.url, root))["http_protocol_sessions"] == 0
    finally:
        assert server.stop() == 0
    assert "closed 2 event streams and protocol sessions of revoked tokens" in server.stderr.decode()


@pytest.mark.anyio
async def test_revoked_protocol_sessions_end_side_by_side() -> None:
    """A principal's revoked protocol sessions are ended at once, not one after another (each
    ending may take up to 10 s): here neither DELETE can finish until both have begun, so one
    after another the first is cut off at its 10 s and only the second finishes."""
    from actorstate.transport.protocol_sessions import _Session

    begun: dict[str, anyio.Event] = {"one": anyio.Event(), "two": anyio.Event()}
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["method"] == "DELETE"
        session_id = dict(scope["headers"])[b"mcp-session-id"].decode()
        begun[session_id].set()
        for event in begun.values():
            await event.wait()
        finished.append(session_id)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = ProtocolSessionGuard(app, lambda scope: "alice")
    opened = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
    for session_id in begun:
        guard.sessions[session_id] = _Session("alice", "old-token", opened)

    async def revoked(token: str) -> object | None:
        return None

    assert await guard.close_revoked(revoked) == 2
    assert sorted(finished) == ["one", "two"]
    assert guard.sessions == {}
