"""The operator's JSON API under ``/admin/api``: what the operator page (:mod:`.admin_page`) shows and does.

- ``GET /admin/api/figures``: the server's figures now, for live charts
  (counters the page turns into rates between two polls: calls, evictions,
  restarts; gauges: resident actors and their cap, memory and its budget;
  commit latency p50 and p99 over the last 1,024 commits);
- ``GET /admin/api/sessions?principal=KEY[&cursor=C][&limit=N]``: one page
  of a principal's live sessions, oldest first, with created and last
  activity times (``nextCursor`` names the next page);
- ``GET /admin/api/sessions/ID``: a session's metadata and its recent
  events, whoever owns it (read-only);
- ``POST /admin/api/sessions/ID/end``: end a session, whoever owns it.

Everything here acts for every principal, so on a server with
authentication each request needs an operator's bearer token (``401``
without a token, ``403`` with another's); without authentication (loopback
only) whoever reaches the server owns it. A bearer header, never a cookie:
a page on another site cannot make a browser send it, so ending a session
cannot be forged from elsewhere. Errors are ``{"error": MESSAGE}`` with the
status that fits: ``404`` for a session not found (unknown, ended or
expired alike), ``400`` for a bad id, principal, cursor or limit.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import ActorStateError, InvalidInput, SessionNotFound
from .caller import OPERATOR_SCOPE
from .requester import requester_of

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ..state import State
    from .tools import ToolContext

__all__ = ["AdminApi", "admin_routes"]

PREFIX = "/admin/api"
# Events a session view shows: the most a get_context may ask for.
SESSION_VIEW_EVENTS = 50


class AdminApi:
    """The answers of the operator's API for one server's state and tools."""

    def __init__(self, state: State, context: ToolContext) -> None:
        self._state = state
        self._context = context

    def figures(self) -> dict[str, Any]:
        stats = self._state.stats()
        config = self._state.config
        calls = self._context.calls.calls()
        return {
            "time": time.time(),
            "calls": sum(calls.values()),
            "callsFailed": sum(count for (_, outcome), count in calls.items() if outcome != "ok"),
            "residentActors": stats["resident_actors"],
            "maxResident": config.max_resident,
            "rssBytes": stats["rss_bytes"],
            "accountedBytes": stats["accounted_bytes"],
            "memoryBudgetBytes": config.memory_budget_bytes,
            "evictions": sum(stats["evictions"].values()),
            "passivations": stats["passivations"],
            "restarts": stats["restarts"],
            "quarantined": stats["quarantined"],
            "commitLatencyMsP50": stats.get("commit_latency_ms_p50"),
            "commitLatencyMsP99": stats.get("commit_latency_ms_p99"),
        }

    async def sessions(self, principal: str, cursor: str | None, limit: int | None) -> dict[str, Any]:
        page = await self._state.describe_sessions(principal, cursor=cursor, limit=limit)
        answer: dict[str, Any] = {"principal": principal, "sessions": page.sessions}
        if page.next_cursor is not None:
            answer["nextCursor"] = page.next_cursor
        return answer

    async def session(self, session_id: str) -> dict[str, Any]:
        max_turns = min(SESSION_VIEW_EVENTS, self._state.config.max_turns_limit)
        return await self._state.session_as_owner(session_id).context(max_turns=max_turns)

    async def end(self, session_id: str) -> dict[str, Any]:
        await self._state.session_as_owner(session_id).end()
        return {"sessionId": session_id, "ended": True}


def admin_routes(api: AdminApi, *, authentication: bool) -> list[Route]:
    """The API's Starlette routes (the server's authentication in front of them)."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def refusal(request: Request) -> Response | None:
        if not authentication:
            return None
        requester = requester_of(request.scope.get("user"))
        how = (
            f"use an operator's token (`actorstate tokens add NAME --operator`, or a JWT whose scope "
            f"includes {OPERATOR_SCOPE!r})"
        )
        if not requester.authenticated:
            return JSONResponse(
                {"error": f"the operator's API needs a bearer token: {how}"},
                401,
                {"www-authenticate": 'Bearer error="invalid_token"'},
            )
        if not requester.operator:
            return JSONResponse({"error": f"the operator's API covers every client: {how}"}, 403)
        return None

    async def answer(request: Request, work: Any) -> Response:
        refused = refusal(request)
        if refused is not None:
            return refused
        try:
            return JSONResponse(await work())
        except SessionNotFound as error:
            return JSONResponse({"error": str(error)}, 404)
        except InvalidInput as error:
            return JSONResponse({"error": str(error)}, 400)
        except ActorStateError as error:
            return JSONResponse({"error": str(error)}, 503)

    async def figures(request: Request) -> Response:
        async def work() -> dict[str, Any]:
            return api.figures()

        return await answer(request, work)

    async def sessions(request: Request) -> Response:
        params = request.query_params

        async def work() -> dict[str, Any]:
            principal = params.get("principal")
            if not principal:
                raise InvalidInput("name the principal whose sessions to list: ?principal=KEY")
            limit_text = params.get("limit")
            limit: Any = None
            if limit_text is not None:
                limit = int(limit_text) if limit_text.isdigit() else limit_text
            return await api.sessions(principal, params.get("cursor"), limit)

        return await answer(request, work)

    async def session(request: Request) -> Response:
        return await answer(request, lambda: api.session(request.path_params["session_id"]))

    async def end(request: Request) -> Response:
        return await answer(request, lambda: api.end(request.path_params["session_id"]))

    return [
        Route(f"{PREFIX}/figures", figures, methods=["GET"]),
        Route(f"{PREFIX}/sessions", sessions, methods=["GET"]),
        Route(f"{PREFIX}/sessions/{{session_id}}", session, methods=["GET"]),
        Route(f"{PREFIX}/sessions/{{session_id}}/end", end, methods=["POST"]),
    ]
