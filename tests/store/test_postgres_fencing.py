"""One owner per session on PostgreSQL: claims, leases by the database's clock, and fencing of
an old owner, with two stores of different node ids on one database."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest

from actorstate.errors import SessionMoved
from actorstate.store.interface import SnapshotWrite, StoredSession, WriteOutcome
from actorstate.store.postgres import PostgresStore
from actorstate.store.postgres_leases import LeaseBook

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

COMMITTED, CONFLICT, FENCED = WriteOutcome.COMMITTED, WriteOutcome.CONFLICT, WriteOutcome.FENCED
NOW = 1_800_000_000.0
# Fails a test that would otherwise poll forever; nothing is timed against it.
HANG_GUARD = 30.0


def _write(session_id: str, base_version: int, state: bytes, epoch: int) -> SnapshotWrite:
    return SnapshotWrite(session_id, "alice", base_version, state, NOW, NOW, False, epoch)


@pytest.fixture
def nodes(postgres_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Nodes a and b on one database, with leases of a minute."""
    a = PostgresStore(postgres_url, node_id="a", lease_duration=60)
    b = PostgresStore(postgres_url, node_id="b", lease_duration=60)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _row(url: str, session_id: str) -> tuple[object, ...]:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT owner_node, owner_epoch, version, state FROM actorstate_sessions WHERE id = %s",
            (session_id,),
        ).fetchone()
    assert row is not None
    return (row[0], row[1], row[2], bytes(row[3]))


def _expire_lease(url: str, session_id: str) -> None:
    """The owner's lease runs out, by the database's clock (as if it paused past it)."""
    with psycopg.connect(url) as connection:
        connection.execute(
            "UPDATE actorstate_sessions SET lease_expires = now() - interval '1 second' WHERE id = %s",
            (session_id,),
        )


def _loaded(store: PostgresStore, session_id: str) -> StoredSession:
    row = store.load(session_id)
    assert row is not None
    return row


def test_a_claim_within_a_live_lease_is_refused(
    nodes: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """Node a created the session and holds its lease: b's load raises SessionMoved naming a,
    and the row (owner, epoch, version) is unchanged."""
    a, b = nodes
    assert a.write([_write("s1", 0, b"a1", 0)], NOW) == [COMMITTED]
    before = _row(postgres_url, "s1")
    assert before == ("a", 0, 1, b"a1")
    with pytest.raises(SessionMoved, match="node a") as refused:
        b.load("s1")
    assert refused.value.owner == "a"
    assert _row(postgres_url, "s1") == before


def test_after_the_lease_expires_the_new_owner_fences_the_old(
    nodes: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """b claims once a's lease has expired (epoch bumped); a's writes, alone or in a batch with a
    session still its own, answer FENCED for that session and keep nothing; b's commit."""
    a, b = nodes
    a.write([_write("s1", 0, b"a1", 0), _write("s2", 0, b"a-s2", 0)], NOW)
    a_epoch = _loaded(a, "s1").epoch
    _expire_lease(postgres_url, "s1")

    claimed = _loaded(b, "s1")
    assert (claimed.version, claimed.state) == (1, b"a1")
    assert claimed.epoch == a_epoch + 1
    assert _row(postgres_url, "s1")[:2] == ("b", a_epoch + 1)

    assert a.write([_write("s1", 1, b"a2", a_epoch)], NOW) == [FENCED]
    assert a.write([_write("s1", 1, b"a2", a_epoch), _write("s2", 1, b"a-s2'", 0)], NOW) == [
        FENCED,
        COMMITTED,
    ]
    assert _row(postgres_url, "s1") == ("b", a_epoch + 1, 1, b"a1")
    assert b.write([_write("s1", 1, b"b2", claimed.epoch)], NOW) == [COMMITTED]
    assert a.write([_write("s1", 2, b"a3", a_epoch)], NOW) == [FENCED]
    assert _row(postgres_url, "s1") == ("b", a_epoch + 1, 2, b"b2")
    # a cannot take it back while b's lease (renewed by its write) lives.
    with pytest.raises(SessionMoved, match="node b"):
        a.load("s1")


def test_a_short_lease_expires_by_the_database_clock(postgres_url: str) -> None:
    """With a lease of a tenth of a second, b's claims are refused until the database's clock
    passes a's lease, then one succeeds; a, which never renewed, is fenced."""
    a = PostgresStore(postgres_url, node_id="a", lease_duration=0.1)
    b = PostgresStore(postgres_url, node_id="b", lease_duration=60)
    try:
        a.write([_write("s1", 0, b"a1", 0)], NOW)
        refused = 0
        deadline = time.monotonic() + HANG_GUARD
        while True:
            try:
                claimed = _loaded(b, "s1")
                break
            except SessionMoved:
                refused += 1
                assert time.monotonic() < deadline, "a's lease never expired"
                time.sleep(0.01)
        assert claimed.epoch == 1
        assert a.write([_write("s1", 1, b"a2", 0)], NOW) == [FENCED]
        assert _row(postgres_url, "s1") == ("b", 1, 1, b"a1")
    finally:
        a.close()
        b.close()


def test_a_new_incarnation_of_a_node_fences_the_old_one(postgres_url: str) -> None:
    """Two stores with the same node id (a restarted node whose old process still runs): the
    newer one's load claims its own session again, bumping the epoch, so the older one is fenced."""
    old = PostgresStore(postgres_url, node_id="a")
    new = PostgresStore(postgres_url, node_id="a")
    try:
        old.write([_write("s1", 0, b"old", 0)], NOW)
        assert _loaded(new, "s1").epoch == 1
        assert old.write([_write("s1", 1, b"late", 0)], NOW) == [FENCED]
        assert new.write([_write("s1", 1, b"new", 1)], NOW) == [COMMITTED]
    finally:
        old.close()
        new.close()


def test_a_write_over_a_stale_version_of_its_own_epoch_conflicts(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """Under its own epoch, a write based on an older version is a CONFLICT, not FENCED."""
    a, _ = nodes
    a.write([_write("s1", 0, b"v1", 0)], NOW)
    a.write([_write("s1", 1, b"v2", 0)], NOW)
    assert a.write([_write("s1", 1, b"stale", 0)], NOW) == [CONFLICT]


def test_renewal_keeps_a_lease_and_reports_one_lost(
    nodes: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """moved() renews this node's leases in one statement: a session still its own (at the
    version held) is not reported and its lease is extended; one claimed by another node since
    is reported, and its lease forgotten."""
    a, b = nodes
    a.write([_write("kept", 0, b"k", 0), _write("lost", 0, b"l", 0)], NOW)
    with psycopg.connect(postgres_url) as connection:
        connection.execute("UPDATE actorstate_sessions SET lease_expires = now() + interval '1 second'")
    _expire_lease(postgres_url, "lost")
    _loaded(b, "lost")

    assert a.moved({"kept": 1, "lost": 1}) == ["lost"]
    assert a.leases.epoch("kept") == 0
    assert a.leases.epoch("lost") is None
    with psycopg.connect(postgres_url) as connection:
        row = connection.execute(
            "SELECT lease_expires > now() + interval '30 seconds' FROM actorstate_sessions WHERE id = 'kept'"
        ).fetchone()
    assert row == (True,)


def test_renewal_reports_a_session_at_another_version(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    """A session this node holds, stored at a version other than the one held here, is reported."""
    a, _ = nodes
    a.write([_write("s1", 0, b"v1", 0)], NOW)
    a.write([_write("s1", 1, b"v2", 0)], NOW)
    assert a.moved({"s1": 1}) == ["s1"]
    assert a.moved({"s1": 2}) == []


def test_closing_releases_the_leases(nodes: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    """A node that closes gives up its leases: another claims its sessions at once."""
    a, b = nodes
    a.write([_write("s1", 0, b"a1", 0)], NOW)
    a.close()
    assert _loaded(b, "s1").state == b"a1"
    assert _row(postgres_url, "s1")[0] == "b"


def test_expiry_leaves_sessions_under_another_nodes_live_lease(
    nodes: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """An expiry scan on b skips an idle session a holds under a live lease (a's runtime judges
    it), and ends it once that lease has expired."""
    a, b = nodes
    a.write([_write("s1", 0, b"a1", 0)], NOW)
    step = b.expire("", 10, NOW + 1, NOW + 2, frozenset())
    assert (step.ended, step.live) == (0, 1)
    _expire_lease(postgres_url, "s1")
    step = b.expire("", 10, NOW + 1, NOW + 2, frozenset())
    assert (step.ended, step.live) == (1, 0)
    assert _loaded(a, "s1").ended


def test_the_lease_book_asks_for_renewal_a_third_into_the_oldest_lease() -> None:
    """renewal_due turns True once a third of a lease has passed since the oldest lease relied
    on; a renewal relies on the sessions it renewed only: the others (passivated, or writing)
    no longer make renewal due, are still known (given up at close), and are forgotten once
    they cannot hold."""
    clock = [100.0]
    book = LeaseBook(30.0, monotonic=lambda: clock[0])
    assert not book.renewal_due()
    book.granted("s1", 1, 100.0)
    book.granted("s2", 4, 105.0)
    clock[0] = 109.9
    assert not book.renewal_due()
    clock[0] = 110.0
    assert book.renewal_due()
    assert book.renewal_of(["s1", "s3"]) == (["s1"], [1], ["s3"])
    book.renewed([("s1", 1)], ["s1"], 110.0)
    clock[0] = 119.9
    assert not book.renewal_due()  # s2, not asked about, is set aside
    assert sorted(book.held_ids()) == ["s1", "s2"]
    assert book.epoch("s2") == 4
    clock[0] = 120.0
    assert book.renewal_due()
    clock[0] = 136.0
    book.renewed([], [], 136.0)  # nothing resident: s1 set aside, s2 (105) can no longer hold
    assert book.held_ids() == ["s1"]
    assert not book.renewal_due()
    book.granted("s3", 2, 140.0)
    clock[0] = 150.0
    assert book.renewal_due()
    book.lost("s3")
    book.lost("s1")
    assert book.held_ids() == []


def test_an_old_incarnation_closing_leaves_the_new_ones_leases(postgres_url: str) -> None:
    """A fenced old process of a node closing after its successor claimed the session gives up
    nothing of the successor's: the lease stays, and another node is still refused."""
    old = PostgresStore(postgres_url, node_id="a")
    new = PostgresStore(postgres_url, node_id="a")
    b = PostgresStore(postgres_url, node_id="b")
    try:
        old.write([_write("s1", 0, b"old", 0)], NOW)
        _loaded(new, "s1")
        old.close()
        assert _row(postgres_url, "s1")[:2] == ("a", 1)
        with pytest.raises(SessionMoved, match="node a"):
            b.load("s1")
    finally:
        new.close()
        b.close()


class _PausedAfterScan:
    """A connection that runs ``between`` once an expiry scan has read its rows, before the UPDATE."""

    def __init__(self, connection: psycopg.Connection[Any], between: Callable[[], None]) -> None:
        self._connection = connection
        self._between = between

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        cursor = self._connection.execute(query, params, **kwargs)
        if isinstance(query, str) and query.startswith("SELECT id, last_activity"):
            self._between()
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def test_expiry_does_not_end_a_session_another_node_claimed_after_the_scan(postgres_url: str) -> None:
    """b's expiry scan sees an idle, unowned session; before its UPDATE, a claims it and commits a
    write. The UPDATE leaves the session live (it checks idleness and the lease again), and a's
    next write over its acknowledged one commits."""
    a = PostgresStore(postgres_url, node_id="a")
    old = SnapshotWrite("s1", "alice", 0, b"a1", NOW - 1000, NOW - 1000, False, 0)
    assert a.write([old], NOW) == [COMMITTED]
    a.release([("s1", 0)])

    def a_uses_the_session() -> None:
        epoch = _loaded(a, "s1").epoch
        used = SnapshotWrite("s1", "alice", 1, b"a2", NOW - 1000, NOW, False, epoch)
        assert a.write([used], NOW) == [COMMITTED]

    def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
        # Stands in for the connection: the store uses only what it delegates.
        return cast(
            "psycopg.Connection[Any]", _PausedAfterScan(psycopg.connect(url, **kwargs), a_uses_the_session)
        )

    b = PostgresStore(postgres_url, node_id="b", connect=connect)
    try:
        step = b.expire("", 10, NOW - 500, NOW, frozenset())
        assert (step.ended, step.live) == (0, 1)
        epoch = _loaded(a, "s1").epoch
        again = SnapshotWrite("s1", "alice", 2, b"a3", NOW - 1000, NOW, False, epoch)
        assert a.write([again], NOW) == [COMMITTED]
        assert _row(postgres_url, "s1")[2:] == (3, b"a3")
    finally:
        a.close()
        b.close()
