"""The change watch: which counter moves are news from another process, and which are this one's own commits."""

from __future__ import annotations

import functools
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import pytest

from actorstate.store.interface import SnapshotWrite
from actorstate.store.sqlite import SQLiteStore
from actorstate.store.sqlite_changes import ChangeWatch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture
def path(tmp_path: Path) -> str:
    file = str(tmp_path / "watch.db")
    with sqlite3.connect(file) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t (x)")
    return file


@pytest.fixture
def ours(path: str) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("SELECT count(*) FROM t").fetchone()  # opens the WAL index, as the store's open does
    yield db
    db.close()


def _commit_from_another_connection(path: str) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("INSERT INTO t VALUES (2)")
    other.close()


def test_own_commit_is_not_news_even_before_it_is_noted(path: str, ours: sqlite3.Connection) -> None:
    """Between this connection's COMMIT and after_own_commit, the counter it moved is expected."""
    watch = ChangeWatch(path, ours)
    assert watch.available
    ours.execute("BEGIN IMMEDIATE")
    watch.own_write_began()
    ours.execute("INSERT INTO t VALUES (1)")
    ours.execute("COMMIT")
    assert not watch.maybe_changed()
    watch.after_own_commit()
    assert not watch.maybe_changed()
    watch.close()


def test_another_commit_before_ours_is_news(path: str, ours: sqlite3.Connection) -> None:
    """A commit that landed before this connection took the write lock is never taken for its own."""
    watch = ChangeWatch(path, ours)
    assert watch.available
    _commit_from_another_connection(path)
    ours.execute("BEGIN IMMEDIATE")
    watch.own_write_began()
    assert watch.maybe_changed()
    ours.execute("INSERT INTO t VALUES (1)")
    ours.execute("COMMIT")
    assert watch.maybe_changed()
    watch.after_own_commit()
    assert watch.maybe_changed()  # until the runtime has looked (moved)
    watch.close()


def test_a_rolled_back_write_expects_nothing(path: str, ours: sqlite3.Connection) -> None:
    """Once the write lock is let go without a commit, the next counter move is someone else's."""
    watch = ChangeWatch(path, ours)
    ours.execute("BEGIN IMMEDIATE")
    watch.own_write_began()
    ours.execute("ROLLBACK")
    watch.own_write_ended()
    _commit_from_another_connection(path)
    assert watch.maybe_changed()
    watch.close()


class _HeldAfterCommit(sqlite3.Connection):
    """Once armed, holds its next COMMIT after it ran (the write lock is let go) until released."""

    armed = False
    reached = threading.Event()
    release = threading.Event()

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        cursor = super().execute(sql, *args, **kwargs)
        if sql == "COMMIT" and _HeldAfterCommit.armed:
            _HeldAfterCommit.armed = False
            _HeldAfterCommit.reached.set()
            _HeldAfterCommit.release.wait(30)
        return cursor


def _new_session(session_id: str, at: float) -> SnapshotWrite:
    return SnapshotWrite(session_id, "alice", 0, b"snapshot", at, at, ended=False)


@pytest.mark.parametrize(
    "change_nothing",
    [
        pytest.param(lambda store: store.end("absent", 3.0), id="end-absent-session"),
        pytest.param(lambda store: store.touch([("s1", 1.0)]), id="touch-with-an-earlier-time"),
    ],
)
def test_another_commit_after_an_empty_one_of_ours_is_news(
    tmp_path: Path, change_nothing: Callable[[SQLiteStore], None]
) -> None:
    """A transaction of the store's that changes no row commits nothing and leaves the counter
    where it was: another connection's commit landing after it, before the store has noted its
    own commit, is news (it is not taken for the move that commit would have made)."""
    path = str(tmp_path / "empty.db")
    ours = SQLiteStore(path, connect=functools.partial(sqlite3.connect, factory=_HeldAfterCommit))
    theirs = SQLiteStore(path)
    try:
        assert ours.write([_new_session("s1", 2.0)], 2.0)
        ours.moved({})  # as the runtime does after any change: nothing is news now
        assert not ours.changes.maybe_changed()
        _HeldAfterCommit.reached.clear()
        _HeldAfterCommit.release.clear()
        _HeldAfterCommit.armed = True
        worker = threading.Thread(target=change_nothing, args=(ours,))
        worker.start()
        try:
            assert _HeldAfterCommit.reached.wait(30)
            assert theirs.write([_new_session("s2", 2.5)], 2.5)
            assert ours.changes.maybe_changed()
        finally:
            _HeldAfterCommit.release.set()
            worker.join(30)
        assert ours.changes.maybe_changed()  # until the runtime has looked
    finally:
        ours.close()
        theirs.close()
