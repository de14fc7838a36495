"""Two `actorstate serve --http` nodes on one PostgreSQL database, as the README starts them:
a call for a session the other node serves is refused naming that node, and a node that
stops hands its sessions over with everything acknowledged."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.transport.test_http import call, client
from tests.transport.test_http_serve import Server

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
        "pytest.PytestUnraisableExceptionWarning"
    ),
]


def node(tmp_path: Path, database: str, name: str) -> Server:
    """One `actorstate serve --http 127.0.0.1:0 --db URL --node-id NAME` process."""
    return Server(tmp_path, "--node-id", name, db=database)


async def test_two_http_nodes_share_sessions_one_owner_at_a_time(postgres_url: str, tmp_path: Path) -> None:
    """n1 serves a session; n2 refuses calls for it naming n1 and telling the caller to retry;
    n1 stopped (SIGTERM: it commits and gives up its leases), n2 serves the session at once with
    n1's acknowledged writes."""
    n1, n2 = node(tmp_path, postgres_url, "n1"), node(tmp_path, postgres_url, "n2")
    try:
        async with client(n1.url, None) as on_n1:
            _, created = await call(on_n1, "create_session", {})
            session_id = created["sessionId"]
            for expected in (1, 2):
                _, counted = await call(on_n1, "increment_counter", {"sessionId": session_id})
                assert counted["value"] == expected
        async with client(n2.url, None) as on_n2:
            refused, text = await call(on_n2, "increment_counter", {"sessionId": session_id})
            assert refused
            assert "node n1" in text
            assert "retry" in text
        assert n1.stop() == 0, n1.stderr.decode()
        async with client(n2.url, None) as on_n2:
            _, counted = await call(on_n2, "increment_counter", {"sessionId": session_id})
            assert counted["value"] == 3
    finally:
        n1.stop()
        assert n2.stop() == 0, n2.stderr.decode()
