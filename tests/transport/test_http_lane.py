"""The HTTP server's direct lane answers as the ASGI chain behind it does, on raw sockets.

Two servers (:class:`HttpServer` over ``build_http_app``, as ``serve --http``
makes them), each over its own state and the same tokens file, one with the
direct lane and one without (``HttpSettings(direct_lane=False)``: every
request through authentication, the registry, the protocol-session guard
and the fast path), get the same raw HTTP requests, valid and invalid; the
status, the headers (the date aside) and the parsed bodies must be equal
once each server's session ids and timestamps are put aside. Then what the
lane must do as the chain does: a client leaving cancels its call, a call
past the SSE window becomes an event stream, the registry counts and limits
lane calls, and a token is answered in the lane only once the verifier has
verified it under the tokens loaded now.
"""

from __future__ import annotations

import contextlib
import json
import socket
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.server import _streamable_http_modern

import actorstate
from actorstate.store.memory import MemoryStore
from actorstate.transport import http_fast_path
from actorstate.transport.authentication import TokensFileVerifier
from actorstate.transport.http import DEFAULT_MAX_REQUEST_BODY_SIZE, HttpSettings, build_http_app
from actorstate.transport.http_server import HttpServer
from actorstate.transport.registry import RegistryLimits
from actorstate.transport.tokens import TokensFile, add_token, revoke_token
from actorstate.transport.tools import ToolContext

from .test_http_fast_path import (
    HOST,
    ToolCaller,
    call_body,
    call_headers,
    normalised,
    parsed_body,
    requests,
)
from .test_http_fast_path import Pair as FastPathPair
from .test_http_server import Replies

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from actorstate.store.memory import WriteGate
    from actorstate.transport.http_lane import DirectLane
    from actorstate.transport.registry import ConnectionRegistry

# A guard against hanging, never a timing assertion: what never comes fails the test.
HANG_GUARD_SECONDS = 30
# The tokens the request strategies name, and the principals they stand for in the tokens file.
NAMES = {"alice_token": "alice", "bob_token": "bob", "root_token": "root"}


class Reply:
    """One HTTP reply as a client reads it."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def parsed(self) -> Any:
        return parsed_body(self.headers.get("content-type"), self.body)


class Served(ToolCaller):
    """One server on a loopback port, and a keep-alive connection to it (opened again when closed)."""

    def __init__(
        self,
        port: int,
        context: ToolContext,
        store: MemoryStore,
        registry: ConnectionRegistry,
        tokens: dict[str, str],
    ) -> None:
        self.port = port
        self.context = context
        self.store = store
        self.registry = registry
        self.tokens = tokens
        self.lane: DirectLane | None = None
        self.stream: anyio.abc.SocketStream | None = None
        self.replies: Replies | None = None

    def raw_request(self, headers: list[tuple[str, str]], body: bytes) -> bytes:
        """The request's bytes, with the strategies' token names made this file's tokens."""
        lines = [b"POST /mcp HTTP/1.1"]
        for name, value in headers:
            for placeholder, token in self.tokens.items():
                value = value.replace(placeholder, token)
            lines.append(name.encode() + b": " + value.encode("utf-8", "surrogatepass"))
        lines.append(b"content-length: %d" % len(body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def post(self, headers: list[tuple[str, str]], body: Any) -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if self.stream is None:
            self.stream = await anyio.connect_tcp("127.0.0.1", self.port)
            self.replies = Replies(self.stream)
        assert self.replies is not None
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await self.stream.send(self.raw_request(headers, raw))
            status, reply_headers, reply_body = await self.replies.read()
        if reply_headers.get("connection") == "close":
            await self.close()
        return Reply(status, reply_headers, reply_body)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        self.stream = self.replies = None

    @property
    def lane_calls(self) -> int:
        return self.lane.calls if self.lane is not None else 0


@pytest.fixture
def tokens_file(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A tokens file naming alice, bob and root (an operator); the strategies' names for its tokens."""
    path = str(tmp_path / "tokens.json")
    made = {
        name: add_token(path, principal, operator=principal == "root") for name, principal in NAMES.items()
    }
    return path, made


@contextlib.asynccontextmanager
async def open_server(
    tokens: tuple[str, dict[str, str]],
    *,
    lane: bool,
    durability: str = "memory",
    max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
    **options: Any,
) -> AsyncIterator[Served]:
    """A server (direct lane on or off) over a fresh state, serving on a free loopback port;
    ``max_body``: the HTTP server's limit on a body (the app's is the SDK's default)."""
    path, made = tokens
    store = MemoryStore()
    async with actorstate.open_state(store, durability=durability) as state:
        context = ToolContext(state)
        verifier = TokensFileVerifier(TokensFile(path))
        settings = HttpSettings(port=0, verifier=verifier, direct_lane=lane, **options)
        app, registry = build_http_app(state, context, settings, f"http://{HOST}/mcp")
        assert (app.lane is not None) == lane
        server = HttpServer(app, max_body=max_body, lane=app.lane)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        served = Served(sock.getsockname()[1], context, store, registry, made)
        served.lane = app.lane
        async with app.lifespan(), anyio.create_task_group() as tg:
            tg.start_soon(server.serve, sock)
            try:
                yield served
            finally:
                await served.close()
                server.stop()


class Pair(FastPathPair):
    """The server with the lane (``lane``) and the one without (``chain``), driven as the fast path
    test drives its two apps; replies compared with their headers too."""

    def __init__(self, lane: Served, chain: Served) -> None:
        super().__init__(lane, chain)  # type: ignore[arg-type]  (Served posts as App does)
        self.lane = lane
        self.chain = chain

    def _normalise(self, reply: Reply, index: int) -> Any:
        # The date is the clock's, and a length follows the ids and timestamps put aside.
        headers = {k: v for k, v in reply.headers.items() if k not in ("date", "content-length")}
        if "mcp-session-id" in headers:  # a protocol session's id: each server's own, at random
            headers["mcp-session-id"] = "<protocol session>"
        return reply.status, headers, normalised(reply.parsed(), self.sessions, index)


@contextlib.asynccontextmanager
async def open_pair(tokens: tuple[str, dict[str, str]]) -> AsyncIterator[Pair]:
    async with open_server(tokens, lane=True) as lane, open_server(tokens, lane=False) as chain:
        pair = Pair(lane, chain)
        await pair.setup()
        yield pair


@pytest.fixture(params=["asyncio", "trio"])
def pair(
    request: pytest.FixtureRequest, tokens_file: tuple[str, dict[str, str]]
) -> Iterator[tuple[Any, Pair]]:
    """Both servers in an event loop of the backend, and a portal to call into it from the test."""
    with start_blocking_portal(request.param) as portal:
        with portal.wrap_async_context_manager(open_pair(tokens_file)) as servers:
            yield portal, servers


def test_replies_equal_the_chains(pair: tuple[Any, Pair]) -> None:
    """Every request, valid or not (the fast path's own differential requests, with every kind of
    departure from a plain call in its headers and body), gets the same status, headers and body
    from the server with the lane as from the one without; the lane answered some of them."""
    portal, servers = pair

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(requests(), min_size=1, max_size=4))
    def same_replies(stream: list[tuple[list[tuple[str, str]], Any]]) -> None:
        for headers, body in stream:
            with_lane, through_chain = portal.call(servers.exchange, headers, body)
            assert with_lane == through_chain, (headers, body)

    same_replies()
    assert servers.lane.lane_calls > 0
    assert servers.chain.lane is None


@pytest.mark.anyio
async def test_every_tool_answers_the_same_in_the_lane(tokens_file: tuple[str, dict[str, str]]) -> None:
    """Valid calls of every tool, on each principal's own sessions and another's, are answered in the
    lane, exactly as the chain answers them, and server_stats counts them."""
    async with open_pair(tokens_file) as servers:
        before = servers.lane.lane_calls
        calls: list[tuple[str, dict[str, Any], str]] = [
            ("add_context", {"sessionId": "@S0", "key": "lang", "value": "fr"}, "alice_token"),
            ("record_action", {"sessionId": "@S0", "action": "step", "details": {"n": 1}}, "alice_token"),
            ("set_preference", {"sessionId": "@S1", "key": "theme", "value": "dark"}, "alice_token"),
            ("increment_counter", {"sessionId": "@S0", "by": 3}, "alice_token"),
            ("increment_counter", {"sessionId": "@S2"}, "alice_token"),  # bob's: not found for alice
            ("get_context", {"sessionId": "@S0", "maxTurns": 2}, "alice_token"),
            ("get_context", {"sessionId": "@S2"}, "bob_token"),
            ("list_sessions", {"limit": 1}, "alice_token"),
            ("server_stats", {}, "alice_token"),  # refused: not an operator
            ("end_session", {"sessionId": "@S1"}, "alice_token"),
            ("get_context", {"sessionId": "@S1"}, "alice_token"),  # ended
        ]
        for name, arguments, token in calls:
            with_lane, through_chain = await servers.exchange(
                call_headers(name, token), call_body(7, name, arguments)
            )
            assert with_lane == through_chain, name
        assert servers.lane.lane_calls - before == len(calls)
        # server_stats counts them (the fast path's count includes them too).
        stats = servers.lane.context.stats()
        assert stats["direct_lane_calls"] == servers.lane.lane_calls
        assert stats["fast_path_calls"] >= servers.lane.lane_calls
        assert "direct_lane_calls" not in servers.chain.context.stats()


class Held:
    """An increment on a session of its own, sent on a connection of its own, held at its commit."""

    def __init__(self, session_id: str, calls: int, gate: WriteGate, stream: anyio.abc.SocketStream) -> None:
        self.session_id = session_id
        self.calls = calls  # the server's lane calls before it
        self.gate = gate
        self.stream = stream
        self.replies = Replies(stream)


@contextlib.asynccontextmanager
async def _held_call(served: Served) -> AsyncIterator[Held]:
    """A new session (its token verified by a first call, so the lane may take the next), then an
    increment on it, held at its commit by the store's gate for the block. After it the gate
    opens (else the state could not close: the commit would wait for good) and the connection
    closes."""
    session_id = (await served.call("create_session", {}))["structuredContent"]["sessionId"]
    await served.call("get_context", {"sessionId": session_id})
    calls = served.lane_calls
    gate = served.store.faults.hold_writes()
    stream = await anyio.connect_tcp("127.0.0.1", served.port)
    try:
        body = json.dumps(call_body(5, "increment_counter", {"sessionId": session_id})).encode()
        await stream.send(served.raw_request(call_headers("increment_counter"), body))
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await gate.waiting.wait()
        yield Held(session_id, calls, gate, stream)
    finally:
        gate.open()
        await stream.aclose()


@pytest.mark.anyio
async def test_a_client_leaving_cancels_its_call_in_the_lane(tokens_file: tuple[str, dict[str, str]]) -> None:
    """A client that closes its connection while its call waits for its commit cancels the call, in
    the lane as through the chain: the registry lets go of it before the commit is let through, the
    server serves on, and the session ends in the same state."""
    outcomes = []
    for lane in (True, False):
        async with open_server(tokens_file, lane=lane, durability="commit") as served:
            async with _held_call(served) as held:
                with anyio.fail_after(HANG_GUARD_SECONDS):
                    assert served.registry.open == 1
                    await held.stream.aclose()
                    await _until_the_registry_lets_go(served)
                assert held.gate.held  # still held: the call let go by being cancelled, not by its commit
            assert served.lane_calls == held.calls + (1 if lane else 0)
            result = await served.call("get_context", {"sessionId": held.session_id})
            outcomes.append(result["structuredContent"]["metadata"])
    assert outcomes[0] == outcomes[1]


async def _until_the_registry_lets_go(served: Served) -> None:
    """Until the registry holds no exchange: the cancelled call let go (the caller's hang guard
    fails a test in which it never does). The registry has no event to wait on."""
    while served.registry.open:  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def _chunk(replies: Replies) -> bytes:
    """The next chunk of a chunked body (empty: the last)."""
    size = int(await replies._line(), 16)
    data = await replies._exactly(size)
    assert await replies._line() == b""
    return data


@pytest.mark.anyio
async def test_a_call_past_the_window_is_answered_as_an_event_stream_in_the_lane(
    monkeypatch: pytest.MonkeyPatch, tokens_file: tuple[str, dict[str, str]]
) -> None:
    """A lane call still running when the SDK's window elapses gets the chain's answer: an event
    stream with keep-alive pings, the reply its last event (the window shortened for the test)."""
    monkeypatch.setattr(_streamable_http_modern, "_SSE_PING_INTERVAL", 0.05)
    monkeypatch.setattr(http_fast_path, "_SSE_PING_INTERVAL", 0.05)
    outcomes = []
    for lane in (True, False):
        async with open_server(tokens_file, lane=lane, durability="commit") as served:
            async with _held_call(served) as held:
                with anyio.fail_after(HANG_GUARD_SECONDS):
                    status, headers = await held.replies.head()
                    assert (status, headers["content-type"]) == (200, "text/event-stream")
                    first = await _chunk(held.replies)
                    held.gate.open()
                    rest = b""
                    while chunk := await _chunk(held.replies):
                        rest += chunk
            assert first == b": ping\r\n\r\n"
            [event] = [
                json.loads(line[5:]) for line in rest.decode().splitlines() if line.startswith("data:")
            ]
            assert event["result"]["structuredContent"]["value"] == 1
            assert served.lane_calls == held.calls + (1 if lane else 0)
            headers.pop("date")
            outcomes.append((headers, json.dumps(event).replace(held.session_id, "<session>")))
    assert outcomes[0] == outcomes[1]


@pytest.mark.anyio
@pytest.mark.parametrize("half_closes", ["before the stream", "during the stream"])
async def test_a_client_half_closing_around_its_event_stream_cancels_its_call_in_the_lane(
    monkeypatch: pytest.MonkeyPatch, tokens_file: tuple[str, dict[str, str]], half_closes: str
) -> None:
    """A client's end of stream counts as leaving once its call's event stream has begun (sent before
    the stream or during it): the call is cancelled, in the lane as through the chain, and the
    registry lets go of it while its commit is still held (the window shortened for the test)."""
    monkeypatch.setattr(_streamable_http_modern, "_SSE_PING_INTERVAL", 0.05)
    monkeypatch.setattr(http_fast_path, "_SSE_PING_INTERVAL", 0.05)
    for lane in (True, False):
        async with open_server(tokens_file, lane=lane, durability="commit") as served:
            async with _held_call(served) as held:
                with anyio.fail_after(HANG_GUARD_SECONDS):
                    if half_closes == "before the stream":
                        await held.stream.send_eof()
                    status, headers = await held.replies.head()
                    assert (status, headers["content-type"]) == (200, "text/event-stream")
                    if half_closes == "during the stream":
                        assert await _chunk(held.replies) == b": ping\r\n\r\n"
                        await held.stream.send_eof()
                    await _until_the_registry_lets_go(served)
                assert held.gate.held  # still held: the call let go by being cancelled, not by its commit
            assert served.lane_calls == held.calls + (1 if lane else 0)


@pytest.mark.anyio
async def test_a_body_past_the_apps_limit_is_refused_as_by_the_chain(
    tokens_file: tuple[str, dict[str, str]],
) -> None:
    """A chunked call whose body is past the app's limit (the SDK's), on an HTTP server that reads
    bodies twice that long, is refused 413 with the lane as without it: the lane leaves it to the
    chain, whose fast path leaves it to the SDK."""
    value = "x" * DEFAULT_MAX_REQUEST_BODY_SIZE
    body = json.dumps(call_body(3, "add_context", {"sessionId": "none", "key": "k", "value": value}))
    statuses = []
    for lane in (True, False):
        async with open_server(tokens_file, lane=lane, max_body=2 * DEFAULT_MAX_REQUEST_BODY_SIZE) as served:
            await served.call("create_session", {})  # the token is verified now
            headers = [*call_headers("add_context"), ("transfer-encoding", "chunked")]
            head = served.raw_request(headers, b"").rsplit(b"content-length", 1)[0]
            encoded = body.encode()
            chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(encoded), encoded)
            async with await anyio.connect_tcp("127.0.0.1", served.port) as stream:
                with anyio.fail_after(HANG_GUARD_SECONDS):
                    await stream.send(head + b"\r\n" + chunked)
                    status, _, _ = await Replies(stream).read()
            statuses.append((status, served.lane_calls))
    assert statuses == [(413, 0), (413, 0)]


@pytest.mark.anyio
async def test_the_registry_counts_lane_calls_and_its_limits_refuse_them(
    tokens_file: tuple[str, dict[str, str]],
) -> None:
    """Calls answered in the lane count among the principal's requests; once its token bucket is
    empty the next call is refused with the chain's 429 and counted as refused, not answered."""
    limits = RegistryLimits(rate=0.001, burst=4)
    replies = []
    for lane in (True, False):
        async with open_server(tokens_file, lane=lane, limits=limits) as served:
            session_id = (await served.call("create_session", {}))["structuredContent"]["sessionId"]
            for _ in range(3):
                await served.call("increment_counter", {"sessionId": session_id})
            refused = await served.post(
                call_headers("increment_counter"),
                call_body(9, "increment_counter", {"sessionId": session_id}),
            )
            stats = served.registry.stats()
            assert (stats["http_requests"], stats["http_refused"], stats["http_open"]) == (4, 1, 0)
            assert served.lane_calls == (3 if lane else 0)  # the first call verified the token
            assert refused.status == 429
            replies.append(
                (refused.headers.get("retry-after") is not None, refused.parsed()["error"]["code"])
            )
    assert replies[0] == replies[1]


@pytest.mark.anyio
async def test_a_token_is_answered_in_the_lane_only_while_verified_under_the_tokens_loaded(
    tokens_file: tuple[str, dict[str, str]],
) -> None:
    """A token's first call goes through the chain (the verifier has not seen it); later ones through
    the lane; once the token is revoked and the tokens reloaded, it is refused (401) as by the chain."""
    path, _ = tokens_file
    async with open_server(tokens_file, lane=True) as served:
        await served.call("create_session", {}, token="bob_token")
        assert served.lane_calls == 0
        await served.call("create_session", {}, token="bob_token")
        assert served.lane_calls == 1
        revoke_token(path, "bob")
        verifier = served.lane.verifier if served.lane is not None else None
        assert isinstance(verifier, TokensFileVerifier)
        assert verifier.reload()
        refused = await served.post(
            call_headers("create_session", "bob_token"), call_body(1, "create_session", {})
        )
        assert refused.status == 401
        assert served.lane_calls == 1


def test_the_lane_is_off_for_verifiers_that_cannot_answer_without_waiting() -> None:
    """A verifier without ``verified_now`` (a JWT verifier, say) leaves every request to the chain."""

    class Waiting:
        async def verify_token(self, token: str) -> None:
            return None

    async def build() -> Any:
        async with actorstate.open_state(MemoryStore(), durability="memory") as state:
            app, _ = build_http_app(
                state, ToolContext(state), HttpSettings(verifier=Waiting()), f"http://{HOST}/mcp"
            )
            return app.lane

    assert anyio.run(build) is None
