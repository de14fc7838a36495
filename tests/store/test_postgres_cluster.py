"""The throwaway PostgreSQL cluster that tests and `make postgres` start."""

from __future__ import annotations

import os
import pwd
import tempfile
from typing import TYPE_CHECKING

import psycopg
import pytest

from actorstate.store import postgres_cluster as cluster_module
from actorstate.store.postgres_cluster import SYSTEM_USER, ClusterError

if TYPE_CHECKING:
    from pathlib import Path

    from actorstate.store.postgres_cluster import PostgresCluster


def test_cluster_answers_on_its_port_and_its_socket(postgres_cluster: PostgresCluster) -> None:
    """Both URLs reach the same running server, in the database named by the URL."""
    for url in (postgres_cluster.url(), postgres_cluster.socket_url()):
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT current_database(), current_user").fetchone()
        assert row == ("actorstate", "actorstate")


def test_cluster_runs_as_an_unprivileged_user(postgres_cluster: PostgresCluster) -> None:
    """The data folder and the server process belong to the current user, or to the system user
    made for it when the tests run as root (PostgreSQL refuses root)."""
    expected = pwd.getpwnam(SYSTEM_USER).pw_uid if os.geteuid() == 0 else os.getuid()
    assert os.stat(postgres_cluster.data).st_uid == expected
    assert postgres_cluster.pid is not None
    assert os.stat(f"/proc/{postgres_cluster.pid}").st_uid == expected


def test_immediate_restart_keeps_committed_rows(postgres_cluster: PostgresCluster, postgres_url: str) -> None:
    """A restart in immediate mode (as after a crash) recovers every committed row; a connection
    from before it is broken, a new one works."""
    old = psycopg.connect(postgres_url, autocommit=True)
    try:
        old.execute("CREATE TABLE kept (n integer)")
        old.execute("INSERT INTO kept VALUES (1), (2)")
        pid = postgres_cluster.pid
        postgres_cluster.restart("immediate")
        assert postgres_cluster.pid not in (None, pid)
        assert _fails(old)
    finally:
        old.close()
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT sum(n) FROM kept").fetchone() == (3,)


def _fails(connection: psycopg.Connection[tuple[object, ...]]) -> bool:
    try:
        connection.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_without_binaries_the_error_says_how_to_install_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """No initdb on PATH, no pg_config, no /usr/lib/postgresql: ClusterError naming the package."""
    monkeypatch.setattr(cluster_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(cluster_module.glob, "glob", lambda pattern: [])
    with pytest.raises(ClusterError, match="apt-get install postgresql"):
        cluster_module.start_cluster()


def test_a_server_that_cannot_start_is_an_error_with_its_log(postgres_cluster: PostgresCluster) -> None:
    """A port already taken (by the session's cluster): the new server exits, and the error
    quotes its log saying why; its folder is removed."""
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(ClusterError, match=r"(?s)exited with status .*could not"):
        cluster_module.start_cluster(port=postgres_cluster.port)
    assert set(os.listdir(tempfile.gettempdir())) <= before


def test_as_root_a_parent_the_server_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    """As root the server runs as another user, so a parent folder only root may search is
    refused, naming it; as anyone else the cluster starts there."""
    parent = tmp_path / "private"
    parent.mkdir(mode=0o700)
    if os.geteuid() == 0:
        with pytest.raises(ClusterError, match="cannot reach"):
            cluster_module.start_cluster(str(parent))
    else:
        with cluster_module.running_cluster(str(parent)) as cluster:
            assert cluster.folder.startswith(str(parent))
