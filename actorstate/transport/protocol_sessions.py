"""The older protocol's sessions and event streams, by principal: a share each, and closing them.

The SDK's session manager holds the older protocol's sessions
(``initialize``, then requests under the ``Mcp-Session-Id`` it minted) and
their GET event streams. :class:`ProtocolSessionGuard`, ASGI middleware
between the connection registry and the MCP app, sees each of them open,
serve and end, and adds what the manager has no notion of:

- **a share per principal** (``max_per_principal``): the manager's cap
  (``--max-protocol-sessions``) is for all principals together, so one
  principal could take every session there is. Past its share, a request
  that would open another is answered ``429 Too Many Requests`` with the
  way out (end one, let one idle out, or speak 2026-07-28, which needs no
  protocol session); the others' sessions are unaffected.
- **revocation**: after the tokens are reloaded (SIGHUP,
  :meth:`close_revoked`), every event stream and protocol session opened
  with a token that no longer verifies is closed at once: a revoked token
  stops working everywhere, not only on its next request.
- **stop** (:meth:`begin_stop`): the event streams are closed at once and
  new ones refused, so streams that wait for the server do not hold up its
  stop for the whole grace period; requests in flight are still answered.

A session ends, as far as the share goes, when its principal's DELETE is
answered, a request of its principal under its id is answered 404 (the
manager ended it), it is closed here, or it has been idle (no request of
its principal in flight, no open stream) for the manager's idle timeout,
which is when the manager ends it too. Another principal's requests under
its id are the manager's to refuse (404, as for an unknown id) and change
nothing here: they could otherwise end its tracking (and so shield it from
revocation) or keep it from idling out.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from .authentication import ReloadableVerifier
from .limits import DEFAULT_MAX_PROTOCOL_SESSIONS_PER_CLIENT
from .refusals import refuse_request, send_refusal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ProtocolSessionGuard"]

logger = logging.getLogger(__name__)

_SESSION_HEADER = b"mcp-session-id"
_VERSION_HEADER = b"mcp-protocol-version"


@dataclasses.dataclass
class _Session:
    """One protocol session the manager minted: whose, with which credential, how busy."""

    principal: str
    token: str | None
    # The request that opened it: a DELETE built from it passes the manager's checks.
    scope: Scope
    in_flight: int = 0
    idle_since: float = 0.0


@dataclasses.dataclass(eq=False)  # kept in a set, by identity
class _Stream:
    """One open GET event stream."""

    principal: str
    token: str | None
    scope: anyio.CancelScope
    reason: str = ""


def _token_of(scope: Scope) -> str | None:
    user = scope.get("user")
    return user.access_token.token if isinstance(user, AuthenticatedUser) else None


class ProtocolSessionGuard:
    """See the module docstring. ``principal_of`` names a request's principal (as the registry's);
    ``idle_timeout`` is the manager's; ``clock`` is monotonic seconds."""

    def __init__(
        self,
        app: ASGIApp,
        principal_of: Callable[[Scope], str],
        *,
        max_per_principal: int = DEFAULT_MAX_PROTOCOL_SESSIONS_PER_CLIENT,
        idle_timeout: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_per_principal < 1:
            raise ValueError(f"the protocol sessions per client must be at least 1, not {max_per_principal}")
        self.app = app
        self.principal_of = principal_of
        self.max_per_principal = max_per_principal
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.sessions: dict[str, _Session] = {}
        self.opening: collections.Counter[str] = collections.Counter()
        self.streams: set[_Stream] = set()
        self.stopping = False
        self.refused = 0
        self.closed_revoked = 0

    # -- the middleware ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass over the headers: this runs for every request, the fast path's included.
        session_id = version = None
        for key, value in scope["headers"]:
            if key == _SESSION_HEADER:
                session_id = value.decode("latin-1")
            elif key == _VERSION_HEADER:
                version = value.decode("latin-1")
        if session_id is None:
            # The manager opens a protocol session for a POST without a session id that has no
            # protocol version header or one of the handshake's (2026-07-28's requests never do).
            if scope["method"] == "POST" and (version is None or version in HANDSHAKE_PROTOCOL_VERSIONS):
                await self._open(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        session = self.sessions.get(session_id)
        if session is not None and session.principal != self.principal_of(scope):
            # Another principal's request under this id: the manager answers it 404 without
            # touching the session, so it neither ends the session nor keeps it from idling out.
            session = None
        if scope["method"] == "GET":
            await self._stream(scope, receive, send, session)
            return
        if session is not None:
            session.in_flight += 1
        status = None

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            if session is not None:
                session.in_flight -= 1
                session.idle_since = self.clock()
            if session is not None and (
                status == 404 or (scope["method"] == "DELETE" and status is not None and status < 300)
            ):
                self.sessions.pop(session_id, None)

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = self.principal_of(scope)
        # Initializes not answered yet count too: concurrent ones cannot overshoot the share.
        held = self.held_by(principal) + self.opening[principal]
        if held >= self.max_per_principal:
            self.refused += 1
            logger.warning("HTTP: refused %s a protocol session: it holds %d", principal, held)
            await refuse_request(
                receive,
                send,
                429,
                f"you have {held} protocol sessions open, the limit per client "
                f"(--max-protocol-sessions-per-client {self.max_per_principal}): end one (DELETE), "
                f"let one idle out ({self.idle_timeout:g} s), or use protocol version 2026-07-28, "
                "which needs none",
            )
            return

        opening = True

        def done_opening() -> None:
            nonlocal opening
            if opening:
                opening = False
                self.opening[principal] -= 1
                if not self.opening[principal]:
                    del self.opening[principal]

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", ()) if message["status"] < 400 else ():
                    if key.lower() == _SESSION_HEADER:
                        self.sessions[value.decode("latin-1")] = _Session(
                            principal, _token_of(scope), scope, idle_since=self.clock()
                        )
                done_opening()
            await send(message)

        self.opening[principal] += 1
        try:
            await self.app(scope, receive, watched)
        finally:
            done_opening()

    async def _stream(self, scope: Scope, receive: Receive, send: Send, session: _Session | None) -> None:
        """Serve a GET event stream, which :meth:`begin_stop` and :meth:`close_revoked` may close."""
        if self.stopping:
            await refuse_request(receive, send, 503, "the server is stopping: reconnect to another, or later")
            return
        stream = _Stream(self.principal_of(scope), _token_of(scope), anyio.CancelScope())
        started = ended = False

        async def watched(message: Message) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                ended = True
            await send(message)

        self.streams.add(stream)
        if session is not None:
            session.in_flight += 1
        try:
            with stream.scope:
                await self.app(scope, receive, watched)
        finally:
            self.streams.discard(stream)
            if session is not None:
                session.in_flight -= 1
                session.idle_since = self.clock()
        if stream.scope.cancelled_caught:
            logger.info("HTTP: closed an event stream of %s: %s", stream.principal, stream.reason)
            # End the response properly, so the client sees the stream end rather than a broken one.
            with anyio.CancelScope(shield=True):
                if not started:
                    await send_refusal(send, 503, f"the event stream was closed: {stream.reason}")
                elif not ended:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- held, closed --------------------------------------------------------------------

    def held_by(self, principal: str) -> int:
        """The protocol sessions ``principal`` holds now (those idle past the timeout are gone)."""
        now = self.clock()
        expired = [
            session_id
            for session_id, session in self.sessions.items()
            if session.in_flight == 0 and now - session.idle_since >= self.idle_timeout
        ]
        for session_id in expired:
            del self.sessions[session_id]
        return sum(1 for session in self.sessions.values() if session.principal == principal)

    def begin_stop(self) -> None:
        """The server is stopping: close every event stream now and refuse new ones."""
        self.stopping = True
        for stream in list(self.streams):
            stream.reason = "the server is stopping"
            stream.scope.cancel()

    def close_when_revoked(self, verifier: object) -> None:
        """After each reload of ``verifier`` that took new credentials, :meth:`close_revoked`
        (nothing for a verifier that never reloads)."""
        if isinstance(verifier, ReloadableVerifier):
            checked = verifier
            checked.reloads.subscribe(lambda: self.close_revoked(checked.verify_token))

    async def close_revoked(self, verify: Callable[[str], Awaitable[object | None]]) -> int:
        """Close the streams and sessions whose token ``verify`` no longer accepts; how many.

        Called after the tokens were reloaded. A session is ended as its
        client would end it, by a DELETE under its id with the credential
        that opened it (so the manager's own checks pass and it forgets the
        session at once); its streams close with it.
        """
        tokens = {stream.token for stream in self.streams} | {s.token for s in self.sessions.values()}
        revoked = {token for token in tokens if token is not None and await verify(token) is None}
        if not revoked:
            return 0
        closed = 0
        for stream in list(self.streams):
            if stream.token in revoked:
                stream.reason = "its token was revoked"
                stream.scope.cancel()
                closed += 1
        ending = [(sid, session) for sid, session in self.sessions.items() if session.token in revoked]
        # Side by side: each ending may take up to its 10 s, and a principal may hold many.
        async with anyio.create_task_group() as group:
            for session_id, session in ending:
                group.start_soon(self._end_revoked, session_id, session)
        closed += len(ending)
        self.closed_revoked += closed
        logger.info("HTTP: closed %d event streams and protocol sessions of revoked tokens", closed)
        return closed

    async def _end_revoked(self, session_id: str, session: _Session) -> None:
        try:
            await self._end_session(session_id, session)
        except Exception:  # one failed ending must not keep the others open
            logger.exception("HTTP: ending the revoked protocol session %s failed", session_id[:64])

    async def _end_session(self, session_id: str, session: _Session) -> None:
        self.sessions.pop(session_id, None)
        kept = [
            (key, value)
            for key, value in session.scope.get("headers", ())
            if key not in (_SESSION_HEADER, b"content-length", b"content-type", b"transfer-encoding")
        ]
        scope = {
            **session.scope,
            "method": "DELETE",
            "headers": [*kept, (_SESSION_HEADER, session_id.encode())],
        }
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 300:
                logger.warning("HTTP: ending protocol session %s got %d", session_id[:64], message["status"])

        with anyio.CancelScope(shield=True), anyio.move_on_after(10.0):
            await self.app(scope, receive, send)

    def stats(self) -> dict[str, Any]:
        """The figures ``server_stats`` shows (totals only)."""
        return {
            "http_protocol_sessions": len(self.sessions),
            "http_protocol_sessions_per_client": self.max_per_principal,
            "http_protocol_sessions_refused": self.refused,
            "http_event_streams": len(self.streams),
            "http_closed_on_revocation": self.closed_revoked,
        }
