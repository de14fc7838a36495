"""The HTTP fast path for ``tools/call``: the plainest sessionless call, answered without the SDK's machinery.

A 2026-07-28 ``tools/call`` POST through the SDK's session manager costs
about a millisecond of CPU: the request is parsed and validated by pydantic
several times, a whole ``tools/list`` runs through the server on every call
with arguments (to validate ``Mcp-Param-*`` headers, which our tools never
declare), and the result is validated and serialised again; the tool call
itself is a few percent of it. :class:`HttpToolCallFastPath` sits in front
of the manager (after authentication and the connection registry) and takes
only the requests whose every detail it reproduces:

- ``POST``, no ``Mcp-Session-Id``, no ``Mcp-Param-*`` header, each routing
  header (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``) once, the
  version one whose result shape is reproduced here, ``Mcp-Method:
  tools/call``, a body no longer than the manager's limit;
- the SDK's own checks passing: transport security (Content-Type, Host,
  Origin: :class:`~mcp.server.transport_security.TransportSecurityMiddleware`
  with the manager's settings), the ``Accept`` rule
  (:func:`~mcp.server.streamable_http.check_accept_headers`), the envelope
  and routing headers (:func:`~mcp.shared.inbound.classify_inbound_request`);
- a body that is one JSON object of exactly ``jsonrpc`` "2.0", an int or
  str ``id``, ``method`` "tools/call" and ``params`` of ``name`` (a string),
  ``arguments`` (an object, or absent) and ``_meta`` of exactly the three
  envelope keys, which the SDK's request models accept (checked by them,
  once per distinct envelope: a client sends the same one every time);
- a tool whose input schema declares no ``x-mcp-header``.

Anything else (a ``progressToken`` or log-level opt-in, other keys, batches,
notifications, older protocol versions and their sessions, anything the SDK
would refuse) is replayed to the SDK, body included, which stays the source
of truth. A taken call runs :func:`.tools.call_tool` for the request's
caller (:func:`.server.caller_of`, as the SDK path does) and is answered as
the SDK's modern path answers: a JSON reply once the call is done, or, if it
runs past the SDK's window, an SSE stream with keep-alive pings; a client
disconnecting cancels the call. ``tests/transport/test_http_fast_path``
drives the same requests through the app with the fast path on and off and
compares the replies.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import anyio
import orjson
import sniffio
from mcp.server.runner import modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PARAM_HEADER_PREFIX,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundModernRoute,
    classify_inbound_request,
    x_mcp_header_map,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)
from mcp_types import methods as sdk_methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request

from .left_to_the_sdk import left_to_the_sdk
from .server import caller_of
from .tools import ToolError, call_tool

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from mcp.server.lowlevel import Server
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .caller import Caller
    from .tools import ToolContext

# How the SDK's modern path answers past its window: an SSE stream, pinged
# every 15 s. Its own (private) values when it has them, so the two paths
# cannot drift apart; these, mcp 2.3's, when a release renames them
# (tests/transport/test_http_fast_path checks they still agree).
SSE_PING_INTERVAL_OF_MCP_2_3 = 15.0
SSE_HEADERS_OF_MCP_2_3 = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]
try:
    from mcp.server import _streamable_http_modern as _sdk_modern

    _SSE_HEADERS: list[tuple[bytes, bytes]] = list(_sdk_modern._SSE_HEADERS)
    _SSE_PING_INTERVAL: float = _sdk_modern._SSE_PING_INTERVAL
except (ImportError, AttributeError):  # a later SDK release
    _SSE_HEADERS, _SSE_PING_INTERVAL = SSE_HEADERS_OF_MCP_2_3, SSE_PING_INTERVAL_OF_MCP_2_3

__all__ = ["FAST_MODERN_VERSIONS", "HttpToolCallFastPath"]

# The modern versions whose tools/call result shape is reproduced here
# (content, isError, resultType, structuredContent, the serverInfo stamp).
FAST_MODERN_VERSIONS: Final = frozenset({"2026-07-28"}) & frozenset(MODERN_PROTOCOL_VERSIONS)

_REQUEST_KEYS: Final = frozenset({"jsonrpc", "id", "method", "params"})
_PARAMS_KEYS: Final = frozenset({"name", "arguments", "_meta"})
_ENVELOPE_KEYS: Final = frozenset(
    {PROTOCOL_VERSION_META_KEY, CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY}
)
# Envelopes the SDK's ladder and models accepted (by their bytes, with the
# tool's name and the routing headers); at most this many remembered (then
# forgotten all at once), each at most this long.
_ENVELOPE_CACHE_SIZE: Final = 1024
_ENVELOPE_MAX_BYTES: Final = 4096

_SESSION_HEADER: Final = b"mcp-session-id"
_VERSION_HEADER: Final = MCP_PROTOCOL_VERSION_HEADER.encode()
_METHOD_HEADER: Final = MCP_METHOD_HEADER.encode()
_NAME_HEADER: Final = MCP_NAME_HEADER.encode()
_PARAM_PREFIX: Final = MCP_PARAM_HEADER_PREFIX.lower().encode()
_CONTENT_LENGTH: Final = b"content-length"


class TakenCall:
    """A ``tools/call`` the fast path took."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self, request_id: int | str, name: str, arguments: dict[str, Any] | None) -> None:
        self.id = request_id
        self.name = name
        self.arguments = arguments


class _RequestContext:
    """What :func:`.server.caller_of` reads of the SDK's request context: the HTTP request."""

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request


class _Exchange:
    """One taken call's reply: done yet, committed to SSE yet, and what orders the sends once it may be."""

    __slots__ = ("done", "error", "lock", "pinger", "sse")

    def __init__(self) -> None:
        self.done = False
        self.sse = False
        self.lock: anyio.Lock | None = None  # made when the SSE window elapses
        self.pinger: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    def raise_ping_failure(self) -> None:
        """Raise a failed ping's exception, if one failed."""
        pinger = self.pinger
        if pinger is not None and pinger.done() and not pinger.cancelled():
            pinger.result()

    async def finish(self, send: Send, reply: bytes) -> None:
        """Send the reply: the JSON response, or the SSE stream's last event once it went SSE."""
        self.done = True
        if self.lock is None:
            await _send_json(send, reply)
            return
        async with self.lock:  # a ping being sent finishes first
            if self.sse:
                event = b"event: message\r\ndata: " + reply + b"\r\n\r\n"
                await send({"type": "http.response.body", "body": event, "more_body": False})
            else:
                await _send_json(send, reply)


class ScannedHeaders:
    """What :meth:`HttpToolCallFastPath.scan_headers` read of a request's headers."""

    __slots__ = ("authorization", "routing", "transport")

    def __init__(
        self, routing: dict[str, str], transport: tuple[bytes | None, ...], authorization: bytes | None
    ) -> None:
        self.routing = routing
        self.transport = transport  # accept, content-type, host, origin
        self.authorization = authorization


class HttpToolCallFastPath:
    """ASGI middleware in front of the SDK's session manager (``app``); see the module docstring.

    ``server`` is the SDK server the manager serves (its request models,
    its serverInfo stamp); ``security_settings``, ``json_response`` and
    ``max_body_size`` are the manager's.
    """

    def __init__(
        self,
        app: ASGIApp,
        context: ToolContext,
        server: Server[Any],
        *,
        security_settings: TransportSecuritySettings | None,
        json_response: bool,
        max_body_size: int,
    ) -> None:
        self.app = app
        self._context = context
        self._security = TransportSecurityMiddleware(security_settings)
        self._json_response = json_response
        self._max_body_size = max_body_size
        entry = server.get_request_handler("tools/call")
        self._params_type = entry.params_type if entry is not None else None
        self._server_info = server.server_info_stamp
        # Tools whose schema names an Mcp-Param header: the SDK checks those headers against the arguments.
        self._header_tools = frozenset(
            name for name, tool in context.tools.items() if x_mcp_header_map(tool.input_schema)
        )
        self._envelopes: set[tuple[bytes, str, str | None, str | None, str | None]] = set()
        self._windows = _Windows()  # the SSE windows of the calls answered on asyncio
        # The SDK's transport verdicts, by the headers they read (see transport_allows).
        self._transport_verdicts: dict[tuple[bytes | None, ...], bool] = {}
        self.calls = 0  # answered here
        context.add_stats(lambda: {"fast_path_calls": self.calls})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self._params_type is None:
            await self.app(scope, receive, send)
            return
        routing = self.routing_headers(scope["headers"])
        if routing is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        has_json, has_sse = check_accept_headers(request)
        if (
            not has_json
            or not (self._json_response or has_sse)
            or await self._security.validate_request(request, is_post=True) is not None
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = await self._read_body(receive, messages)
        call = self.take(body, routing) if body is not None else None
        if call is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        self.calls += 1
        await self._answer(call, request, receive, send)

    # -- taking --------------------------------------------------------------------------

    def routing_headers(self, headers: list[tuple[bytes, bytes]]) -> dict[str, str] | None:
        """The routing headers of a request the fast path may take (by its headers alone), else None."""
        scanned = self.scan_headers(headers)
        return None if scanned is None else scanned.routing

    def scan_headers(self, headers: list[tuple[bytes, bytes]]) -> ScannedHeaders | None:
        """One pass over a request's headers: None if the fast path may not take it by its headers
        alone; else its routing headers, and the first values of those the SDK's transport checks
        and bearer authentication read (the direct lane asks them without another pass)."""
        routing: dict[str, str] = {}
        accept = content_type = host = origin = authorization = None
        for name, value in headers:
            if name in (_VERSION_HEADER, _METHOD_HEADER, _NAME_HEADER):
                key = name.decode()
                if key in routing:
                    return None  # the SDK refuses a routing header given twice
                routing[key] = value.decode("latin-1")
            elif name == _SESSION_HEADER or name.startswith(_PARAM_PREFIX):
                return None
            elif name == _CONTENT_LENGTH:
                try:
                    if int(value) > self._max_body_size:
                        return None  # 413, by the SDK
                except ValueError:
                    pass
            elif name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"accept":
                accept = value if accept is None else accept
            elif name == b"content-type":
                content_type = value if content_type is None else content_type
            elif name == b"host":
                host = value if host is None else host
            elif name == b"origin":
                origin = value if origin is None else origin
        if (
            routing.get(MCP_PROTOCOL_VERSION_HEADER) not in FAST_MODERN_VERSIONS
            or routing.get(MCP_METHOD_HEADER) != "tools/call"
            or MCP_NAME_HEADER not in routing
        ):
            return None
        return ScannedHeaders(routing, (accept, content_type, host, origin), authorization)

    async def _read_body(self, receive: Receive, messages: list[Message]) -> bytes | None:
        """The request's body, each message read kept in ``messages``; None when too long or cut short."""
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None
            size += len(message.get("body", b""))
            if size > self._max_body_size:
                return None
            if not message.get("more_body", False):
                break
        if len(messages) == 1:
            body: bytes = messages[0].get("body", b"")
            return body
        return b"".join(message.get("body", b"") for message in messages)

    def take(self, body: bytes, routing: dict[str, str]) -> TakenCall | None:
        """The call in ``body`` if the fast path answers it exactly as the SDK would, else None."""
        # The SDK refuses a body past its limit (413). The HTTP server's own limit may be
        # higher, and its direct lane hands bodies here unread by _read_body. A server
        # without tools/call, and what the SDK reads otherwise than orjson (a run of 19
        # digits, deep nesting: see .left_to_the_sdk): the SDK decides.
        if len(body) > self._max_body_size or self._params_type is None:
            return None
        if left_to_the_sdk(body):
            return None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # the SDK's parser decides what is wrong with it
        if type(document) is not dict or document.keys() != _REQUEST_KEYS:
            return None
        if document["jsonrpc"] != "2.0" or document["method"] != "tools/call":
            return None
        request_id = document["id"]
        if type(request_id) is not int and type(request_id) is not str:
            return None
        params = document["params"]
        if type(params) is not dict or not params.keys() <= _PARAMS_KEYS or "_meta" not in params:
            return None
        name = params.get("name")
        arguments = params.get("arguments")
        if type(name) is not str or (arguments is not None and type(arguments) is not dict):
            return None
        if name in self._header_tools:
            return None
        meta = params["_meta"]
        if type(meta) is not dict or meta.keys() != _ENVELOPE_KEYS:
            return None
        if not self._envelope_accepted(document, name, meta, routing):
            return None
        return TakenCall(request_id, name, arguments)

    def _envelope_accepted(
        self, document: dict[str, Any], name: str, meta: dict[str, Any], routing: dict[str, str]
    ) -> bool:
        """Whether the SDK's routing ladder and request models accept this call's envelope and headers.

        Both are pure functions of the envelope, the tool's name and the
        routing headers (the method is ``tools/call`` here), and a client
        sends the same envelope every time: their verdict is remembered by
        those, the envelope by its bytes.
        """
        try:
            envelope = orjson.dumps(meta)
        except TypeError:
            return False
        if len(envelope) > _ENVELOPE_MAX_BYTES:
            return False
        key = (
            envelope,
            name,
            routing.get(MCP_PROTOCOL_VERSION_HEADER),
            routing.get(MCP_METHOD_HEADER),
            routing.get(MCP_NAME_HEADER),
        )
        if key in self._envelopes:
            return True
        route = classify_inbound_request(document, headers=routing)
        if not isinstance(route, InboundModernRoute) or not self._envelope_valid(
            route.protocol_version, meta
        ):
            return False
        if len(self._envelopes) >= _ENVELOPE_CACHE_SIZE:
            self._envelopes.clear()
        self._envelopes.add(key)
        return True

    def _envelope_valid(self, version: str, meta: dict[str, Any]) -> bool:
        """Whether the SDK's request models accept a ``tools/call`` carrying the envelope ``meta``."""
        params = {"name": "", "_meta": meta}
        try:
            sdk_methods.validate_client_request("tools/call", version, params)
            assert self._params_type is not None
            self._params_type.model_validate(params, by_name=False)
        except (ValidationError, KeyError, ValueError):
            return False
        return True

    # -- answering -----------------------------------------------------------------------

    async def _answer(self, call: TakenCall, request: Request, receive: Receive, send: Send) -> None:
        """Run the call and send its reply as the SDK's modern path would.

        As there: a reply within the SSE window is one JSON body; past it the
        response commits to ``text/event-stream`` with keep-alive pings, and
        the reply is its last event; a client disconnecting cancels the call.
        On asyncio with a plain task and a timer (an anyio task group per
        request cost a quarter of the server's time per call); elsewhere in a
        task group.
        """
        if sniffio.current_async_library() == "asyncio":
            await self._answer_on_asyncio(call, request, receive, send)
            return
        exchange = _Exchange()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_when_client_leaves, receive, tg.cancel_scope)
            tg.start_soon(_sse_after_window, send, exchange)
            await exchange.finish(send, await self._reply(call, caller_of(_RequestContext(request))))
            tg.cancel_scope.cancel()

    async def _answer_on_asyncio(
        self, call: TakenCall, request: Request, receive: Receive, send: Send
    ) -> None:
        loop = asyncio.get_running_loop()
        exchange = _Exchange()
        with anyio.CancelScope() as scope:
            watcher = loop.create_task(_until_disconnect(receive))

            def client_left(task: asyncio.Task[None]) -> None:
                if not task.cancelled():
                    exchange.error = task.exception()
                    scope.cancel()

            watcher.add_done_callback(client_left)
            try:
                await self._windows.within(
                    exchange, send, self._reply(call, caller_of(_RequestContext(request)))
                )
            finally:
                watcher.remove_done_callback(client_left)
                watcher.cancel()
        if exchange.error is not None:
            raise exchange.error  # receive failed: the SDK's watcher would have raised it
        exchange.raise_ping_failure()

    async def answer_directly(self, call: TakenCall, caller: Caller, send: Send) -> None:
        """Answer a call taken by the HTTP server's direct lane (:mod:`.http_lane`).

        As :meth:`_answer`, less its watch of the client: the connection
        cancels the lane's call itself when its client leaves.
        """
        exchange = _Exchange()
        if sniffio.current_async_library() == "asyncio":
            await self._windows.within(exchange, send, self._reply(call, caller))
            exchange.raise_ping_failure()
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(_sse_after_window, send, exchange)
            await exchange.finish(send, await self._reply(call, caller))
            tg.cancel_scope.cancel()

    def transport_allows(self, transport: tuple[bytes | None, ...]) -> bool:
        """Whether the SDK's transport checks pass a POST whose ``accept``, ``content-type``,
        ``host`` and ``origin`` are ``transport`` (:attr:`ScannedHeaders.transport`), as in
        :meth:`__call__`.

        The ``Accept`` rule and transport security read only those four
        headers (each its first value, as Starlette's ``Headers.get``), and a
        client sends the same ones every time: the verdict of the SDK's own
        functions is remembered by those four values.
        """
        verdict = self._transport_verdicts.get(transport)
        if verdict is None:
            if len(self._transport_verdicts) >= _ENVELOPE_CACHE_SIZE:
                self._transport_verdicts.clear()
            verdict = self._transport_verdicts[transport] = self._sdk_transport_verdict(transport)
        return verdict

    def _sdk_transport_verdict(self, key: tuple[bytes | None, ...]) -> bool:
        names = (b"accept", b"content-type", b"host", b"origin")
        request = Request(
            {
                "type": "http",
                "method": "POST",
                "headers": [
                    (name, value) for name, value in zip(names, key, strict=True) if value is not None
                ],
            }
        )
        has_json, has_sse = check_accept_headers(request)
        if not has_json or not (self._json_response or has_sse):
            return False
        # validate_request is a coroutine that awaits nothing: run to its end here.
        check = self._security.validate_request(request, is_post=True)
        try:
            check.send(None)
        except StopIteration as done:
            return done.value is None
        check.close()
        return False

    async def _reply(self, call: TakenCall, caller: Caller) -> bytes:
        """The call's JSON-RPC reply, as the SDK's server shapes it."""
        try:
            result = await call_tool(self._context, call.name, call.arguments, caller)
        except ToolError as error:
            body: dict[str, Any] = {
                "content": [{"text": str(error), "type": "text"}],
                "isError": True,
                "resultType": "complete",
                "_meta": {SERVER_INFO_META_KEY: self._server_info},
            }
        except Exception as exc:
            error_data = modern_error_data(exc)  # logs it, as the SDK does
            return _encode(
                {
                    "jsonrpc": "2.0",
                    "id": call.id,
                    "error": error_data.model_dump(mode="json", exclude_none=True),
                }
            )
        else:
            body = {
                "content": [{"text": result.text, "type": "text"}],
                "isError": False,
                "resultType": "complete",
                "structuredContent": result.structured,
                "_meta": {SERVER_INFO_META_KEY: self._server_info},
            }
        return _encode({"jsonrpc": "2.0", "id": call.id, "result": body})


class _Windows:
    """The SSE windows of the calls being answered on asyncio, under one timer.

    A timer of its own per call (``call_later`` and its cancel) cost about
    3 µs, a fortieth of a lane call's CPU. One timer looks at the open
    windows, oldest first, every tenth of a window while any is open: a call
    still running at the end of its window begins its SSE stream at most a
    tenth of a window late (15 to 16.5 s after it began, for the SDK's 15 s).
    """

    def __init__(self) -> None:
        # Insertion order is deadline order: every window is as long.
        self.open: dict[_Exchange, tuple[float, Send]] = {}
        self.timer: asyncio.TimerHandle | None = None

    async def within(self, exchange: _Exchange, send: Send, reply: Awaitable[bytes]) -> None:
        """Send ``reply`` once it is ready: a JSON response within the SSE window, else the last
        event of the SSE stream the window's end began, pinged meanwhile."""
        loop = asyncio.get_running_loop()
        self.open[exchange] = (loop.time() + _SSE_PING_INTERVAL, send)
        if self.timer is None:
            self.timer = loop.call_later(_SSE_PING_INTERVAL / 10, self._look, loop)
        try:
            await exchange.finish(send, await reply)
        finally:
            exchange.done = True
            self.open.pop(exchange, None)
            if exchange.pinger is not None:
                exchange.pinger.cancel()

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        now = loop.time()
        while self.open:
            exchange, (deadline, send) = next(iter(self.open.items()))
            if deadline > now:
                break
            del self.open[exchange]
            exchange.pinger = loop.create_task(_sse_pings(send, exchange))
        if self.open:
            self.timer = loop.call_later(_SSE_PING_INTERVAL / 10, self._look, loop)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _cancel_when_client_leaves(receive: Receive, scope: anyio.CancelScope) -> None:
    await _until_disconnect(receive)
    scope.cancel()


async def _sse_after_window(send: Send, exchange: _Exchange) -> None:
    await anyio.sleep(_SSE_PING_INTERVAL)
    await _sse_pings(send, exchange)


async def _sse_pings(send: Send, exchange: _Exchange) -> None:
    """Once the SSE window elapsed with the call running: commit to SSE, then ping every interval."""
    if exchange.lock is None:
        exchange.lock = anyio.Lock()
    while True:
        async with exchange.lock:
            if exchange.done:
                return
            if not exchange.sse:
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                exchange.sse = True
            await send({"type": "http.response.body", "body": b": ping\r\n\r\n", "more_body": True})
        await anyio.sleep(_SSE_PING_INTERVAL)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` with the messages already read from it first."""
    pending = deque(messages)

    async def replay() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replay


def _encode(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message)
    except TypeError:  # an integer past 64 bits, which orjson does not write
        return json.dumps(message, separators=(",", ":")).encode()


async def _send_json(send: Send, body: bytes) -> None:
    """A 200 JSON response with the headers Starlette's ``Response`` (the SDK's) sends."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
