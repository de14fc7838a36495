"""The Host and Origin check of a loopback server, for its endpoints beside ``/mcp``.

A browser page may reach a server on loopback through a name of its own
that resolves to 127.0.0.1 (DNS rebinding), or post to it from another
site. The SDK checks ``/mcp`` (and the fast path does the same); the
operator's API, its page and the operations endpoints answer every
client's figures and sessions, and can end a session, so they get the same
check: a ``Host`` or ``Origin`` that is not loopback is refused (``421`` or
``403``) before any of them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RebindingGuard"]


class RebindingGuard:
    """ASGI middleware: HTTP requests whose ``Host`` or ``Origin`` ``security`` refuses are answered
    with its refusal; the rest go on to ``app``."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self._check = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # is_post=False: these endpoints take no JSON body, so no Content-Type is required.
            refusal = await self._check.validate_request(Request(scope), is_post=False)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
