"""The change watch: which counter moves are news from another process, and which are this one's own commits."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from actorstate.store.sqlite_changes import ChangeWatch

if TYPE_CHECKING:
    from collections.abc import Iterator
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
