"""The HTTP tools/call fast path answers as the SDK's modern Streamable HTTP path does.

Two apps, each with its own state, one with the fast path and one without
(``HttpSettings(fast_path=False)``: every request through the SDK), get the
same requests, valid and invalid, as raw ASGI exchanges behind the same
authentication and registry; their HTTP status, content type and parsed
bodies must be equal once each app's session ids and the clock's timestamps
are put aside.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp.server import _streamable_http_modern

import actorstate
from actorstate.store.memory import MemoryStore
from actorstate.transport import http_fast_path
from actorstate.transport.http import HttpSettings, build_http_app
from actorstate.transport.tools import ToolContext

from .test_fast_path import COMPARED_TOOLS, bind_sessions, json_values, tool_arguments
from .test_http import TOKENS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from starlette.types import ASGIApp, Message

    from actorstate.store.memory import WriteGate

VERSION = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "tests", "version": "1"},
}
HOST = "127.0.0.1:8000"
HANG_GUARD_SECONDS = 60
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")
_CURSOR = re.compile(r'(nextCursor\\?"\s*:\s*\\?")[^"\\]+')
# pydantic quotes the input cut short, so a session id in it may be cut too (only the SDK's replies have it).
_PYDANTIC_INPUT = re.compile(r"input_value=.*?, input_type=")

# -- one exchange, as raw ASGI -------------------------------------------------------------


def call_body(request_id: Any, name: Any, arguments: Any = None, **params: Any) -> dict[str, Any]:
    """A tools/call request with the envelope; ``arguments`` None: left out."""
    body: dict[str, Any] = {"name": name, "_meta": dict(META), **params}
    if arguments is not None:
        body["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body}


def call_headers(name: Any, token: str | None = "alice_token") -> list[tuple[str, str]]:
    """The headers a well-behaved 2026-07-28 client sends with a tools/call of tool ``name``."""
    headers = [
        ("host", HOST),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", VERSION),
        ("mcp-method", "tools/call"),
    ]
    if isinstance(name, str):
        headers.append(("mcp-name", name))  # raw: a name past ASCII goes as its UTF-8 bytes
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    return headers


def scope_of(headers: list[tuple[str, str]], method: str = "POST") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": [(name.encode(), value.encode("utf-8", "surrogatepass")) for name, value in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


class Reply:
    """What an app sent for one request: the start message and the body messages."""

    def __init__(self, messages: list[Message]) -> None:
        starts = [message for message in messages if message["type"] == "http.response.start"]
        assert len(starts) <= 1, messages
        self.status: int | None = starts[0]["status"] if starts else None
        self.headers = {k.decode(): v.decode() for k, v in starts[0]["headers"]} if starts else {}
        self.chunks = [
            message.get("body", b"") for message in messages if message["type"] == "http.response.body"
        ]
        self.body = b"".join(self.chunks)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def parsed(self) -> Any:
        return parsed_body(self.content_type, self.body)


def parsed_body(content_type: str | None, body: bytes) -> Any:
    """The JSON body, the JSON of an SSE stream's message events, or the text."""
    if content_type == "text/event-stream":
        return [json.loads(line[5:]) for line in body.decode().splitlines() if line.startswith("data:")]
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


async def exchange(
    app: ASGIApp,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    method: str = "POST",
    chunk: int | None = None,
    disconnect: anyio.Event | None = None,
) -> Reply:
    """One request through ``app``; ``chunk``: the body in pieces this long; ``disconnect``: the
    client goes away once it is set (else once the response is complete, as a server tells it)."""
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk and body else [body]
    incoming: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": index < len(pieces) - 1}
        for index, piece in enumerate(pieces)
    ]
    sent: list[Message] = []
    finished = anyio.Event()

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await (disconnect or finished).wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    await app(scope_of(headers, method), receive, send)
    return Reply(sent)


# -- the two apps ------------------------------------------------------------------------


class ToolCaller:
    """A well-formed tool call on top of a ``post`` of headers and a body."""

    async def post(self, headers: list[tuple[str, str]], body: Any) -> Any:
        raise NotImplementedError

    async def call(self, name: str, arguments: dict[str, Any], token: str = "alice_token") -> dict[str, Any]:
        """A well-formed call's result (asserted a success)."""
        reply = await self.post(call_headers(name, token), call_body(1, name, arguments))
        assert reply.status == 200, reply.body
        result: dict[str, Any] = reply.parsed()["result"]
        assert not result["isError"], result
        return result


class App(ToolCaller):
    """One app over its own state, and what a test needs of it."""

    def __init__(self, app: ASGIApp, context: ToolContext, store: MemoryStore) -> None:
        self.app = app
        self.context = context
        self.store = store

    async def post(self, headers: list[tuple[str, str]], body: Any, **options: Any) -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await exchange(self.app, headers, raw, **options)

    @property
    def fast_calls(self) -> int:
        calls: int = self.context.stats().get("fast_path_calls", 0)
        return calls


@contextlib.asynccontextmanager
async def open_app(fast_path: bool, durability: str = "memory") -> AsyncIterator[App]:
    """An app (fast path on or off) over a fresh state, its lifespan running."""
    store = MemoryStore()
    async with actorstate.open_state(store, durability=durability) as state:
        context = ToolContext(state)
        settings = HttpSettings(verifier=TOKENS, fast_path=fast_path)
        app, _ = build_http_app(state, context, settings, f"http://{HOST}/mcp")
        async with app.lifespan():
            yield App(app, context, store)


class Pair:
    """The two apps, and the sessions both have (alice's, then bob's), in the order they were made."""

    def __init__(self, fast: App, sdk: App) -> None:
        self.fast = fast
        self.sdk = sdk
        self.sessions: list[tuple[str, str]] = []  # (fast's id, sdk's id)

    async def setup(self) -> None:
        for token in ("alice_token", "alice_token", "bob_token"):
            await self.exchange(call_headers("create_session", token), call_body(1, "create_session", {}))

    async def exchange(self, headers: list[tuple[str, str]], body: Any, **options: Any) -> tuple[Any, Any]:
        """Send the same request to both (placeholders made each one's own ids); both replies, normalised."""
        replies = [
            await app.post(self._bind(headers, index), self._bind(body, index), **options)
            for index, app in enumerate((self.fast, self.sdk))
        ]
        made = [created_session(reply) for reply in replies]
        if made[0] and made[1]:
            self.sessions.append((made[0], made[1]))
        return self._normalise(replies[0], 0), self._normalise(replies[1], 1)

    def _bind(self, value: Any, index: int) -> Any:
        return bind_sessions(value, self.sessions, index)

    def _normalise(self, reply: Reply, index: int) -> Any:
        return reply.status, reply.content_type, normalised(reply.parsed(), self.sessions, index)


def normalised(parsed: Any, sessions: list[tuple[str, str]], index: int) -> Any:
    """A parsed reply with side ``index``'s session ids, timestamps, cursors and pydantic's quoted
    input put aside (``sessions`` holds each session's id on both sides, in creation order)."""
    text = json.dumps(parsed, sort_keys=True)
    for number, ids in enumerate(sessions):
        text = text.replace(ids[index], f"<session {number}>")
        text = text.replace(ids[index].upper(), f"<SESSION {number}>")
    text = _PYDANTIC_INPUT.sub("input_value=<input>, input_type=", text)
    return json.loads(_CURSOR.sub(r"\1<cursor>", _TIMESTAMP.sub("<time>", text)))


def created_session(reply: Reply) -> str | None:
    """The id a create_session reply gives, else None."""
    try:
        structured = reply.parsed()["result"]["structuredContent"]
    except (KeyError, TypeError):
        return None
    session_id = structured.get("sessionId")
    return session_id if isinstance(structured.get("message"), str) else None


@contextlib.asynccontextmanager
async def open_pair(durability: str = "memory") -> AsyncIterator[Pair]:
    async with open_app(True, durability) as fast, open_app(False, durability) as sdk:
        pair = Pair(fast, sdk)
        await pair.setup()
        yield pair


# -- what the requests are made of -----------------------------------------------------------

session_refs = st.integers(0, 4).flatmap(lambda n: st.sampled_from([f"@S{n}", f"@s{n}"]))
tools = st.sampled_from(COMPARED_TOOLS) | st.text(max_size=10)


@st.composite
def arguments_for(draw: st.DrawFn, tool: str) -> Any:
    """The stdio test's arguments, with session references of this test's sessions (bob's among them)."""
    arguments = draw(tool_arguments(tool))
    if isinstance(arguments, dict) and "sessionId" in arguments and draw(st.booleans()):
        arguments["sessionId"] = draw(session_refs)
    return arguments


def _header_variant(draw: st.DrawFn, headers: list[tuple[str, str]], name: Any) -> list[tuple[str, str]]:
    """Mostly the headers as sent; sometimes one changed, dropped, doubled or added."""
    shape = draw(st.integers(0, 24))
    if shape == 0:
        return [(k, v) for k, v in headers if k != "mcp-name"]
    if shape == 1:
        return [(k, "other" if k == "mcp-name" else v) for k, v in headers]
    if shape == 2:
        return [*headers, ("mcp-name", str(name))]
    if shape == 3:
        return [(k, "2025-11-25" if k == "mcp-protocol-version" else v) for k, v in headers]
    if shape == 4:
        return [(k, "2099-01-01" if k == "mcp-protocol-version" else v) for k, v in headers]
    if shape == 5:
        return [(k, "tools/list" if k == "mcp-method" else v) for k, v in headers]
    if shape == 6:
        return [*headers, ("mcp-param-sessionid", "x")]
    if shape == 7:
        return [*headers, ("mcp-session-id", "0123456789abcdef")]
    if shape == 8:
        accept = draw(
            st.sampled_from(["application/json", "text/event-stream", "*/*", "application/*, text/*"])
        )
        return [(k, accept if k == "accept" else v) for k, v in headers]
    if shape == 9:
        content_type = draw(
            st.sampled_from(["text/plain", "application/json; charset=utf-8", "APPLICATION/JSON"])
        )
        return [(k, content_type if k == "content-type" else v) for k, v in headers]
    if shape == 10:
        return [(k, "evil.example:80" if k == "host" else v) for k, v in headers]
    if shape == 11:
        return [*headers, ("origin", draw(st.sampled_from(["http://evil.example", "http://127.0.0.1:3000"])))]
    if shape == 12:
        return [(k, "Bearer bob_token" if k == "authorization" else v) for k, v in headers]
    if shape == 13 and isinstance(name, str):
        encoded = "=?base64?" + __import__("base64").b64encode(name.encode()).decode() + "?="
        return [(k, encoded if k == "mcp-name" else v) for k, v in headers if k != "mcp-name"] + [
            ("mcp-name", encoded)
        ]
    return headers


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[tuple[str, str]], Any]:
    """(headers, body): mostly well-formed calls, and every kind of departure from one."""
    tool = draw(tools)
    request_id: Any = draw(st.integers(-(2**40), 2**40) | st.text(max_size=8))
    shape = draw(st.integers(0, 29))
    body: Any = call_body(request_id, tool, draw(arguments_for(tool)))
    if shape == 0:
        body["id"] = draw(st.sampled_from([True, 1.5, None, [1], 2**70, -(2**63) - 1]))
    elif shape == 1:
        body["params"]["arguments"] = draw(json_values)
    elif shape == 2:
        body["params"]["name"] = draw(json_values)
    elif shape == 3:
        del body["params"]["arguments"]
    elif shape == 4:
        body["params"]["_meta"]["progressToken"] = draw(st.integers(0, 9) | st.text(max_size=3))
    elif shape == 5:
        body["params"][draw(st.sampled_from(["extra", "task", "inputResponses", "requestState"]))] = draw(
            json_values
        )
    elif shape == 6:
        body["params"] = draw(json_values)
    elif shape == 7:
        key = draw(st.sampled_from(sorted(META)))
        body["params"]["_meta"][key] = draw(json_values | st.just({"name": "x", "version": "1", "title": 5}))
    elif shape == 8:
        del body["params"]["_meta"][draw(st.sampled_from(sorted(META)))]
    elif shape == 9:
        body["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = "debug"
    elif shape == 10:
        body = [body]  # a batch
    elif shape == 11:
        del body["id"]  # a notification
    elif shape == 12:
        body[draw(st.sampled_from(["extra", "result", "error"]))] = draw(json_values)
    elif shape == 13:
        body["jsonrpc"] = draw(st.sampled_from(["1.0", 2.0, None]))
    elif shape == 14:
        body = json.dumps(body).encode()[: draw(st.integers(0, 40))]  # cut short
    elif shape == 15:
        body["params"]["_meta"] = draw(json_values)
    elif shape == 16:
        body["method"] = draw(st.sampled_from(["tools/list", "tools/call ", "ping"]))
    params = body.get("params") if isinstance(body, dict) else None
    name = params.get("name", tool) if isinstance(params, dict) else tool
    headers = _header_variant(draw, call_headers(name if isinstance(name, str) else tool), name)
    return headers, body


# -- the comparisons --------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Pair]]:
    """Both apps in an event loop of the backend, and a portal to call into it from the test."""
    with start_blocking_portal(request.param) as portal:
        with portal.wrap_async_context_manager(open_pair()) as servers:
            yield portal, servers


def test_replies_equal_the_sdk_paths(pair: tuple[Any, Pair]) -> None:
    """Every request, valid or not, gets the same status, content type and body from both apps."""
    portal, servers = pair
    before = portal.call(lambda: _fast_calls(servers))

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(requests(), min_size=1, max_size=4))
    @example([(call_headers("end_session"), call_body(0, "end_session", {"sessionId": -(2**63) - 1}))])
    @example([(call_headers("list_sessions"), call_body(0, "list_sessions", {"limit": 1}))])
    @example([(call_headers("get_context"), call_body(0, "get_context", {"sessionId": "@S2"}))])  # bob's
    def same_replies(stream: list[tuple[list[tuple[str, str]], Any]]) -> None:
        for headers, body in stream:
            fast, sdk = portal.call(servers.exchange, headers, body)
            assert fast == sdk, (headers, body)

    same_replies()
    assert portal.call(lambda: _fast_calls(servers)) > before
    assert servers.sdk.fast_calls == 0


async def _fast_calls(servers: Pair) -> int:
    return servers.fast.fast_calls


@pytest.mark.anyio
@pytest.mark.parametrize("depth", [150, 196, 197, 198, 199, 250, 1000, 1021, 1100])
async def test_deeply_nested_arguments_get_the_sdk_paths_replies(depth: int) -> None:
    """An argument nested ``depth`` lists deep gets the same reply from both apps: past the SDK
    parser's 200 levels its refusal, not the fast path's tool error. The body is spliced by hand:
    Python's json module cannot write the deepest."""
    nested = b"[" * depth + b'"x"' + b"]" * depth
    template = json.dumps(call_body(1, "create_session", {"clientId": "NESTED"})).encode()
    body = template.replace(b'"NESTED"', nested)
    async with open_pair() as servers:
        fast, sdk = await servers.exchange(call_headers("create_session"), body)
        assert fast == sdk, (depth, fast, sdk)


@pytest.mark.anyio
async def test_every_tool_answers_the_same_through_the_fast_path() -> None:
    """Valid calls of every tool (each session's own, another's, unknown ones, huge values,
    idempotency keys) are taken by the fast path and answered exactly as the SDK answers them."""
    async with open_pair() as servers:
        mine, bobs = "@S0", "@S2"
        unknown = "00000000-0000-4000-8000-000000000000"
        calls: list[tuple[str, dict[str, Any] | None]] = [
            ("create_session", {}),
            ("create_session", None),
            ("create_session", {"clientId": "tests|alice|alice"}),
            ("create_session", {"clientId": "someone else"}),
            ("add_context", {"sessionId": mine, "key": "lang", "value": "fr"}),
            ("add_context", {"sessionId": mine, "key": "big", "value": "é" * 70_000}),
            ("add_context", {"sessionId": mine, "key": "k", "value": {"nested": [1, 2.5, None, True]}}),
            ("record_action", {"sessionId": mine, "action": "step", "details": {"n": 1}, "requestId": "r1"}),
            ("record_action", {"sessionId": mine, "action": "step", "details": {"n": 1}, "requestId": "r1"}),
            ("set_preference", {"sessionId": mine, "key": "theme", "value": None}),
            ("increment_counter", {"sessionId": mine, "by": 3}),
            ("increment_counter", {"sessionId": "@s0"}),
            ("increment_counter", {"sessionId": mine, "by": "x"}),
            ("increment_counter", {"sessionId": mine, "by": 1, "extra": 1}),
            ("increment_counter", {}),
            ("get_context", {"sessionId": mine, "maxTurns": 2}),
            ("get_context", {"sessionId": bobs}),
            ("get_context", {"sessionId": unknown}),
            ("get_context", {"sessionId": "not a uuid"}),
            ("list_sessions", {}),
            ("list_sessions", {"limit": 1}),
            ("list_sessions", {"clientId": "tests|bob|bob"}),
            ("end_session", {"sessionId": bobs}),
            ("end_session", {"sessionId": "@S1"}),
            ("get_context", {"sessionId": "@S1"}),
            ("no_such_tool", {}),
            ("", None),
        ]
        before = servers.fast.fast_calls
        for number, (tool, arguments) in enumerate(calls):
            fast, sdk = await servers.exchange(call_headers(tool), call_body(number, tool, arguments))
            assert fast == sdk, (tool, arguments)
            assert fast[0] == 200
            assert fast[1] == "application/json"
        assert servers.fast.fast_calls - before == len(calls)


@pytest.mark.anyio
async def test_requests_outside_the_criteria_go_to_the_sdk() -> None:
    """A progressToken, another protocol version, a batch, a bad Host, an Mcp-Param header, an
    envelope of another shape, a body past the size limit: each is answered by the SDK (the fast
    path counts none of them), as the SDK answers it."""
    async with open_pair() as servers:
        mine = "@S0"
        call = call_body(1, "increment_counter", {"sessionId": mine})
        headers = call_headers("increment_counter")
        progress = call_body(2, "increment_counter", {"sessionId": mine}, _meta={**META, "progressToken": 7})
        no_info = call_body(3, "get_context", {"sessionId": mine})
        del no_info["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]
        cases: list[tuple[list[tuple[str, str]], Any, int]] = [
            (headers, progress, 200),
            (call_headers("get_context"), no_info, 200),
            (headers, [call], 400),
            ([(k, "evil.example" if k == "host" else v) for k, v in headers], call, 421),
            ([*headers, ("origin", "http://evil.example")], call, 403),
            ([*headers, ("mcp-param-session", "x")], call, 200),
            ([(k, "2099-01-01" if k == "mcp-protocol-version" else v) for k, v in headers], call, 400),
            ([(k, "application/json" if k == "accept" else v) for k, v in headers], call, 406),
            (
                headers,
                {
                    **call,
                    "params": {**call["params"], "arguments": {"sessionId": mine, "x": "y" * 5_000_000}},
                },
                413,
            ),
        ]
        before = servers.fast.fast_calls
        for case_headers, body, status in cases:
            fast, sdk = await servers.exchange(case_headers, body)
            assert fast == sdk, (case_headers, body)
            assert fast[0] == status, fast
        assert servers.fast.fast_calls == before
        # And in pieces: a body that arrives in several messages is read whole, and still replayed.
        fast, sdk = await servers.exchange(headers, progress, chunk=7)
        assert fast == sdk
        fast, sdk = await servers.exchange(headers, call, chunk=7)
        assert fast == sdk
        assert servers.fast.fast_calls == before + 1
        # Both counted the same increments: those the fast path took ran exactly once.
        fast, sdk = await servers.exchange(
            call_headers("get_context"), call_body(9, "get_context", {"sessionId": mine})
        )
        assert fast == sdk
        assert fast[2]["result"]["structuredContent"]["metadata"]["counter"] == 4


@pytest.mark.anyio
async def test_an_older_protocol_session_is_served_by_the_sdk() -> None:
    """A 2025-11-25 session (initialize, then calls under its Mcp-Session-Id) never reaches the fast path."""
    async with open_app(True) as app:
        base = [
            ("host", HOST),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ]
        auth = [("authorization", "Bearer alice_token")]
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        opened = await app.post([*base, *auth], initialize)
        assert opened.status == 200
        session = opened.headers["mcp-session-id"]
        legacy = [*base, *auth, ("mcp-session-id", session), ("mcp-protocol-version", "2025-11-25")]
        await app.post(legacy, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "create_session", "arguments": {}},
        }
        reply = await app.post(legacy, call)
        assert reply.status == 200
        assert reply.content_type == "text/event-stream"
        assert reply.parsed()[-1]["result"]["structuredContent"]["sessionId"]
        assert app.fast_calls == 0


async def _held_exchange(
    app: App, gate: WriteGate, session_id: str, *, until_sse: bool
) -> tuple[Reply, dict[str, Any]]:
    """An increment held at its commit: released once the reply went SSE (``until_sse``), or
    abandoned by its client while held; the reply, and the session's context afterwards."""
    headers = call_headers("increment_counter")
    body = json.dumps(call_body(5, "increment_counter", {"sessionId": session_id})).encode()
    disconnect = anyio.Event()
    replies: list[Reply] = []
    sse_started = anyio.Event()
    returned = anyio.Event()

    async def watch_send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.start":
            sse_started.set()

    sent: list[Message] = []

    async def run() -> None:
        async def receive() -> Message:
            nonlocal body
            if body is not None:
                chunk, body = body, None  # type: ignore[assignment]
                return {"type": "http.request", "body": chunk, "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        await app.app(scope_of(headers), receive, watch_send)
        replies.append(Reply(sent))
        returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            # A guard against hanging, not a timing assertion: a reply that never comes fails the test.
            with anyio.fail_after(HANG_GUARD_SECONDS):
                await gate.waiting.wait()
                if until_sse:
                    await sse_started.wait()
                    gate.open()
                else:
                    disconnect.set()
                await returned.wait()
        finally:
            gate.open()
            disconnect.set()
    context = await app.call("get_context", {"sessionId": session_id})
    return replies[0], context["structuredContent"]


@pytest.mark.anyio
async def test_a_call_held_past_the_sse_window_is_answered_as_an_sse_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call still running when the SDK's window elapses gets the SDK's answer: an SSE stream with
    keep-alive pings, the reply its last event (the window shortened for the test)."""
    monkeypatch.setattr(_streamable_http_modern, "_SSE_PING_INTERVAL", 0.05)
    monkeypatch.setattr(http_fast_path, "_SSE_PING_INTERVAL", 0.05)
    outcomes = []
    for fast_path in (True, False):
        async with open_app(fast_path, durability="commit") as app:
            created = await app.call("create_session", {})
            session_id = created["structuredContent"]["sessionId"]
            gate = app.store.faults.hold_writes()
            reply, context = await _held_exchange(app, gate, session_id, until_sse=True)
            assert app.fast_calls == (3 if fast_path else 0)
            assert reply.status == 200
            assert reply.content_type == "text/event-stream"
            assert reply.chunks[0] == b": ping\r\n\r\n"
            assert context["metadata"]["counter"] == 1
            [event] = reply.parsed()
            outcomes.append((reply.headers, json.dumps(event).replace(session_id, "<session>")))
    fast, sdk = outcomes
    assert fast[0] == sdk[0]
    assert json.loads(fast[1]) == json.loads(sdk[1])


@pytest.mark.anyio
async def test_a_client_leaving_cancels_its_call_as_the_sdk_does() -> None:
    """A client that disconnects while its call waits for its commit gets nothing sent, through
    the fast path as through the SDK, and the session ends in the same state."""
    outcomes = []
    for fast_path in (True, False):
        async with open_app(fast_path, durability="commit") as app:
            created = await app.call("create_session", {})
            session_id = created["structuredContent"]["sessionId"]
            gate = app.store.faults.hold_writes()
            reply, context = await _held_exchange(app, gate, session_id, until_sse=False)
            assert app.fast_calls == (3 if fast_path else 0)
            assert reply.status is None
            assert reply.chunks == []
            outcomes.append(context["metadata"])
    assert outcomes[0] == outcomes[1]


def test_the_sse_fallbacks_are_the_sdks_values() -> None:
    """The SSE headers and ping interval kept for an SDK release that renames its private ones
    equal what the installed SDK uses, and the fast path uses the SDK's own."""
    assert http_fast_path.SSE_HEADERS_OF_MCP_2_3 == list(_streamable_http_modern._SSE_HEADERS)
    assert http_fast_path.SSE_PING_INTERVAL_OF_MCP_2_3 == _streamable_http_modern._SSE_PING_INTERVAL
    assert http_fast_path._SSE_HEADERS == list(_streamable_http_modern._SSE_HEADERS)
