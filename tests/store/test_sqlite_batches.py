"""The SQLite store's batch of updates: one UPDATE ... FROM (VALUES ...) a chunk, or (older SQLite)
one row at a time, answering the same outcomes and leaving the same rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from actorstate.backend import parking_for_current_backend
from actorstate.store import sqlite as sqlite_store
from actorstate.store.interface import SnapshotWrite, WriteOutcome
from actorstate.store.threaded import open_sqlite_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from actorstate.store.threaded import ThreadedStore

pytestmark = pytest.mark.anyio

COMMITTED, CONFLICT = WriteOutcome.COMMITTED, WriteOutcome.CONFLICT
NOW = 1_800_000_000.0


@pytest.fixture(params=[True, False], ids=["update-from", "row-by-row"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ThreadedStore]:
    """A store on a new file that writes a batch's updates in statements of at most three rows
    (update-from), or one row at a time (row-by-row, as with SQLite before 3.33)."""
    monkeypatch.setattr(sqlite_store, "_UPDATE_FROM", request.param)
    monkeypatch.setattr(sqlite_store, "_UPDATES_PER_STATEMENT", 3)
    opened = await open_sqlite_store(str(tmp_path / "batches.db"), parking_for_current_backend())
    try:
        yield opened
    finally:
        await opened.close()


def _write(session_id: str, base_version: int, state: bytes, *, ended: bool = False) -> SnapshotWrite:
    return SnapshotWrite(session_id, "alice", base_version, state, NOW, NOW + base_version, ended, 0)


async def test_a_batch_of_updates_across_chunks_commits_each_and_refuses_the_stale(
    store: ThreadedStore,
) -> None:
    """Seven updates over three statements of at most three rows (or row by row): each good one
    bumps its version and stores its state and activity; a stale one and an ended row's conflict,
    changing nothing, and the rest of the batch still commits."""
    ids = [f"s{number}" for number in range(8)]
    assert await store.write([_write(session_id, 0, b"v1") for session_id in ids], NOW) == [COMMITTED] * 8
    assert await store.write([_write("s7", 1, b"end", ended=True)], NOW) == [COMMITTED]
    batch = [_write(session_id, 1, f"{session_id}-v2".encode()) for session_id in ids[:6]]
    batch.insert(3, _write("s6", 5, b"stale"))
    batch.append(_write("s7", 2, b"after its end"))
    outcomes = await store.write(batch, NOW)
    assert outcomes == [COMMITTED] * 3 + [CONFLICT] + [COMMITTED] * 3 + [CONFLICT]
    for session_id in ids[:6]:
        row = await store.load(session_id)
        assert row is not None
        assert (row.version, row.state) == (2, f"{session_id}-v2".encode())
    untouched = await store.load("s6")
    assert untouched is not None
    assert (untouched.version, untouched.state) == (1, b"v1")
    ended = await store.load("s7")
    assert ended is not None
    assert (ended.version, ended.state, ended.ended) == (2, b"end", True)
    assert await store.write([_write("s0", 2, b"v3"), _write("s1", 2, b"v3")], NOW) == [COMMITTED] * 2


async def test_a_batch_without_conflicts_commits_in_its_statements_alone(
    store: ThreadedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seven good updates over three statements commit without the row-by-row redo, which a batch
    takes only when some write did not apply (so a chunk left out would show here)."""
    ids = [f"s{number}" for number in range(7)]
    assert await store.write([_write(session_id, 0, b"v1") for session_id in ids], NOW) == [COMMITTED] * 7

    def redo(*_: object) -> bool:
        raise AssertionError("the batch was redone row by row")

    monkeypatch.setattr(sqlite_store.SQLiteStore, "_write_one", redo)
    batch = [_write(session_id, 1, f"{session_id}-v2".encode()) for session_id in ids]
    assert await store.write(batch, NOW) == [COMMITTED] * 7
    for session_id in ids:
        row = await store.load(session_id)
        assert row is not None
        assert (row.version, row.state) == (2, f"{session_id}-v2".encode())
