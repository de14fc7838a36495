"""A node cut off from PostgreSQL mid-commit (the chaos runner's ``partition``): its write, sent
before another node claimed the session and landing after, is fenced by the database."""

from __future__ import annotations

import urllib.parse

import anyio
import psycopg
import pytest

import actorstate
from actorstate import SessionMoved
from actorstate.chaos.proxy import StallingProxy
from actorstate.model.codec import decode_session
from actorstate.store import postgres_leases

from .test_postgres_nodes import expire_leases

pytestmark = pytest.mark.anyio
# Fails a test that would otherwise hang; nothing is timed against it.
HANG_GUARD = 30


def _stored(url: str, session_id: str) -> tuple[int, int]:
    """(counter n, owner epoch) as the database holds them."""
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT state, owner_epoch FROM actorstate_sessions WHERE id = %s", (session_id,)
        ).fetchone()
    assert row is not None
    return decode_session(bytes(row[0])).metadata["n"], int(row[1])


def _through(url: str, port: int) -> str:
    address = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(address._replace(netloc=f"{address.username}@{address.hostname}:{port}"))


async def test_a_commit_delayed_past_a_claim_is_fenced_and_its_callers_told_moved(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node a reaches PostgreSQL through a proxy. The proxy stalls, a's increment is applied in
    memory and its commit is held on the way; a's lease runs out and node b claims the session
    and writes it; then the held bytes go on. a's commit matches no row of its epoch: its caller
    gets SessionMoved (retry elsewhere), never an acknowledgement, a counts one fenced write and
    dropped its copy, and the database holds b's value under b's epoch."""
    # a's own lease clock stands still: a relies on its lease (no renewal is due) when the
    # stall begins, so the write goes out as a write, not behind a renewal.
    monkeypatch.setattr(postgres_leases, "_lease_clock", lambda: lambda: 1000.0)
    address = urllib.parse.urlsplit(postgres_url)
    assert address.hostname is not None
    assert address.port is not None
    proxy = StallingProxy(address.hostname, address.port)
    answers: list[object] = []
    async with anyio.create_task_group() as proxies:
        await proxies.start(proxy.serve)
        async with (
            actorstate.open_state(_through(postgres_url, proxy.port), node_id="a") as a,
            actorstate.open_state(postgres_url, node_id="b") as b,
        ):
            created = await a.create_session("alice")
            assert await created.increment("n") == 1
            _, epoch_of_a = _stored(postgres_url, created.id)

            async def increment_on_a() -> None:
                try:
                    answers.append(await created.increment("n", by=100))
                except SessionMoved as moved:
                    answers.append(moved)

            with anyio.fail_after(HANG_GUARD):
                proxy.stall()
                async with anyio.create_task_group() as callers:
                    callers.start_soon(increment_on_a)
                    await proxy.wait_held()  # a's commit is on its way, held
                    expire_leases(postgres_url)
                    assert await b.session(created.id, "alice").increment("n") == 2
                    assert answers == []  # a's caller still waits for its commit
                    proxy.release()
            [answer] = answers
            assert isinstance(answer, SessionMoved), answer
            assert "now served by another node; retry" in str(answer)
            assert a.stats()["fenced"] == 1
            assert a.residence(created.id) is None
            counter, epoch = _stored(postgres_url, created.id)
            assert (counter, epoch) == (2, epoch_of_a + 1)
        proxies.cancel_scope.cancel()
