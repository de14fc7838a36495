"""The PostgreSQL store beyond the shared contract: its schema, its errors, a lost connection,
a server restart and the fault seam."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import pytest

from actorstate.errors import DatabaseRefused, StoreUnavailable
from actorstate.fault_seam import FaultSeam
from actorstate.store.interface import SnapshotWrite, WriteOutcome
from actorstate.store.postgres import SCHEMA_VERSION, PostgresStore
from actorstate.store.postgres_view import PostgresView

if TYPE_CHECKING:
    from actorstate.store.postgres_cluster import PostgresCluster

COMMITTED = WriteOutcome.COMMITTED
NOW = 1_800_000_000.0


def _write(session_id: str, base_version: int, state: bytes = b"snapshot", epoch: int = 0) -> SnapshotWrite:
    return SnapshotWrite(session_id, "alice", base_version, state, NOW, NOW, False, epoch)


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        ).fetchall()
    return [row[0] for row in rows]


def test_new_database_gets_the_schema_and_reopens(postgres_url: str) -> None:
    """Opening an empty database creates actorstate's two tables at the current schema version;
    opening it again keeps what was written."""
    store = PostgresStore(postgres_url, node_id="a")
    assert store.write([_write("s1", 0, b"kept")], NOW) == [COMMITTED]
    store.close()
    assert _tables(postgres_url) == ["actorstate_schema", "actorstate_sessions"]
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT version FROM actorstate_schema").fetchall() == [(SCHEMA_VERSION,)]
    store = PostgresStore(postgres_url, node_id="a")
    try:
        row = store.load("s1")
        assert row is not None
        assert row.state == b"kept"
    finally:
        store.close()


def test_another_applications_tables_are_refused_untouched(postgres_url: str) -> None:
    """A database whose schema holds tables that are not actorstate's is refused, naming the way
    out, and nothing is created in it."""
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE orders (id integer)")
    with pytest.raises(DatabaseRefused, match=r"not actorstate's.*search_path"):
        PostgresStore(postgres_url)
    assert _tables(postgres_url) == ["orders"]


def test_a_schema_of_its_own_in_the_url_is_used(postgres_url: str) -> None:
    """With search_path set in the URL, actorstate's tables go to that schema beside another
    application's tables elsewhere in the database."""
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE orders (id integer)")
        connection.execute("CREATE SCHEMA actorstate")
    store = PostgresStore(postgres_url + "?options=-csearch_path%3Dactorstate")
    try:
        assert store.write([_write("s1", 0)], NOW) == [COMMITTED]
    finally:
        store.close()
    with psycopg.connect(postgres_url) as connection:
        count = connection.execute("SELECT count(*) FROM actorstate.actorstate_sessions").fetchone()
    assert count == (1,)
    assert _tables(postgres_url) == ["orders"]


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    """A database written by a newer actorstate (a higher schema version) is refused, saying to upgrade."""
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as connection:
        connection.execute("UPDATE actorstate_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(DatabaseRefused, match=r"newer actorstate.*upgrade"):
        PostgresStore(postgres_url)


def test_a_database_that_does_not_exist_is_refused(postgres_cluster: PostgresCluster) -> None:
    """A URL naming a missing database raises DatabaseRefused (retrying would not help)."""
    with pytest.raises(DatabaseRefused, match="no_such_database"):
        PostgresStore(postgres_cluster.url("no_such_database"))


def _refused_by_pg_hba(*args: object, **kwargs: object) -> psycopg.Connection[Any]:
    raise psycopg.OperationalError(
        'connection failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "app", database "app"'
    )


def test_a_server_refusing_the_client_is_refused_by_the_store() -> None:
    """A server's pg_hba.conf refusing this client (no SQLSTATE on a failed connection, only the
    server's words) raises DatabaseRefused from the store."""
    with pytest.raises(DatabaseRefused, match=r"no pg_hba\.conf entry"):
        PostgresStore("postgresql://app@10.0.0.9/app", connect=_refused_by_pg_hba)


def test_a_server_refusing_the_client_is_refused_by_the_read_only_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read-only view (sessions, doctor) classifies the same refusal as the store does:
    DatabaseRefused, not a StoreError that suggests trying again."""
    monkeypatch.setattr(psycopg, "connect", _refused_by_pg_hba)
    with pytest.raises(DatabaseRefused, match=r"no pg_hba\.conf entry"):
        PostgresView("postgresql://app@10.0.0.9/app")


def test_an_unreachable_server_is_unavailable() -> None:
    """Nothing listening at the URL's port: StoreUnavailable (it may pass), naming the address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreUnavailable, match=rf"cannot connect to .*{port}"):
        PostgresStore(f"postgresql://actorstate@127.0.0.1:{port}/actorstate")


def test_the_name_hides_the_password(postgres_cluster: PostgresCluster) -> None:
    """The store's name (used in messages and logs) shows the URL with its password replaced."""
    url = postgres_cluster.url().replace("actorstate@", "actorstate:hunter2@")
    store = PostgresStore(url)
    try:
        assert "hunter2" not in store.name
        assert store.name == url.replace("hunter2", "***")
    finally:
        store.close()


@pytest.mark.anyio
async def test_two_nodes_opening_a_new_database_at_once_both_succeed(postgres_url: str) -> None:
    """Two stores creating the schema of one new database at the same moment: one creates it
    under the lock, the other finds it made; both then write."""
    stores: list[PostgresStore] = []

    def open_store(node: str) -> None:
        stores.append(PostgresStore(postgres_url, node_id=node))

    async with anyio.create_task_group() as tasks:
        for node in ("a", "b"):
            tasks.start_soon(anyio.to_thread.run_sync, open_store, node)
    try:
        assert [store.write([_write(store.node_id, 0)], NOW) for store in stores] == [[COMMITTED]] * 2
    finally:
        for store in stores:
            store.close()


def _terminate_backends(cluster: PostgresCluster, url: str) -> int:
    """End the server processes serving actorstate's connections to the database of ``url``."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(cluster.url(), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'actorstate'",
            (database,),
        ).fetchall()
    return len(rows)


def test_a_lost_connection_fails_one_call_then_reconnects(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    """The store's backend terminated: the next call raises StoreUnavailable and stores nothing;
    the call after it connects again and finds what was committed before."""
    store = PostgresStore(postgres_url, node_id="a")
    try:
        assert store.write([_write("s1", 0, b"v1")], NOW) == [COMMITTED]
        assert _terminate_backends(postgres_cluster, postgres_url) == 1
        with pytest.raises(StoreUnavailable, match="committing 1 sessions failed"):
            store.write([_write("s1", 1, b"v2")], NOW)
        row = store.load("s1")
        assert row is not None
        assert (row.version, row.state) == (1, b"v1")
        assert store.write([_write("s1", 1, b"v2", epoch=row.epoch)], NOW) == [COMMITTED]
    finally:
        store.close()


def test_committed_writes_survive_a_server_crash_and_service_resumes(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    """PostgreSQL stopped in immediate mode (no checkpoint, as a crash) and started again: every
    acknowledged write is there, and the same store object serves again after one failed call."""
    store = PostgresStore(postgres_url, node_id="a")
    try:
        for n in range(20):
            assert store.write([_write(f"s{n}", 0, b"x" * n)], NOW) == [COMMITTED]
        postgres_cluster.restart("immediate")
        with pytest.raises(StoreUnavailable):
            store.load("s0")
        for n in range(20):
            row = store.load(f"s{n}")
            assert row is not None
            assert row.state == b"x" * n
    finally:
        store.close()


def test_a_commit_failed_by_the_fault_seam_keeps_nothing(postgres_url: str) -> None:
    """The fault seam's fail command: the batch's transaction is rolled back and raises
    StoreUnavailable; once the fault ends, the same batch commits."""
    seam = FaultSeam()
    store = PostgresStore(postgres_url, node_id="a", faults=seam)
    try:
        store.write([_write("a", 0, b"a1")], NOW)
        seam.command("fail 3600")
        with pytest.raises(StoreUnavailable, match="injected"):
            store.write([_write("a", 1, b"a2"), _write("b", 0)], NOW)
        assert store.owner_of("b") is None
        row = store.load("a")
        assert row is not None
        assert (row.version, row.state) == (1, b"a1")
        seam.command("fail 0")
        assert store.write([_write("a", 1, b"a2", epoch=row.epoch), _write("b", 0)], NOW) == [COMMITTED] * 2
    finally:
        store.close()


def test_the_urls_own_connection_settings_win(postgres_url: str) -> None:
    """Settings the store would choose (application_name, timeouts, keepalives) give way to the
    URL's: a URL naming its application_name connects under that name."""
    store = PostgresStore(postgres_url + "?application_name=mine")
    database = postgres_url.rsplit("/", 1)[1]
    try:
        with psycopg.connect(postgres_url) as connection:
            names = connection.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        assert names == [("mine",)]
    finally:
        store.close()
