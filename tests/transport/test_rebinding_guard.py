"""A loopback server refuses a Host or Origin that is not loopback on every endpoint beside /mcp
(the operator's API, /metrics), as the SDK does on /mcp: a web page reaching it through a rebound
name, or posting from another site, neither reads every client's sessions nor ends one."""

from __future__ import annotations

import httpx2
import pytest

import actorstate
from tests.transport.test_operations import serving

pytestmark = pytest.mark.anyio
ALICE = "alice"


async def _request(base: str, method: str, path: str, headers: dict[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.request(method, base + path, headers=headers)


async def test_a_foreign_host_or_origin_is_refused_beside_mcp_and_ends_nothing() -> None:
    """Without tokens on loopback: a rebound Host gets 421 and a foreign Origin 403 on the
    operator's API (reading and ending) and on /metrics; the session stays live; the same
    requests with loopback names are answered."""
    async with actorstate.open_state() as state, serving(state) as (base, _, _):
        session_id = (await state.create_session(ALICE)).id
        port = base.rsplit(":", 1)[1]
        rebound = {"host": f"rebound.example:{port}"}
        foreign = {"origin": "http://attacker.example"}
        for method, path in (
            ("GET", f"/admin/api/sessions?principal={ALICE}"),
            ("GET", f"/admin/api/sessions/{session_id}"),
            ("POST", f"/admin/api/sessions/{session_id}/end"),
            ("GET", "/metrics"),
        ):
            assert (await _request(base, method, path, rebound)).status_code == 421, path
            assert (await _request(base, method, path, foreign)).status_code == 403, path
        assert state.residence(session_id) == "ready"
        listed = await _request(base, "GET", f"/admin/api/sessions?principal={ALICE}", {})
        assert [entry["sessionId"] for entry in listed.json()["sessions"]] == [session_id]
        local = {"origin": f"http://127.0.0.1:{port}"}
        ended = await _request(base, "POST", f"/admin/api/sessions/{session_id}/end", local)
        assert ended.status_code == 200
