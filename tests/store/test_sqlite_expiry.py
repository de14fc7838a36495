"""Expiry on a SQLite file two processes share: a session the other process used after the scan
read it is not ended."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, cast

from actorstate.store.interface import SnapshotWrite, WriteOutcome
from actorstate.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

NOW = 1_800_000_000.0


class _PausedAfterScan:
    """A connection that runs ``between`` once an expiry scan has read its rows, before the UPDATE."""

    def __init__(self, connection: sqlite3.Connection, between: Callable[[], None]) -> None:
        self._connection = connection
        self._between = between

    def execute(self, query: Any, *args: Any) -> Any:
        cursor = self._connection.execute(query, *args)
        if isinstance(query, str) and query.startswith("SELECT id, last_activity, ended_at"):
            self._between()
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def test_expiry_does_not_end_a_session_used_after_the_scan(tmp_path: Path) -> None:
    """Process b's expiry scan sees an idle session; before its UPDATE, process a writes to it.
    The UPDATE leaves it live (idleness is checked again), and a's next write commits."""
    path = str(tmp_path / "shared.db")
    a = SQLiteStore(path)
    old = SnapshotWrite("s1", "alice", 0, b"a1", NOW - 1000, NOW - 1000, False, 0)
    assert a.write([old], NOW - 1000) == [WriteOutcome.COMMITTED]

    def a_uses_the_session() -> None:
        used = SnapshotWrite("s1", "alice", 1, b"a2", NOW - 1000, NOW, False, 0)
        assert a.write([used], NOW) == [WriteOutcome.COMMITTED]

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        # Stands in for the connection: the store uses only what it delegates.
        return cast(
            "sqlite3.Connection", _PausedAfterScan(sqlite3.connect(*args, **kwargs), a_uses_the_session)
        )

    b = SQLiteStore(path, connect=connect)
    try:
        step = b.expire("", 10, NOW - 500, NOW, frozenset())
        assert (step.ended, step.live) == (0, 1)
        again = SnapshotWrite("s1", "alice", 2, b"a3", NOW - 1000, NOW, False, 0)
        assert a.write([again], NOW) == [WriteOutcome.COMMITTED]
        loaded = a.load("s1")
        assert loaded is not None
        assert (loaded.ended, loaded.version, loaded.state) == (False, 3, b"a3")
    finally:
        b.close()
        a.close()
