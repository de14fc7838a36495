"""The HTTP connection registry: who is connected, what they have in flight, and the limits.

Every HTTP exchange with the MCP endpoint (a POST and its reply stream, a
GET stream, a DELETE) is registered from the moment its request arrives
until its response ends, under the principal its token names. The limits,
each answered before the request reaches the MCP server, with the status a
client and a load balancer understand and a message a person can act on:

- ``max_connections``: exchanges open at once, all principals together:
  past it, ``503 Service Unavailable`` with ``Retry-After``;
- ``max_in_flight``: requests in progress at once for one principal (a
  GET's event stream, which waits for the server rather than asking it
  anything, is not one): past it, ``429 Too Many Requests`` with
  ``Retry-After``;
- ``rate``: requests per second for one principal, a token bucket that
  holds ``burst`` requests: past it, ``429`` with the seconds until the
  next request would be taken.

A DELETE (a client ending its protocol session) is never refused by a
principal's limits: it frees what the limits protect.

A refusal is a JSON-RPC error body too, so an MCP client shows its text.
A principal's first request is logged at INFO on stderr, its exchanges
opening and closing at DEBUG, refusals at WARNING (once per principal per
second, so a client hammering the server does not flood the log).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from .refusals import refuse_request

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ConnectionRegistry", "PrincipalFigures", "RegistryLimits"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RegistryLimits:
    """The limits of an HTTP server; see the module docstring."""

    max_connections: int = 1000
    max_in_flight: int = 64
    rate: float = 200.0  # requests per second, per principal
    burst: int = 400

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_in_flight", "rate", "burst"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")


@dataclasses.dataclass
class _Principal:
    open: int = 0  # requests in flight (a GET's event stream is not one)
    exchanges: int = 0  # everything open, event streams included
    requests: int = 0
    refused: int = 0
    tokens: float = 0.0
    refilled_at: float = 0.0
    last_refusal_logged: float = -math.inf


class ConnectionRegistry:
    """The registry and its limits, as ASGI middleware in front of the MCP endpoint.

    ``principal_of`` names the principal of a request's scope (after
    authentication); ``clock`` is monotonic seconds (tests move it).
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: RegistryLimits,
        principal_of: Callable[[Scope], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.limits = limits
        self.principal_of = principal_of
        self.clock = clock
        self.open = 0
        self.refused_busy = 0
        self.principals: dict[str, _Principal] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = self.principal_of(scope)
        method = scope.get("method")
        counted = method != "GET"
        refusal = self._admit(name, counted=counted, limited=method != "DELETE")
        if refusal is not None:
            status, retry_after, message = refusal
            await refuse_request(receive, send, status, message, retry_after=retry_after)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.release(name, counted=counted)

    def admit_quietly(self, name: str) -> bool:
        """Register one request of ``name`` (counted and limited, as a POST) if no limit refuses it.

        Nothing is registered nor counted when one would: the caller sends the
        request through the middleware, which refuses it as usual. The HTTP
        server's direct lane (:mod:`.http_lane`) admits its requests here and
        ends them with :meth:`release`.
        """
        entry, _ = self._entry(name)
        if self._refusal(entry, counted=True, limited=True) is not None:
            return False
        self._register(name, entry, counted=True, limited=True)
        return True

    def release(self, name: str, *, counted: bool = True) -> None:
        """One exchange of ``name`` registered by :meth:`admit_quietly` (or the middleware) ended."""
        entry = self.principals[name]
        self.open -= 1
        entry.exchanges -= 1
        entry.open -= counted
        if entry.open == 0:
            logger.debug("HTTP: %s has no exchange open (%d requests so far)", name, entry.requests)

    def _admit(self, name: str, *, counted: bool, limited: bool) -> tuple[int, float, str] | None:
        """Register one exchange of ``name``, or the refusal: (status, Retry-After seconds, message).

        ``counted``: it counts toward the principal's requests in flight;
        ``limited``: the principal's limits apply to it.
        """
        entry, now = self._entry(name)
        refusal = self._refusal(entry, counted=counted, limited=limited)
        if refusal is not None:
            entry.refused += 1
            if refusal[0] == 503:
                self.refused_busy += 1
            if now - entry.last_refusal_logged >= 1.0:
                entry.last_refusal_logged = now
                logger.warning("HTTP: refused %s (%d): %s", name, refusal[0], refusal[2])
            return refusal
        self._register(name, entry, counted=counted, limited=limited)
        return None

    def _entry(self, name: str) -> tuple[_Principal, float]:
        """The principal's figures (made on its first request), its token bucket refilled to now."""
        now = self.clock()
        entry = self.principals.get(name)
        if entry is None:
            entry = self.principals[name] = _Principal(tokens=self.limits.burst, refilled_at=now)
            logger.info("HTTP: first request from %s", name)
        limits = self.limits
        entry.tokens = min(limits.burst, entry.tokens + (now - entry.refilled_at) * limits.rate)
        entry.refilled_at = now
        return entry, now

    def _refusal(self, entry: _Principal, *, counted: bool, limited: bool) -> tuple[int, float, str] | None:
        """What a limit answers to one more exchange of ``entry``'s principal now, or None."""
        limits = self.limits
        refusal: tuple[int, float, str] | None = None
        if self.open >= limits.max_connections:
            refusal = (
                503,
                1.0,
                f"the server has {self.open} HTTP exchanges open, its limit (--max-connections "
                f"{limits.max_connections}): retry in a second, or raise the limit",
            )
        elif not limited:
            pass
        elif counted and entry.open >= limits.max_in_flight:
            refusal = (
                429,
                1.0,
                f"you have {entry.open} requests in flight, the limit per client (--max-in-flight-per-client "
                f"{limits.max_in_flight}): wait for replies before sending more",
            )
        elif entry.tokens < 1:
            wait = (1 - entry.tokens) / limits.rate
            refusal = (
                429,
                wait,
                f"you are past {limits.rate:g} requests per second (--rate-limit; bursts of {limits.burst}): "
                f"retry in {max(wait, 0.01):.2f} s",
            )
        return refusal

    def _register(self, name: str, entry: _Principal, *, counted: bool, limited: bool) -> None:
        if limited:
            entry.tokens -= 1
        entry.requests += 1
        if entry.open == 0:
            logger.debug("HTTP: %s has an exchange open", name)
        entry.open += counted
        entry.exchanges += 1
        self.open += 1

    def stats(self) -> dict[str, Any]:
        """The figures ``server_stats`` shows: totals only (principals' names are not for every caller)."""
        return {
            "http_open": self.open,
            "http_max_connections": self.limits.max_connections,
            "http_clients_open": sum(1 for entry in self.principals.values() if entry.open),
            "http_clients_seen": len(self.principals),
            "http_requests": sum(entry.requests for entry in self.principals.values()),
            "http_refused": sum(entry.refused for entry in self.principals.values()),
            "http_refused_server_busy": self.refused_busy,
        }

    def principals_now(self) -> list[PrincipalFigures]:
        """Every principal seen, with its figures now (for operators' metrics: it names them)."""
        return [
            PrincipalFigures(name, entry.exchanges, entry.open, entry.requests, entry.refused)
            for name, entry in self.principals.items()
        ]


@dataclasses.dataclass(frozen=True, slots=True)
class PrincipalFigures:
    """One principal's exchanges open now, requests in flight now, requests taken and refused so far."""

    principal: str
    exchanges: int
    in_flight: int
    requests: int
    refused: int
