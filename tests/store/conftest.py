"""The throwaway PostgreSQL cluster the PostgreSQL store's tests run on.

One cluster per test session (started from the machine's PostgreSQL binaries
by :mod:`actorstate.store.postgres_cluster`), a new empty database per test.
When the cluster cannot start, every test that needs it fails with the
reason: nothing is skipped.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import psycopg
import pytest

from actorstate.store.postgres_cluster import ClusterError, PostgresCluster, start_cluster

if TYPE_CHECKING:
    from collections.abc import Iterator

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    try:
        cluster = start_cluster()
    except ClusterError as error:
        pytest.fail(f"the PostgreSQL tests need a PostgreSQL server, which could not be started: {error}")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The URL of a new, empty database of the session's cluster."""
    name = f"test_{next(_database_numbers)}"
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return postgres_cluster.url(name)
