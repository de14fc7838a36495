"""Streamable HTTP: the session tools for many clients, each seeing only its own sessions.

The app is the SDK's Streamable HTTP session manager, which serves both
protocol generations on one endpoint (``/mcp``): 2026-07-28's sessionless
requests (one self-contained POST per request, no ``Mcp-Session-Id``) and
the older protocol sessions (``initialize``, then requests under the
session id it minted). The state session a tool call names by
``sessionId`` is independent of either: a client that reconnects, or moves
from the older protocol to the new one, keeps using its state sessions.

In front of the manager, outermost first: the SDK's bearer authentication
(``AuthenticationMiddleware`` with our verifier, then the request's
principal in a context variable), the SDK's ``RequireAuthMiddleware``
(``401`` with ``WWW-Authenticate``, naming the protected-resource
metadata when an authorization server is configured), then the connection
registry (:mod:`.registry`: limits per principal and in all), then the
older protocol's sessions and event streams (:mod:`.protocol_sessions`: a
share per principal, closed on revocation and at a stop), then the
``tools/call`` fast path (:mod:`.http_fast_path`: the plainest sessionless
call answered without the SDK's machinery, everything else passed on). The
tools take the caller from the authenticated request
(:func:`.server.caller_of`).

Without a verifier the server listens on loopback only: whoever can reach
it owns the process, as over stdio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route

from .addresses import is_loopback
from .caller import principal_key
from .http_fast_path import HttpToolCallFastPath
from .http_lane import DirectLane, VerifiedTokens
from .http_server import HttpServer
from .limits import DEFAULT_MAX_PROTOCOL_SESSIONS, DEFAULT_MAX_PROTOCOL_SESSIONS_PER_CLIENT
from .operations import Operations, OperationsSettings, starlette_routes
from .protocol_sessions import ProtocolSessionGuard
from .rebinding import RebindingGuard
from .registry import ConnectionRegistry, RegistryLimits
from .server import build_server
from .tools import ToolContext

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcp.server.auth.provider import TokenVerifier
    from starlette.types import Receive, Scope, Send

    from ..state import State
    from .signals import StopSignals

__all__ = ["HttpSettings", "check_listen_address", "serve_http"]

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
LISTEN_BACKLOG = 4096
KEEP_ALIVE_TIMEOUT = 75.0
# The principal of every request on a server without authentication.
LOCAL_OWNER = "local"


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    """Where and how ``actorstate serve --http`` listens.

    ``verifier`` authenticates bearer tokens (None: no authentication,
    loopback only). ``public_url`` is the endpoint as clients reach it (the
    protected resource's identifier; default ``http://HOST:PORT/mcp``).
    ``authorization_servers``, when given, are listed in the
    protected-resource metadata that 401 replies point to.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    verifier: TokenVerifier | None = None
    public_url: str | None = None
    authorization_servers: tuple[str, ...] = ()
    limits: RegistryLimits = dataclasses.field(default_factory=RegistryLimits)
    # Seconds a request in flight gets to finish after a stop signal.
    graceful_timeout: float = 10.0
    # Answer the plainest sessionless tools/call without the SDK's machinery
    # (see .http_fast_path); off: every request through the SDK.
    fast_path: bool = True
    # ...and answer what the fast path takes straight from the parsed
    # request, before the ASGI chain (see .http_lane); off: through it.
    direct_lane: bool = True
    # The older protocol's sessions (initialize, then Mcp-Session-Id) held at
    # once, and how long an idle one is kept: each holds about 40 KB, and one
    # principal could otherwise open them until memory runs out. Past the
    # cap, an initialize is answered 503 until one ends or idles out.
    max_protocol_sessions: int = DEFAULT_MAX_PROTOCOL_SESSIONS
    protocol_session_idle_timeout: float = 600.0
    # ...and by one principal (429 past it; see .protocol_sessions).
    max_protocol_sessions_per_client: int = DEFAULT_MAX_PROTOCOL_SESSIONS_PER_CLIENT
    # /healthz, /readyz (and the drain before a stop), /metrics: see .operations.
    operations: OperationsSettings = dataclasses.field(default_factory=OperationsSettings)


def check_listen_address(settings: HttpSettings) -> None:
    """Refuse to listen beyond loopback without authentication.

    Error handling:
        ValueError: naming the flag that would make it safe.
    """
    if settings.verifier is None and not is_loopback(settings.host):
        raise ValueError(
            f"refusing to serve HTTP on {settings.host} without authentication: anyone who can reach it "
            "would own every session. Give --tokens-file PATH (see `actorstate tokens add`) or "
            "--jwt-key / --jwt-jwks, or listen on 127.0.0.1"
        )


def principal_of(scope: Scope) -> str:
    """The principal key of an authenticated request, or the local owner without authentication."""
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser):
        return principal_key(user.access_token)
    return LOCAL_OWNER


def build_http_app(
    state: State,
    context: ToolContext,
    settings: HttpSettings,
    public_url: str,
    operations: Operations | None = None,
) -> tuple[HttpApp, ConnectionRegistry]:
    """The ASGI app for ``state`` and the registry in it (its figures join ``server_stats``).

    ``operations`` answers ``/healthz``, ``/readyz`` and ``/metrics`` (one of
    its own when None).
    """
    server = build_server(state, context)
    security = None
    if is_loopback(settings.host):
        # A browser page must not reach a loopback server through a name that
        # resolves there (DNS rebinding): only loopback Host and Origin pass,
        # the address it listens on among them (127.0.0.2 is loopback too).
        hosts = ["127.0.0.1", "localhost", "[::1]"]
        bound = f"[{settings.host}]" if ":" in settings.host else settings.host
        if bound not in hosts:
            hosts.append(bound)
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f"{host}:*" for host in hosts],
            allowed_origins=[f"http://{host}:*" for host in hosts],
        )
    manager = StreamableHTTPSessionManager(
        app=server,
        security_settings=security,
        max_sessions=settings.max_protocol_sessions,
        session_idle_timeout=settings.protocol_session_idle_timeout,
    )
    mcp_app: Any = StreamableHTTPASGIApp(manager)
    fast_path = None
    if settings.fast_path:
        mcp_app = fast_path = HttpToolCallFastPath(
            mcp_app,
            context,
            server,
            security_settings=security,
            json_response=manager.json_response,
            max_body_size=manager.max_request_body_size,
        )
    # The older protocol's sessions and streams: a share per principal, closed when their
    # token is revoked or the server stops.
    protocol_sessions = ProtocolSessionGuard(
        mcp_app,
        principal_of,
        max_per_principal=settings.max_protocol_sessions_per_client,
        idle_timeout=settings.protocol_session_idle_timeout,
    )
    protocol_sessions.close_when_revoked(settings.verifier)
    context.add_stats(protocol_sessions.stats)
    registry = ConnectionRegistry(protocol_sessions, settings.limits, principal_of)
    context.add_stats(registry.stats)
    lane = None
    # The lane answers for the chain only where it can ask the same questions without
    # waiting: no authentication, or a verifier that remembers the tokens it verified.
    verifier: Any = settings.verifier
    if (
        fast_path is not None
        and settings.direct_lane
        and (verifier is None or isinstance(verifier, VerifiedTokens))
    ):
        lane = DirectLane(fast_path, registry, verifier=verifier, local_principal=LOCAL_OWNER)
        context.add_stats(lane.stats)
    if operations is None:
        operations = Operations(
            state, context, settings.operations, authentication=settings.verifier is not None
        )
    operations.watch_registry(registry)
    # Beside the registry, not behind it: a probe is never refused nor counted as a client.
    routes: list[Route] = starlette_routes(operations)
    middleware: list[Middleware] = []
    endpoint: Any = registry
    if settings.verifier is not None:
        metadata_url = None
        if settings.authorization_servers:
            routes += create_protected_resource_routes(
                resource_url=AnyHttpUrl(public_url),
                authorization_servers=[AnyHttpUrl(url) for url in settings.authorization_servers],
            )
            metadata_url = build_resource_metadata_url(AnyHttpUrl(public_url))
        middleware = [
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(settings.verifier)),
            Middleware(AuthContextMiddleware),
        ]
        endpoint = RequireAuthMiddleware(registry, [], metadata_url)
    routes.append(Route(MCP_PATH, endpoint=endpoint))
    if security is not None:
        # The operator's API and page and /metrics show (and end) every client's sessions:
        # the same Host and Origin check as /mcp's, first.
        middleware.insert(0, Middleware(RebindingGuard, security=security))
    others = Starlette(routes=routes, middleware=middleware, lifespan=lambda app: manager.run())
    if settings.verifier is not None:
        endpoint = AuthenticationMiddleware(
            AuthContextMiddleware(endpoint), backend=BearerAuthBackend(settings.verifier)
        )
    return HttpApp(endpoint, others, protocol_sessions, lane), registry


class HttpApp:
    """The ASGI app: requests to ``/mcp`` straight to its chain, the rest through Starlette's router.

    The same middleware either way (authentication, then the registry and
    the fast path); the direct route skips Starlette's error and routing
    layers, which cost about a tenth of a fast-path call's CPU. ``lifespan``
    runs the session manager. ``lane``: the direct lane for the HTTP server
    to offer requests to before this app (see :mod:`.http_lane`), or None.
    """

    def __init__(
        self, mcp: Any, others: Starlette, protocol_sessions: ProtocolSessionGuard, lane: DirectLane | None
    ) -> None:
        self.mcp = mcp
        self.others = others
        self.protocol_sessions = protocol_sessions
        self.lane = lane

    def begin_stop(self) -> None:
        """The server is stopping: event streams close now, so they do not hold up the stop."""
        self.protocol_sessions.begin_stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == MCP_PATH:
            await self.mcp(scope, receive, send)
        else:
            await self.others(scope, receive, send)

    def lifespan(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.others.router.lifespan_context(self.others)


def _listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound here so its port is known (``--http 127.0.0.1:0`` picks one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


async def serve_http(
    state: State,
    settings: HttpSettings,
    *,
    signals: StopSignals | None = None,
    on_listening: Callable[[str], None] | None = None,
    stop: anyio.Event | None = None,
) -> None:
    """Serve MCP over Streamable HTTP until a stop signal or cancellation.

    A stop signal (or ``stop`` being set) stops accepting connections, lets
    the requests in flight finish (up to ``graceful_timeout``), then
    returns; the caller closes the state, which commits everything. A second
    signal stops at once. ``on_listening`` gets the endpoint's URL once the
    socket listens.

    Error handling:
        ValueError: the address is refused (see :func:`check_listen_address`) or taken.
    """
    check_listen_address(settings)
    sock = _listening_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    public_url = settings.public_url or f"http://{shown_host}:{port}{MCP_PATH}"
    context = ToolContext(state)
    operations = Operations(state, context, settings.operations, authentication=settings.verifier is not None)
    app, _ = build_http_app(state, context, settings, public_url, operations)
    server = HttpServer(
        app,
        max_body=DEFAULT_MAX_REQUEST_BODY_SIZE,
        keep_alive_timeout=KEEP_ALIVE_TIMEOUT,
        graceful_timeout=settings.graceful_timeout,
        backlog=LISTEN_BACKLOG,
        lane=app.lane,
    )
    stopping = stop or anyio.Event()

    async def stop_on_request() -> None:
        await stopping.wait()
        app.begin_stop()
        await operations.drain()  # /readyz answers 503 while requests are still taken
        server.stop()

    with anyio.CancelScope() as serving:
        with signals.serving(stopping.set, serving.cancel) if signals else contextlib.nullcontext():
            # The app's lifespan (the session manager's task group) wraps the
            # server: protocol sessions end after the last connection does.
            async with app.lifespan(), anyio.create_task_group() as group:
                group.start_soon(stop_on_request)
                logger.info(
                    "serving MCP over HTTP at %s (%s)",
                    public_url,
                    "bearer tokens required" if settings.verifier else "no authentication: loopback only",
                )
                if on_listening is not None:
                    on_listening(public_url)
                await server.serve(sock)
                group.cancel_scope.cancel()
