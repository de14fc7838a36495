"""What operators and their tools ask of a server: health, readiness, metrics.

- ``GET /healthz``: ``200`` while the process serves (a liveness probe);
- ``GET /readyz``: ``200`` when the store answers a cheap question through
  its worker (its size) and the server is not draining, else ``503`` with
  the reason (a readiness probe: a load balancer sends traffic only here);
- ``GET /metrics``: the Prometheus metrics (:mod:`.metrics`).

On the HTTP server they sit beside ``/mcp``, outside the connection
registry: a probe is never refused by a principal's limits and never counts
as a client. ``/healthz`` and ``/readyz`` need no token; ``/metrics`` names
figures about every client, so on a server with authentication it takes an
operator's token unless the operator opens it (``--metrics-access open``).
A stdio server opens them on a side listener (``--metrics HOST:PORT``,
:func:`serve_side_listener`), loopback unless ``--metrics-remote on``.

Draining: when an HTTP server is asked to stop, ``/readyz`` answers ``503``
at once while requests are still taken for ``drain_period`` seconds, so a
load balancer that probes it stops sending traffic before intake stops.
Only a server whose ``/readyz`` was asked at least once drains: without a
probe there is no load balancer to wait for, and a stop is immediate. A
second stop signal ends the drain (it stops at once).

Store probes are shared: while one is waiting for the store, every other
``/readyz`` waits for that one's answer, so a flood of probes puts one job
at a time on the database's worker, behind the commits.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Literal

import anyio

from ..errors import StateClosed, StoreError
from .admin_api import AdminApi, admin_routes
from .admin_page import page_routes
from .caller import OPERATOR_SCOPE
from .requester import Requester, requester_of

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry
    from starlette.requests import Request
    from starlette.routing import Route

    from ..state import State
    from .metrics import RuntimeCollector
    from .registry import ConnectionRegistry
    from .tools import ToolContext

__all__ = ["Answer", "Operations", "OperationsSettings", "starlette_routes"]

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
PATHS = (HEALTH_PATH, READY_PATH, METRICS_PATH)

MetricsAccess = Literal["operator", "open"]


@dataclasses.dataclass(frozen=True)
class OperationsSettings:
    """How the operations endpoints behave; see the module docstring.

    ``drain_period``: seconds ``/readyz`` answers ``503`` before intake
    stops (when it was probed). ``probe_timeout``: seconds the store gets
    to answer a readiness probe. ``metrics_access``: who may read
    ``/metrics`` on a server with authentication (``"operator"``: an
    operator's token; ``"open"``: anyone who reaches it).
    ``metrics_principals``: label the HTTP figures by principal name.
    """

    drain_period: float = 5.0
    probe_timeout: float = 2.0
    metrics_access: MetricsAccess = "operator"
    metrics_principals: bool = False

    def __post_init__(self) -> None:
        for name in ("drain_period", "probe_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value >= 0 and value == value):
                raise ValueError(f"{name} must be a number of seconds, 0 or more, not {value!r}")
        if self.metrics_access not in ("operator", "open"):
            raise ValueError(f"metrics_access must be 'operator' or 'open', not {self.metrics_access!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _text(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, "text/plain; charset=utf-8", (text + "\n").encode(), headers)


class Operations:
    """The endpoints of one server, answered from its state, tools and registry.

    ``authentication``: whether the server checks tokens (then ``/metrics``
    follows ``settings.metrics_access``; without it whoever reaches the
    server owns it, as over stdio, and may read them). An HTTP server's
    connection registry joins with :meth:`watch_registry`.
    """

    def __init__(
        self,
        state: State,
        context: ToolContext,
        settings: OperationsSettings,
        *,
        authentication: bool = False,
    ) -> None:
        self._state = state
        self.settings = settings
        self._authentication = authentication
        # The operator's API under /admin/api answers from the same state and tools.
        self.admin = AdminApi(state, context)
        self.draining = False
        # A server nobody probes has no load balancer to drain: it stops at once.
        self.probed = False
        self._probe: anyio.Event | None = None
        self._last_probe: str | None = None
        # prometheus_client is imported when a server answers /metrics, not when serve reads its flags.
        from .metrics import RuntimeCollector, ScrapeExtras, metrics_registry

        self._extras = ScrapeExtras()
        self._collector: RuntimeCollector = RuntimeCollector(
            state, context.calls, lambda: self._extras, principal_names=settings.metrics_principals
        )
        self._metrics: CollectorRegistry = metrics_registry(self._collector)

    def watch_registry(self, registry: ConnectionRegistry) -> None:
        """The metrics show the HTTP server's connections and requests from ``registry``."""
        self._collector.watch_registry(registry)

    @property
    def authentication(self) -> bool:
        """Whether the server checks bearer tokens."""
        return self._authentication

    # -- draining -------------------------------------------------------------

    async def drain(self) -> None:
        """The server is stopping: ``/readyz`` answers 503 from now on; return when intake may stop.

        Waits ``drain_period`` when ``/readyz`` was ever probed (cancel it to
        stop at once), else returns at once.
        """
        self.draining = True
        period = self.settings.drain_period
        if self.probed and period > 0:
            logger.warning("draining: /readyz answers 503; requests are taken for %g s more", period)
            await anyio.sleep(period)

    # -- the endpoints -------------------------------------------------------

    async def answer(self, path: str, requester: Requester, accept: str = "") -> Answer | None:
        """The answer to ``GET path``, or None for a path that is not one of these."""
        if path == HEALTH_PATH:
            return _text(200, "ok")
        if path == READY_PATH:
            self.probed = True
            reason = await self.not_ready()
            return _text(200, "ready") if reason is None else _text(503, f"not ready: {reason}")
        if path == METRICS_PATH:
            return await self._metrics_answer(requester, accept)
        return None

    async def not_ready(self) -> str | None:
        """Why the server is not ready, or None when it is."""
        if self.draining:
            return "draining: the server is stopping"
        return await self._probe_store()

    async def _probe_store(self) -> str | None:
        running = self._probe
        if running is not None:
            await running.wait()
            return self._last_probe
        self._probe = done = anyio.Event()
        result: str | None = None
        timeout = self.settings.probe_timeout
        try:
            # Shielded, and bounded by the timeout: a prober that leaves must
            # not spoil the answer others wait for.
            with anyio.CancelScope(shield=True), anyio.move_on_after(timeout) as waited:
                try:
                    self._extras.database_bytes = await self._state.probe_store()
                except StateClosed:
                    result = "the state is closed"
                except StoreError as error:
                    result = f"the store did not answer: {error}"
            if waited.cancelled_caught:
                result = f"the store did not answer within {timeout:g} s"
        finally:
            self._last_probe = result
            self._probe = None
            done.set()
        if result is not None:
            logger.warning("readiness probe: %s", result)
        return result

    async def _metrics_answer(self, requester: Requester, accept: str) -> Answer:
        from prometheus_client.exposition import choose_encoder

        if self.authentication and self.settings.metrics_access == "operator":
            if not requester.authenticated:
                return _text(
                    401,
                    "/metrics needs a bearer token of an operator (`actorstate tokens add NAME --operator`, "
                    f"or a JWT whose scope includes {OPERATOR_SCOPE!r})",
                    (("www-authenticate", 'Bearer error="invalid_token"'),),
                )
            if not requester.operator:
                return _text(
                    403,
                    "/metrics is for operators: its figures cover every client. Use a token made with "
                    f"`actorstate tokens add NAME --operator` (or a JWT whose scope includes {OPERATOR_SCOPE!r})",
                )
        reason = await self.not_ready()
        self._extras.ready = reason is None
        self._extras.draining = self.draining
        encoder, content_type = choose_encoder(accept)
        return Answer(200, content_type, encoder(self._metrics))


def starlette_routes(operations: Operations) -> list[Route]:
    """The endpoints as Starlette routes, for the HTTP server's app (its authentication in
    front), with the operator's API (:mod:`.admin_api`) and page (:mod:`.admin_page`)."""
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        answer = await operations.answer(
            request.url.path, requester_of(request.scope.get("user")), request.headers.get("accept", "")
        )
        assert answer is not None  # routed here for these paths only
        return Response(answer.body, answer.status, dict(answer.headers), media_type=answer.content_type)

    routes = [Route(path, endpoint=endpoint, methods=["GET"]) for path in PATHS]
    return routes + admin_routes(operations.admin, authentication=operations.authentication) + page_routes()
