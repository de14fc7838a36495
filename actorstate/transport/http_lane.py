"""The direct lane: the fast path's ``tools/call`` answered from the parsed HTTP request, before any ASGI layer.

A call that the fast path (:mod:`.http_fast_path`) answers still crosses
the ASGI chain in front of it: authentication (Starlette's
``AuthenticationMiddleware`` with the SDK's bearer backend), the auth
context, ``RequireAuthMiddleware``, the connection registry, the
protocol-session guard, then the fast path's own reading of the request (a
Starlette ``Request``, the Accept and transport-security checks, the body
through ``receive``) and a task per request that watches for the client
leaving. Profiled under 100 clients (memory mode, asyncio), the server
spent about 170 µs of CPU per call, most of it in that chain; the tool
call itself was about a tenth.

The HTTP server (:class:`.http_server.HttpServer`) offers each parsed
request to :meth:`DirectLane.take` first. The lane takes only a request
that the chain would hand, unchanged, to the fast path, which then takes
it; it asks the same objects the same questions, synchronously:

- ``POST /mcp`` (no query), and the fast path's routing headers (no
  ``Mcp-Session-Id``: the protocol-session guard passes such a request
  straight on);
- the SDK's transport checks, by the fast path's memo of their verdicts
  (:meth:`.HttpToolCallFastPath.transport_allows`), on the headers read in
  the same pass as the routing headers and the bearer token
  (:meth:`.HttpToolCallFastPath.scan_headers`);
- with authentication, a bearer token the verifier already verified under
  the tokens table loaded now (``verified_now``), not expired: the
  principal the chain would find. A token not verified yet, or a verifier
  without that cache (JWT), goes through the chain, which verifies it;
- the registry admitting it without a refusal
  (:meth:`.ConnectionRegistry.admit_quietly`); one that a limit would refuse
  goes through the chain, which refuses it and counts the refusal;
- the fast path's :meth:`~.HttpToolCallFastPath.take` of the body.

A taken call is registered, runs with the SDK's auth context set (as
``AuthContextMiddleware`` would), and is answered by the fast path
(:meth:`~.HttpToolCallFastPath.answer_directly`): the same bytes, SSE
window and pings included. Its client leaving cancels it (the connection
does). Everything else goes through the chain as before.
``tests/transport/test_http_lane.py`` sends the same raw requests to a
server with the lane and one without and compares the bytes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

from .caller import OPERATOR_SCOPE, OWNER, Caller, principal_key

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken
    from starlette.types import Send

    from .http_fast_path import HttpToolCallFastPath, TakenCall
    from .registry import ConnectionRegistry

__all__ = ["DirectLane", "LaneCall", "VerifiedTokens"]

MCP_PATH: Final = b"/mcp"
_BEARER_PREFIX_LENGTH: Final = len(b"bearer ")


@runtime_checkable
class VerifiedTokens(Protocol):
    """A verifier that can tell, without waiting, a token it verified under what is loaded now."""

    def verified_now(self, token: str) -> AccessToken | None: ...


class LaneCall:
    """A request the lane took: the fast path's call, its caller, and what the registry holds for it."""

    __slots__ = ("call", "caller", "principal", "user")

    def __init__(
        self, call: TakenCall, caller: Caller, principal: str, user: AuthenticatedUser | None
    ) -> None:
        self.call = call
        self.caller = caller
        self.principal = principal
        self.user = user


class DirectLane:
    """See the module docstring. ``verifier`` None: no authentication (the chain has none either),
    every caller is the process's owner under the registry's name ``local_principal``."""

    def __init__(
        self,
        fast_path: HttpToolCallFastPath,
        registry: ConnectionRegistry,
        *,
        verifier: VerifiedTokens | None,
        local_principal: str,
    ) -> None:
        self.fast_path = fast_path
        self.registry = registry
        self.verifier = verifier
        self.local_principal = local_principal
        self.calls = 0  # answered in the lane (also counted among the fast path's)

    def stats(self) -> dict[str, int]:
        """For ``server_stats``: the calls answered in the lane."""
        return {"direct_lane_calls": self.calls}

    def take(
        self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]], body: list[bytes]
    ) -> LaneCall | None:
        """The request's call, registered with the registry, if the lane answers it; else None,
        with nothing registered: the request goes through the ASGI chain."""
        if method != b"POST" or url != MCP_PATH:
            return None
        fast_path = self.fast_path
        scanned = fast_path.scan_headers(headers)
        if scanned is None or not fast_path.transport_allows(scanned.transport):
            return None
        user: AuthenticatedUser | None = None
        if self.verifier is None:
            caller, principal = OWNER, self.local_principal
        else:
            token = self._verified(scanned.authorization)
            if token is None:
                return None
            user = AuthenticatedUser(token)
            principal = principal_key(token)
            caller = Caller(principal, operator=OPERATOR_SCOPE in token.scopes)
        call = fast_path.take(body[0] if len(body) == 1 else b"".join(body), scanned.routing)
        if call is None or not self.registry.admit_quietly(principal):
            return None
        return LaneCall(call, caller, principal, user)

    def _verified(self, authorization: bytes | None) -> AccessToken | None:
        """The AccessToken the SDK's bearer backend would find for the request's first
        ``Authorization`` value, if the verifier knows it now."""
        assert self.verifier is not None
        if authorization is None or authorization[:_BEARER_PREFIX_LENGTH].lower() != b"bearer ":
            return None
        token = self.verifier.verified_now(authorization[_BEARER_PREFIX_LENGTH:].decode("latin-1"))
        if token is None or (token.expires_at and token.expires_at < int(time.time())):
            return None
        return token

    async def answer(self, taken: LaneCall, send: Send) -> None:
        """Run the taken call and send its reply; its registration ends with it."""
        self.calls += 1
        self.fast_path.calls += 1
        context: Any = auth_context_var.set(taken.user) if taken.user is not None else None
        try:
            await self.fast_path.answer_directly(taken.call, taken.caller, send)
        finally:
            if context is not None:
                auth_context_var.reset(context)
            self.registry.release(taken.principal)
