"""The store contract, checked on MemoryStore, the SQLite store and the PostgreSQL store alike
(so the fake keeps what the real stores keep), then MemoryStore's fault injection."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import anyio
import pytest

from actorstate import StoreError, StoreUnavailable
from actorstate.backend import parking_for_current_backend
from actorstate.store.interface import SnapshotWrite, Store, StoredSession, WriteOutcome
from actorstate.store.memory import MemoryStore
from actorstate.store.postgres import open_postgres_store
from actorstate.store.threaded import open_sqlite_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

COMMITTED, CONFLICT, FENCED = WriteOutcome.COMMITTED, WriteOutcome.CONFLICT, WriteOutcome.FENCED
NOW = 1_800_000_000.0
STORE_KINDS = ["memory", "sqlite", "postgres"]
# Fails a test that would otherwise hang; events order the steps, nothing waits on time.
HANG_GUARD = 10


async def _open(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "postgres":
        # A new database of the session's cluster (tests/store/conftest.py).
        url: str = request.getfixturevalue("postgres_url")
        return await open_postgres_store(url, parking_for_current_backend())
    return await open_sqlite_store(str(tmp_path / "contract.db"), parking_for_current_backend())


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await _open(request.param, tmp_path, request)
    try:
        yield opened
    finally:
        await opened.close()


def _write(
    session_id: str,
    base_version: int,
    state: bytes = b"snapshot",
    *,
    client_id: str = "alice",
    created_at: float = NOW,
    last_activity: float = NOW,
    ended: bool = False,
    epoch: int = 0,
) -> SnapshotWrite:
    return SnapshotWrite(session_id, client_id, base_version, state, created_at, last_activity, ended, epoch)


async def _loaded(store: Store, session_id: str) -> StoredSession:
    row = await store.load(session_id)
    assert row is not None
    return row


# -- the contract, on both stores -----------------------------------------------


def _unowned(row: StoredSession | None) -> StoredSession | None:
    """The row without its epoch: a store shared by nodes (PostgreSQL) bumps it at every load."""
    return None if row is None else dataclasses.replace(row, epoch=0)


async def test_new_session_is_stored_at_version_one(store: Store) -> None:
    """A write over base version 0 inserts the row at version 1; a second insert of the id conflicts."""
    assert await store.write([_write("s1", 0, b"first")], NOW) == [COMMITTED]
    assert _unowned(await store.load("s1")) == StoredSession("s1", "alice", 1, b"first", False, 0)
    assert await store.write([_write("s1", 0, b"again", client_id="bob")], NOW) == [CONFLICT]
    assert _unowned(await store.load("s1")) == StoredSession("s1", "alice", 1, b"first", False, 0)


async def test_load_of_an_unknown_session_is_none(store: Store) -> None:
    """Loading an id that has no row answers None, not an error."""
    assert await store.load("nobody") is None


async def test_write_over_its_version_commits_and_over_a_stale_one_conflicts(store: Store) -> None:
    """Each commit bumps the version by one; a write based on an older version changes nothing."""
    await store.write([_write("s1", 0, b"v1")], NOW)
    assert await store.write([_write("s1", 1, b"v2")], NOW) == [COMMITTED]
    assert await store.write([_write("s1", 2, b"v3")], NOW) == [COMMITTED]
    assert await store.write([_write("s1", 2, b"stale")], NOW) == [CONFLICT]
    row = await _loaded(store, "s1")
    assert (row.version, row.state) == (3, b"v3")
    assert await store.write([_write("missing", 4, b"x")], NOW) == [CONFLICT]
    assert await store.load("missing") is None


async def test_batch_answers_per_write_in_order(store: Store) -> None:
    """One batch with a stale write among good ones: the good ones commit, the stale one alone conflicts."""
    await store.write([_write("a", 0), _write("b", 0)], NOW)
    outcomes = await store.write([_write("a", 1, b"a2"), _write("b", 5, b"b?"), _write("c", 0, b"c1")], NOW)
    assert outcomes == [COMMITTED, CONFLICT, COMMITTED]
    assert (await _loaded(store, "a")).version == 2
    assert (await _loaded(store, "b")).state == b"snapshot"
    assert (await _loaded(store, "c")).version == 1


async def test_ended_rows_refuse_writes(store: Store) -> None:
    """A row ended by a write or by end() stays readable and answers CONFLICT to every later write."""
    await store.write([_write("by-write", 0), _write("by-end", 0)], NOW)
    assert await store.write([_write("by-write", 1, b"last", ended=True)], NOW) == [COMMITTED]
    ended = await _loaded(store, "by-write")
    assert (ended.version, ended.state, ended.ended) == (2, b"last", True)
    assert await store.write([_write("by-write", 2, b"after")], NOW) == [CONFLICT]

    await store.end("by-end", NOW)
    row = await _loaded(store, "by-end")
    assert (row.version, row.state, row.ended) == (2, b"snapshot", True)
    assert await store.write([_write("by-end", 2, b"after")], NOW) == [CONFLICT]
    await store.end("by-end", NOW + 1)  # ending again changes nothing
    assert (await _loaded(store, "by-end")).version == 2


async def test_list_client_pages_in_key_order(store: Store) -> None:
    """Pages of a client's live sessions follow (created_at, id), ties broken by id, after the key given."""
    await store.write(
        [
            _write("d", 0, created_at=3.0),
            _write("b", 0, created_at=2.0, last_activity=7.0),
            _write("c", 0, created_at=2.0),
            _write("a", 0, created_at=5.0),
            _write("e", 0, created_at=1.0, ended=True),  # ended: never listed
            _write("f", 0, client_id="bob", created_at=2.5),  # another client's
        ],
        NOW,
    )
    first = await store.list_client("alice", None, 2)
    assert first == [("b", 2.0, 7.0), ("c", 2.0, NOW)]
    second = await store.list_client("alice", (2.0, "c"), 2)
    assert second == [("d", 3.0, NOW), ("a", 5.0, NOW)]
    assert await store.list_client("alice", (5.0, "a"), 2) == []
    assert await store.list_client("alice", (2.0, "b"), 10) == [
        ("c", 2.0, NOW),
        ("d", 3.0, NOW),
        ("a", 5.0, NOW),
    ]
    assert await store.list_client("bob", None, 10) == [("f", 2.5, NOW)]
    assert await store.list_client("carol", None, 10) == []


async def test_expire_ends_idle_rows_chunk_by_chunk(store: Store) -> None:
    """Expiry scans ids in chunks, ends idle live rows not resident, counts the live ones it leaves."""
    ids = [f"s{n}" for n in range(10)]
    idle = {"s1", "s2", "s5", "s8", "s9"}
    await store.write(
        [_write(session_id, 0, last_activity=10.0 if session_id in idle else 50.0) for session_id in ids], NOW
    )
    await store.end("s3", NOW)  # already ended: neither ended again nor live
    resident = frozenset({"s8"})  # idle by its row, but judged by the runtime

    steps = []
    after = ""
    while True:
        step = await store.expire(after, 4, 20.0, NOW + 5, resident)
        steps.append(step)
        after = step.next_after
        if not after:
            break
    assert [step.next_after for step in steps] == ["s3", "s7", ""]
    assert [(step.ended, step.live) for step in steps] == [(2, 1), (1, 3), (1, 1)]
    for session_id in ids:
        row = await _loaded(store, session_id)
        assert row.ended is (session_id in {"s1", "s2", "s3", "s5", "s9"}), session_id
    assert (await _loaded(store, "s1")).version == 2  # ending is a change like any other
    assert (await _loaded(store, "s8")).version == 1


async def test_purge_deletes_only_rows_ended_before_the_cutoff(store: Store) -> None:
    """Purge removes rows ended before the cutoff and says how many; live and recently ended rows stay."""
    await store.write([_write("live", 0), _write("old", 0), _write("recent", 0)], NOW)
    await store.end("old", 100.0)
    await store.end("recent", 300.0)
    assert await store.purge(200.0) == 1
    assert await store.load("old") is None
    assert (await _loaded(store, "recent")).ended
    assert not (await _loaded(store, "live")).ended
    assert await store.purge(200.0) == 0


async def test_touch_moves_last_activity_forward_only(store: Store) -> None:
    """touch raises last_activity to a later time, never lowers it, skips unknown ids, keeps the version."""
    await store.write([_write("s1", 0, last_activity=100.0), _write("s2", 0, last_activity=100.0)], NOW)
    await store.touch([("s1", 150.0), ("s2", 50.0), ("unknown", 200.0)])
    assert await store.list_client("alice", None, 10) == [("s1", NOW, 150.0), ("s2", NOW, 100.0)]
    assert (await _loaded(store, "s1")).version == 1
    # A touched session is no longer idle before a cutoff between the two times.
    step = await store.expire("", 10, 120.0, NOW, frozenset())
    assert (step.ended, step.live) == (1, 1)
    assert not (await _loaded(store, "s1")).ended


async def test_housekeeping_verbs_answer(store: Store) -> None:
    """maintain runs and size_bytes answers a byte count once sessions are stored."""
    await store.write([_write("s1", 0, b"x" * 100)], NOW)
    await store.maintain()
    size = await store.size_bytes()
    assert size is None or size >= 100


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_closed_store_refuses_calls(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """After close, loads and writes raise StoreError instead of touching anything."""
    store = await _open(kind, tmp_path, request)
    await store.write([_write("s1", 0)], NOW)
    await store.close()
    with pytest.raises(StoreError):
        await store.load("s1")
    with pytest.raises(StoreError):
        await store.write([_write("s1", 1)], NOW)


# -- MemoryStore alone ----------------------------------------------------------


async def test_memory_size_is_the_sum_of_snapshots() -> None:
    """MemoryStore's size_bytes is the total length of the stored snapshots."""
    store = MemoryStore()
    assert await store.size_bytes() == 0
    await store.write([_write("a", 0, b"x" * 10), _write("b", 0, b"y" * 32)], NOW)
    assert await store.size_bytes() == 42


async def test_closed_memory_store_raises_store_unavailable() -> None:
    """A closed MemoryStore refuses with StoreUnavailable; closing again is harmless."""
    store = MemoryStore()
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailable, match="memory is closed"):
        await store.list_client("alice", None, 10)


# -- fault injection --------------------------------------------------------------


async def test_failed_write_commits_nothing_of_its_batch() -> None:
    """fail_writes(1, after=1): the second transaction raises StoreUnavailable and stores none of
    its writes; the one before and the one after commit."""
    store = MemoryStore()
    store.faults.fail_writes(1, after=1)
    assert await store.write([_write("a", 0)], NOW) == [COMMITTED]
    with pytest.raises(StoreUnavailable, match="injected fault"):
        await store.write([_write("a", 1, b"a2"), _write("b", 0)], NOW)
    assert (await _loaded(store, "a")).version == 1
    assert await store.load("b") is None
    assert await store.write([_write("a", 1, b"a2"), _write("b", 0)], NOW) == [COMMITTED, COMMITTED]
    assert (store.faults.writes_seen, store.faults.writes_failed) == (3, 1)


async def test_fail_writes_fails_the_next_count_transactions() -> None:
    """fail_writes(2) fails the next two transactions, then writes commit again."""
    store = MemoryStore()
    store.faults.fail_writes(2)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await store.write([_write("a", 0)], NOW)
    assert await store.write([_write("a", 0)], NOW) == [COMMITTED]


async def test_injected_conflict_moves_the_version_and_keeps_the_state() -> None:
    """conflict_next_write: that session's next write answers CONFLICT, a reload shows the same
    state one version on, and a write over that version commits; other sessions are untouched."""
    store = MemoryStore()
    await store.write([_write("a", 0, b"a1"), _write("b", 0, b"b1")], NOW)
    store.faults.conflict_next_write("a")
    assert await store.write([_write("a", 1, b"a2"), _write("b", 1, b"b2")], NOW) == [CONFLICT, COMMITTED]
    row = await _loaded(store, "a")
    assert (row.version, row.state) == (2, b"a1")
    assert await store.write([_write("a", 2, b"a2")], NOW) == [COMMITTED]
    assert (await _loaded(store, "a")).version == 3


async def test_injected_conflict_on_a_first_write_stores_nothing() -> None:
    """An injected conflict on a session without a row answers CONFLICT and stores nothing."""
    store = MemoryStore()
    store.faults.conflict_next_write("new")
    assert await store.write([_write("new", 0)], NOW) == [CONFLICT]
    assert await store.load("new") is None


async def test_fenced_session_refuses_the_old_epoch_and_loads_the_new_one() -> None:
    """fence: writes with the old epoch answer FENCED and change nothing; a load returns the new
    epoch, and a write carrying it commits."""
    store = MemoryStore()
    await store.write([_write("a", 0, b"a1")], NOW)
    store.faults.fence("a")
    assert await store.write([_write("a", 1, b"old owner")], NOW) == [FENCED]
    row = await _loaded(store, "a")
    assert (row.version, row.state, row.epoch) == (1, b"a1", 1)
    assert await store.write([_write("a", 1, b"new owner", epoch=1)], NOW) == [COMMITTED]
    assert (await _loaded(store, "a")).state == b"new owner"
    with pytest.raises(KeyError):
        store.faults.fence("no row")


async def test_gate_holds_a_write_until_opened() -> None:
    """A write reaching a closed gate sets gate.waiting, is listed in gate.held and stores
    nothing until the gate opens; then it commits and the gate holds no more."""
    store = MemoryStore()
    await store.write([_write("a", 0, b"a1")], NOW)
    gate = store.faults.hold_writes()
    outcomes: list[list[WriteOutcome]] = []

    async def write() -> None:
        outcomes.append(await store.write([_write("a", 1, b"a2")], NOW))

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            await gate.waiting.wait()
            assert [[w.state for w in batch] for batch in gate.held] == [[b"a2"]]
            assert (await _loaded(store, "a")).state == b"a1"
            assert outcomes == []
            gate.open()
    assert outcomes == [[COMMITTED]]
    assert gate.held == []
    assert await store.write([_write("a", 2, b"a3")], NOW) == [COMMITTED]


async def test_write_held_while_the_store_closes_fails() -> None:
    """A write waiting at the gate when the store closes raises StoreUnavailable once released."""
    store = MemoryStore()
    gate = store.faults.hold_writes()

    async def write() -> None:
        with pytest.raises(StoreUnavailable):
            await store.write([_write("a", 0)], NOW)

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            await gate.waiting.wait()
            await store.close()
            gate.open()
    assert store.faults.writes_seen == 0


async def test_failing_loads_raise_until_cleared() -> None:
    """fail_loads: loads of those ids raise StoreUnavailable, others load; clear() ends it."""
    store = MemoryStore()
    await store.write([_write("a", 0), _write("b", 0)], NOW)
    store.faults.fail_loads("a")
    with pytest.raises(StoreUnavailable, match="loading session a"):
        await store.load("a")
    assert (await _loaded(store, "b")).version == 1
    store.faults.clear()
    assert (await _loaded(store, "a")).version == 1
