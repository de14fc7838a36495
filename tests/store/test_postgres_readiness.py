"""A readiness probe on a PostgreSQL node renews the leases due, as a call would: a node that
answers ready holds the leases it serves reads under."""

from __future__ import annotations

import psycopg
import pytest

import actorstate
from actorstate import Config
from actorstate.store import postgres_leases

pytestmark = pytest.mark.anyio
LEASE = 0.6


def _lease_expires(url: str, session_id: str) -> object:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT lease_expires FROM actorstate_sessions WHERE id = %s", (session_id,)
        ).fetchone()
    assert row is not None
    return row[0]


async def test_a_probe_renews_the_leases_due(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resident session's lease, a third of the way through by the node's clock, is renewed by
    a probe with no call in between (the database's lease expiry moves on)."""
    now = [1000.0]  # the node's lease clock, moved by the test
    monkeypatch.setattr(postgres_leases, "_lease_clock", lambda: lambda: now[0])
    async with actorstate.open_state(postgres_url, config=Config(lease_duration=LEASE)) as state:
        session = await state.create_session("alice")
        await session.increment("n")
        granted = _lease_expires(postgres_url, session.id)
        now[0] += LEASE / 2  # past a third of the lease: renewal is due
        assert await state.probe_store() is not None
        renewed = _lease_expires(postgres_url, session.id)
        assert renewed > granted  # type: ignore[operator]
