"""MCP over Streamable HTTP on loopback, driven by the official SDK client: principals isolated,
tokens refused, both protocol generations on one endpoint, exact counters under concurrency, and
a graceful stop. The server runs in the test's own event loop (trio and asyncio)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import AccessToken

import actorstate
from actorstate.store.memory import MemoryStore
from actorstate.transport.caller import MAX_PRINCIPAL_KEY, principal_key
from actorstate.transport.http import HttpSettings, check_listen_address, serve_http
from actorstate.transport.registry import RegistryLimits

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actorstate import State

NOT_FOUND = "Session not found or expired"

# The SDK's HTTP client leaves its SSE readers' async generators (httpx2's)
# unfinished when a client closes under trio; trio's finalizer then warns.
# Client-side only (the server under test is not involved), so not ours to fail on.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
    "pytest.PytestUnraisableExceptionWarning"
)


class Tokens:
    """A verifier for the tests: token -> (issuer, subject, client), or refused."""

    def __init__(self, **principals: tuple[str, str]) -> None:
        self.principals = principals

    async def verify_token(self, token: str) -> AccessToken | None:
        found = self.principals.get(token)
        if found is None:
            return None
        issuer, subject = found
        scopes = ["operator"] if subject == "root" else []
        return AccessToken(
            token=token, client_id=subject, subject=subject, scopes=scopes, claims={"iss": issuer}
        )


TOKENS = Tokens(alice_token=("tests", "alice"), bob_token=("tests", "bob"), root_token=("tests", "root"))


@contextlib.asynccontextmanager
async def http_server(state: State, **settings: Any) -> AsyncIterator[str]:
    """Serve ``state`` over HTTP on a free loopback port; its URL. Stops gracefully on exit."""
    listening = anyio.Event()
    stop = anyio.Event()
    urls: list[str] = []

    def on_listening(url: str) -> None:
        urls.append(url)
        listening.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: serve_http(state, HttpSettings(port=0, **settings), on_listening=on_listening, stop=stop)
        )
        await listening.wait()
        yield urls[0]
        stop.set()


def mcp_http_client(headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """An HTTP client for the SDK's Streamable HTTP client, with its transports' default timeouts
    (a long read: a server may hold a stream open)."""
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))


@contextlib.asynccontextmanager
async def client(url: str, token: str | None, mode: str = "2026-07-28") -> AsyncIterator[Client]:
    """The SDK's client on ``url`` with ``token`` as its bearer (its HTTP client closed after)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with mcp_http_client(headers) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as session:
            yield session


async def call(session: Client, tool: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    """(isError, structured content or the error text)."""
    result = await session.call_tool(tool, arguments)
    if result.is_error:
        return True, result.content[0].text  # type: ignore[union-attr]
    return False, result.structured_content


@pytest.mark.anyio
async def test_each_principal_sees_only_its_own_sessions() -> None:
    """Alice's session answers bob exactly like an unknown id, in tools and in the session
    resource; each lists only their own; a clientId naming alice is refused for bob."""
    async with actorstate.open_state() as state, http_server(state, verifier=TOKENS) as url:
        async with client(url, "alice_token") as alice, client(url, "bob_token") as bob:
            _, created = await call(alice, "create_session", {})
            alices = created["sessionId"]
            await call(alice, "increment_counter", {"sessionId": alices})
            _, bobs_own = await call(bob, "create_session", {})
            unknown = "00000000-0000-4000-8000-000000000000"
            for tool, extra in (("get_context", {}), ("increment_counter", {}), ("end_session", {})):
                foreign = await call(bob, tool, {"sessionId": alices, **extra})
                missing = await call(bob, tool, {"sessionId": unknown, **extra})
                assert foreign[0]
                assert missing[0]
                assert foreign[1].replace(alices, "ID") == missing[1].replace(unknown, "ID")
                assert NOT_FOUND in foreign[1]
            with pytest.raises(Exception, match="not found") as foreign_resource:
                await bob.read_resource(f"session://{alices}")
            with pytest.raises(Exception, match="not found") as missing_resource:
                await bob.read_resource(f"session://{unknown}")
            assert str(foreign_resource.value).replace(alices, "ID") == str(missing_resource.value).replace(
                unknown, "ID"
            )
            _, listed = await call(bob, "list_sessions", {})
            assert [s["sessionId"] for s in listed["sessions"]] == [bobs_own["sessionId"]]
            refused = await call(bob, "list_sessions", {"clientId": "tests|alice|alice"})
            assert refused[0]
            assert "names another client" in refused[1]
            _, context = await call(alice, "get_context", {"sessionId": alices})
            assert context["metadata"]["counter"] == 1  # bob's attempts changed nothing


@pytest.mark.anyio
async def test_missing_and_wrong_tokens_get_401_with_www_authenticate() -> None:
    """No token, a wrong token and a malformed header are refused with 401 and a Bearer
    WWW-Authenticate header, before anything reaches the tools."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with actorstate.open_state() as state, http_server(state, verifier=TOKENS) as url:
        async with httpx2.AsyncClient() as http:
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YWxpY2U6eA=="}):
                reply = await http.post(
                    url, json=body, headers={**headers, "Accept": "application/json, text/event-stream"}
                )
                assert reply.status_code == 401, headers
                assert reply.headers["www-authenticate"].startswith("Bearer ")
                assert 'error="invalid_token"' in reply.headers["www-authenticate"]


@pytest.mark.anyio
async def test_a_client_moving_from_the_older_protocol_keeps_its_sessions() -> None:
    """A session created over a protocol session (initialize, Mcp-Session-Id) is the same state
    session after that client disconnects and comes back on the 2026-07-28 sessionless path."""
    async with actorstate.open_state() as state, http_server(state, verifier=TOKENS) as url:
        async with client(url, "alice_token", mode="legacy") as old:
            _, created = await call(old, "create_session", {})
            await call(old, "increment_counter", {"sessionId": created["sessionId"]})
        async with client(url, "alice_token") as new:
            _, value = await call(new, "increment_counter", {"sessionId": created["sessionId"]})
            assert value["value"] == 2


@pytest.mark.anyio
async def test_many_clients_with_requests_in_flight_end_with_exact_counters() -> None:
    """100 clients, each with 10 increments in flight on one shared session of its principal and
    10 on its own: every counter ends exact and no call failed."""
    clients, in_flight = 100, 10
    limits = RegistryLimits(max_connections=4096, max_in_flight=4096, rate=1e6, burst=1_000_000)
    async with actorstate.open_state() as state, http_server(state, verifier=TOKENS, limits=limits) as url:
        async with client(url, "alice_token") as setup:
            _, shared = await call(setup, "create_session", {})
        failures: list[Any] = []
        own_counts: list[int] = []

        async def one_client() -> None:
            async with client(url, "alice_token") as session:
                _, mine = await call(session, "create_session", {})

                async def bump(session_id: str) -> None:
                    error, result = await call(session, "increment_counter", {"sessionId": session_id})
                    if error:
                        failures.append(result)

                async with anyio.create_task_group() as tg:
                    for _ in range(in_flight):
                        tg.start_soon(bump, shared["sessionId"])
                        tg.start_soon(bump, mine["sessionId"])
                _, context = await call(session, "get_context", {"sessionId": mine["sessionId"]})
                own_counts.append(context["metadata"]["counter"])

        async with anyio.create_task_group() as tg:
            for _ in range(clients):
                tg.start_soon(one_client)
        assert failures == []
        assert own_counts == [in_flight] * clients
        async with client(url, "alice_token") as check:
            _, context = await call(check, "get_context", {"sessionId": shared["sessionId"]})
        assert context["metadata"]["counter"] == clients * in_flight


@pytest.mark.anyio
async def test_a_request_in_flight_is_answered_when_the_server_stops() -> None:
    """A stop while a call's commit is held: the server keeps serving until the commit lands and
    the call is answered, and only then stops; what the call did is in the store."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        listening, stop = anyio.Event(), anyio.Event()
        urls: list[str] = []
        served: list[str] = []

        def on_listening(url: str) -> None:
            urls.append(url)
            listening.set()

        async def serve() -> None:
            await serve_http(
                state, HttpSettings(port=0, verifier=TOKENS), on_listening=on_listening, stop=stop
            )
            served.append("ended")

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await listening.wait()
            async with client(urls[0], "alice_token") as alice:
                _, created = await call(alice, "create_session", {})
                gate = store.faults.hold_writes()
                answered: list[Any] = []

                async def http_call() -> None:
                    answered.append(
                        await call(alice, "increment_counter", {"sessionId": created["sessionId"]})
                    )

                async with anyio.create_task_group() as calls:
                    calls.start_soon(http_call)
                    await gate.waiting.wait()
                    stop.set()
                    await anyio.wait_all_tasks_blocked()
                    assert served == []  # a request is in flight: still serving
                    assert answered == []
                    gate.open()
                assert answered == [
                    (False, {"sessionId": created["sessionId"], "key": "counter", "value": 1})
                ]
        assert served == ["ended"]
        row = await store.load(created["sessionId"])
        assert row is not None
        assert row.version == 2


def test_no_authentication_means_loopback_only() -> None:
    """Listening on a non-loopback address without a verifier is refused, naming the fix."""
    with pytest.raises(ValueError, match=r"refusing to serve HTTP on 0\.0\.0\.0 without authentication"):
        check_listen_address(HttpSettings(host="0.0.0.0"))
    check_listen_address(HttpSettings(host="0.0.0.0", verifier=TOKENS))
    check_listen_address(HttpSettings(host="::1"))


def test_a_long_principal_key_is_shortened_keeping_principals_apart() -> None:
    """A principal whose key would pass the state's limit on a client id gets a shortened key that
    keeps its start and a digest of the whole: two long principals differing only at the end stay
    apart, and a short principal keeps its key as it is."""
    long_subject = "user/" + "x" * 2000

    def key(subject: str) -> str:
        return principal_key(
            AccessToken(
                token="t",
                client_id="app",
                subject=subject,
                scopes=[],
                claims={"iss": "https://id.example.com"},
            )
        )

    first, second = key(long_subject + "1"), key(long_subject + "2")
    assert first != second
    assert len(first) <= MAX_PRINCIPAL_KEY
    assert first.startswith("https://id.example.com|user")
    assert key("alice") == "https://id.example.com|alice|app"


@pytest.mark.anyio
async def test_server_figures_are_for_operators_only() -> None:
    """server_stats and the actorstate://stats resource cover every client: a principal without the
    operator scope is refused both, saying how to get an operator's token; an operator sees them."""
    async with actorstate.open_state() as state, http_server(state, verifier=TOKENS) as url:
        async with client(url, "alice_token") as alice, client(url, "root_token") as root:
            error, text = await call(alice, "server_stats", {})
            assert error
            assert "server_stats is for operators" in text
            assert "--operator" in text
            with pytest.raises(Exception, match="for operators"):
                await alice.read_resource("actorstate://stats")
            error, stats = await call(root, "server_stats", {})
            assert not error
            assert "http_requests" in stats
            resource = await root.read_resource("actorstate://stats")
            assert "http_requests" in resource.contents[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_protocol_sessions_are_capped() -> None:
    """With room for two protocol sessions of the older protocol, a third initialize is answered
    503 while the two are open (one principal cannot open them until memory runs out), and the
    sessionless path keeps working meanwhile."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Authorization": "Bearer alice_token", "Accept": "application/json, text/event-stream"}
    async with (
        actorstate.open_state() as state,
        http_server(state, verifier=TOKENS, max_protocol_sessions=2) as url,
    ):
        async with httpx2.AsyncClient() as http:
            statuses = []
            for _ in range(3):
                reply = await http.post(url, json=initialize, headers=headers)
                statuses.append(reply.status_code)
        assert statuses == [200, 200, 503]
        async with client(url, "alice_token") as alice:
            error, _ = await call(alice, "create_session", {})
            assert not error


@pytest.mark.anyio
async def test_a_server_on_another_loopback_address_answers_its_own_host() -> None:
    """A server listening on 127.0.0.2 (loopback too) takes requests whose Host names it, where it
    used to refuse every one as a DNS-rebinding attempt."""
    async with actorstate.open_state() as state, http_server(state, host="127.0.0.2") as url:
        assert url.startswith("http://127.0.0.2:")
        async with client(url, None) as session:
            error, _ = await call(session, "create_session", {})
        assert not error
