"""The operator's JSON API under /admin/api over real HTTP (the server in the test's event loop,
trio and asyncio): operators only on a server with tokens; figures that move with calls; a
principal's sessions page by page; a session's metadata and events; ending a session from the
API makes the owner's next call answer "Session not found or expired"."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

import actorstate
from tests.transport.test_http import NOT_FOUND, TOKENS, call, client
from tests.transport.test_operations import serving

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
    "pytest.PytestUnraisableExceptionWarning"
)
ALICE = "tests|alice|alice"


async def api(
    base: str, path: str, token: str | None = "root_token", *, method: str = "GET", **params: Any
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient() as http:
        return await http.request(method, base + "/admin/api" + path, headers=headers, params=params)


@pytest.mark.anyio
async def test_the_api_is_for_operators_on_a_server_with_tokens() -> None:
    """Every endpoint answers 401 without a token and 403 with a token that is no operator's,
    naming how to get one; an operator's token gets 200. Without authentication (loopback) the
    API answers without a token."""
    async with actorstate.open_state() as state:
        async with serving(state, verifier=TOKENS) as (base, _, _):
            session_id = (await state.create_session(ALICE)).id
            for method, path in (
                ("GET", "/figures"),
                ("GET", f"/sessions?principal={ALICE}"),
                ("GET", f"/sessions/{session_id}"),
                ("POST", f"/sessions/{session_id}/end"),
            ):
                unauthenticated = await api(base, path, None, method=method)
                assert unauthenticated.status_code == 401, path
                refused = await api(base, path, "alice_token", method=method)
                assert refused.status_code == 403, path
                assert "actorstate tokens add NAME --operator" in refused.json()["error"]
            assert (await api(base, "/figures")).status_code == 200
            assert state.residence(session_id) == "ready"  # the refused end changed nothing
        async with serving(state) as (base, _, _):
            assert (await api(base, "/figures", None)).status_code == 200


@pytest.mark.anyio
async def test_figures_move_with_calls() -> None:
    """The figures count calls (failed ones apart), resident actors against their cap, memory
    against its budget; after more calls the call count has grown by exactly those calls."""
    config = actorstate.Config(max_resident=500, memory_budget_mb=64)
    async with actorstate.open_state(config=config) as state, serving(state, verifier=TOKENS) as (base, _, _):
        before = (await api(base, "/figures")).json()
        async with client(base + "/mcp", "alice_token") as alice:
            _, created = await call(alice, "create_session", {})
            for _ in range(4):
                await call(alice, "increment_counter", {"sessionId": created["sessionId"]})
            await call(alice, "get_context", {"sessionId": "00000000-0000-4000-8000-000000000000"})
        after = (await api(base, "/figures")).json()
    assert after["calls"] - before["calls"] == 6
    assert after["callsFailed"] - before["callsFailed"] == 1
    assert (after["residentActors"], after["maxResident"]) == (1, 500)
    assert after["memoryBudgetBytes"] == 64 * 1024 * 1024
    assert after["rssBytes"] > 0
    assert after["time"] >= before["time"]
    assert {"evictions", "restarts", "quarantined", "commitLatencyMsP50", "commitLatencyMsP99"} <= set(after)


@pytest.mark.anyio
async def test_a_principals_sessions_page_by_page() -> None:
    """Three of alice's sessions read two per page: the first page has two and a cursor, the
    next the third and none, oldest first; bob's are not among them. A missing principal, a
    cursor no page gave out and a limit of 0 are each refused with 400 and the reason."""
    async with actorstate.open_state() as state, serving(state, verifier=TOKENS) as (base, _, _):
        async with client(base + "/mcp", "alice_token") as alice, client(base + "/mcp", "bob_token") as bob:
            alices = [(await call(alice, "create_session", {}))[1]["sessionId"] for _ in range(3)]
            await call(bob, "create_session", {})
        first = (await api(base, "/sessions", principal=ALICE, limit="2")).json()
        assert first["principal"] == ALICE
        second = (await api(base, "/sessions", principal=ALICE, limit="2", cursor=first["nextCursor"])).json()
        assert "nextCursor" not in second
        listed = [row["sessionId"] for row in first["sessions"] + second["sessions"]]
        assert listed == alices
        assert {"createdAt", "lastActivity"} <= set(first["sessions"][0])
        for params, reason in (
            ({}, "?principal=KEY"),
            ({"principal": ALICE, "cursor": "nonsense"}, "cursor"),
            ({"principal": ALICE, "limit": "0"}, "limit"),
        ):
            refused = await api(base, "/sessions", **params)
            assert refused.status_code == 400, params
            assert reason in refused.json()["error"]


@pytest.mark.anyio
async def test_a_session_view_and_ending_it() -> None:
    """The view shows alice's session's metadata and recent events; ending it from the API
    answers ended, after which alice's next call answers "Session not found or expired" and
    the view 404; an id that is not a UUID is 400."""
    async with actorstate.open_state() as state, serving(state, verifier=TOKENS) as (base, _, _):
        async with client(base + "/mcp", "alice_token") as alice:
            _, created = await call(alice, "create_session", {})
            session_id = created["sessionId"]
            await call(alice, "increment_counter", {"sessionId": session_id})
            await call(
                alice, "record_action", {"sessionId": session_id, "action": "search", "details": "q=1"}
            )
            view = (await api(base, f"/sessions/{session_id}")).json()
            assert view["sessionId"] == session_id
            assert view["metadata"]["counter"] == 1
            assert view["totalEvents"] == 1
            assert view["recentEvents"][-1]["payload"] == {"action": "search", "details": "q=1"}

            ended = await api(base, f"/sessions/{session_id}/end", method="POST")
            assert (ended.status_code, ended.json()) == (200, {"sessionId": session_id, "ended": True})
            failed, text = await call(alice, "get_context", {"sessionId": session_id})
            assert failed
            assert NOT_FOUND in text
        gone = await api(base, f"/sessions/{session_id}")
        assert gone.status_code == 404
        assert NOT_FOUND in gone.json()["error"]
        assert (await api(base, "/sessions/not-a-uuid")).status_code == 400
