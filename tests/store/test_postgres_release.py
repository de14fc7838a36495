"""A session taken out of memory gives up its lease: another node serves it at once, instead of
waiting out a lease its old owner no longer needs; a lease taken since is kept."""

from __future__ import annotations

import anyio
import psycopg
import pytest

import actorstate
from actorstate import Config
from actorstate.errors import SessionMoved
from actorstate.store.interface import SnapshotWrite, WriteOutcome
from actorstate.store.postgres import PostgresStore

NOW = 1_800_000_000.0
# Fails a test that would otherwise poll forever; nothing is timed against it.
HANG_GUARD = 30.0
# Far longer than any test: a session that moves did not wait its lease out.
LONG_LEASE = 600.0


def _owner(url: str, session_id: str) -> tuple[str | None, int, bool]:
    """The row's owner node, owner epoch, and whether it has a lease."""
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT owner_node, owner_epoch, lease_expires IS NOT NULL FROM actorstate_sessions WHERE id = %s",
            (session_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_release_gives_up_only_the_lease_of_the_epoch_given(postgres_url: str) -> None:
    """Node a's release under an epoch it no longer holds changes nothing; under the epoch it holds
    it leaves the row unowned and without a lease, so b claims at once (the epoch bumped); a's
    release afterwards leaves b's claim alone."""
    a = PostgresStore(postgres_url, node_id="a", lease_duration=LONG_LEASE)
    b = PostgresStore(postgres_url, node_id="b", lease_duration=LONG_LEASE)
    try:
        write = SnapshotWrite("s1", "alice", 0, b"a1", NOW, NOW, False, 0)
        assert a.write([write], NOW) == [WriteOutcome.COMMITTED]
        loaded = a.load("s1")
        assert loaded is not None
        epoch = loaded.epoch
        with pytest.raises(SessionMoved):
            b.load("s1")

        a.release([("s1", epoch - 1)])
        assert _owner(postgres_url, "s1") == ("a", epoch, True)
        a.release([("s1", epoch)])
        assert _owner(postgres_url, "s1") == (None, epoch, False)

        claimed = b.load("s1")
        assert claimed is not None
        assert (claimed.epoch, claimed.state) == (epoch + 1, b"a1")
        a.release([("s1", epoch)])
        b.release([("s1", epoch)])  # not the epoch b holds
        assert _owner(postgres_url, "s1") == ("b", epoch + 1, True)
    finally:
        a.close()
        b.close()


@pytest.mark.anyio
async def test_an_evicted_session_is_served_by_another_node_at_once(postgres_url: str) -> None:
    """Node a keeps one session in memory: creating a second passivates the first, which gives up
    its lease (leases of ten minutes, so waiting it out is no way), and node b then serves the
    first session with a's acknowledged writes; a's second session keeps its lease."""
    config = Config(max_resident=1, lease_duration=LONG_LEASE)
    async with (
        actorstate.open_state(postgres_url, config=config, node_id="a") as a,
        actorstate.open_state(postgres_url, config=Config(lease_duration=LONG_LEASE), node_id="b") as b,
    ):
        first = await a.create_session("alice")
        assert await first.increment("n") == 1
        assert await first.increment("n") == 2
        with pytest.raises(SessionMoved, match="node a"):
            await b.session(first.id, "alice").increment("n")

        second = await a.create_session("alice")  # the cap passivates the first
        assert await second.increment("n") == 1
        with anyio.fail_after(HANG_GUARD):  # given up in the background, soon after
            while True:
                if _owner(postgres_url, first.id)[0] is None:
                    break
                await anyio.sleep(0.01)
        assert await b.session(first.id, "alice").increment("n") == 3
        assert _owner(postgres_url, first.id)[0] == "b"
        assert _owner(postgres_url, second.id)[0] == "a"
