"""What callers see when the store answers otherwise than COMMITTED: fenced sessions,
version conflicts, failed transactions, slow commits and failed loads, injected with
MemoryStore's faults and driven through the public API."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actorstate
from actorstate import SessionMoved, SessionNotFound, StoreUnavailable
from actorstate.model.codec import decode_session, encode_session
from actorstate.store.interface import SnapshotWrite, StoredSession, WriteOutcome
from actorstate.store.memory import MemoryStore, WriteGate

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from anyio.abc import TaskGroup

pytestmark = pytest.mark.anyio

# Fails a test that would otherwise hang; events order the steps, nothing waits on time.
HANG_GUARD = 10


@contextlib.contextmanager
def _guarded(store: MemoryStore) -> Iterator[None]:
    """Fail after HANG_GUARD seconds instead of hanging, and leave no write held at a gate
    (closing the state would wait for it)."""
    try:
        with anyio.fail_after(HANG_GUARD):
            yield
    finally:
        store.faults.clear()


async def _row(store: MemoryStore, session_id: str) -> StoredSession:
    row = await store.load(session_id)
    assert row is not None
    return row


async def _stored_metadata(store: MemoryStore, session_id: str) -> dict[str, Any]:
    return decode_session((await _row(store, session_id)).state).metadata


class Outcomes:
    """What each of a few concurrent calls ended with: its result, or the exception it raised."""

    def __init__(self) -> None:
        self.by_name: dict[str, Any] = {}

    def start(self, tg: TaskGroup, name: str, call: Callable[[], Awaitable[Any]]) -> None:
        async def run() -> None:
            try:
                self.by_name[name] = await call()
            except Exception as error:
                self.by_name[name] = error

        tg.start_soon(run)


# -- FENCED ---------------------------------------------------------------------


async def test_fenced_session_fails_held_calls_and_is_loaded_again_under_the_new_epoch() -> None:
    """A newer owner fences the session while a commit is in flight: the write and every call
    held behind it (another write, a read of uncommitted state) get SessionMoved, nothing of
    theirs is stored, and the actor is dropped. A later call finds no resident actor, loads the
    row again and gets its newer epoch, so its write commits: this is how a node takes a
    session back once it has become the owner again."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        session = await state.create_session()
        assert await session.increment() == 1
        activations = state.stats()["activations"]
        gate = store.faults.hold_writes()
        outcomes = Outcomes()
        with _guarded(store):
            async with anyio.create_task_group() as tg:
                outcomes.start(tg, "in flight", session.increment)
                await gate.waiting.wait()
                outcomes.start(tg, "write behind", lambda: session.increment(by=10))
                outcomes.start(tg, "read behind", session.context)
                await anyio.wait_all_tasks_blocked()
                assert outcomes.by_name == {}  # all three wait for the commit
                store.faults.fence(session.id)
                gate.open()
        assert set(outcomes.by_name) == {"in flight", "write behind", "read behind"}
        for name, outcome in outcomes.by_name.items():
            assert isinstance(outcome, SessionMoved), name
        assert state.stats()["fenced"] == 1
        assert state.stats()["resident_actors"] == 0
        row = await _row(store, session.id)
        assert (row.version, row.epoch) == (2, 1)
        assert decode_session(row.state).metadata == {"counter": 1}

        assert await session.increment() == 2
        assert state.stats()["activations"] == activations + 1
        row = await _row(store, session.id)
        assert (row.version, row.epoch) == (3, 1)
        assert decode_session(row.state).metadata == {"counter": 2}


# -- CONFLICT -------------------------------------------------------------------


async def test_injected_conflict_is_replayed_and_counts_stay_exact() -> None:
    """Fifty concurrent increments with a conflict in the middle: the conflicting write is
    reloaded and replayed, every caller gets a distinct value, the counter ends at exactly
    the number of increments, and stats count one conflict."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        session = await state.create_session()
        for _ in range(5):
            await session.increment()
        store.faults.conflict_next_write(session.id)
        results: list[int] = []

        async def five_increments() -> None:
            for _ in range(5):
                results.append(await session.increment())

        with _guarded(store):
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(five_increments)
        assert sorted(results) == list(range(6, 56))
        assert state.stats()["conflicts"] == 1
        assert (await session.context())["metadata"] == {"counter": 55}
    assert await _stored_metadata(store, session.id) == {"counter": 55}


async def test_another_writers_change_is_kept_and_ours_replayed_on_top() -> None:
    """Another process commits a change first: the next write conflicts, the session is
    reloaded with that change, and the caller's increment is applied on top of it."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        session = await state.create_session()
        assert await session.increment() == 1
        # Another process adds 100 to the stored counter and commits.
        row = await _row(store, session.id)
        theirs = decode_session(row.state)
        theirs.increment("counter", 100, theirs.last_activity, state.config)
        other = SnapshotWrite(
            row.id,
            row.client_id,
            row.version,
            encode_session(theirs),
            theirs.created_at,
            theirs.last_activity,
            False,
            row.epoch,
        )
        assert await store.write([other], 0.0) == [WriteOutcome.COMMITTED]

        assert await session.increment() == 102
        assert state.stats()["conflicts"] == 1
    assert await _stored_metadata(store, session.id) == {"counter": 102}


async def test_conflict_with_a_session_ended_elsewhere_answers_not_found() -> None:
    """When another process ended the session first, the conflicting write's caller gets
    SessionNotFound and later calls do too."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        session = await state.create_session()
        assert await session.increment() == 1
        await store.end(session.id, 0.0)
        with pytest.raises(SessionNotFound):
            await session.increment()
        with pytest.raises(SessionNotFound):
            await session.context()
    assert (await _row(store, session.id)).ended


# -- a failed transaction -------------------------------------------------------


async def test_nth_write_failing_rolls_the_session_back_and_it_keeps_serving() -> None:
    """The fourth transaction fails: its caller gets StoreUnavailable, the writes committed
    before it stay, the session returns to its last committed state and serves again."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        session = await state.create_session()  # transaction 1
        assert await session.increment() == 1  # transaction 2
        store.faults.fail_writes(1, after=1)
        assert await session.increment() == 2  # transaction 3
        with pytest.raises(StoreUnavailable, match="injected fault"):
            await session.increment()  # transaction 4
        assert await _stored_metadata(store, session.id) == {"counter": 2}
        assert (await session.context())["metadata"] == {"counter": 2}
        assert await session.increment() == 3
        assert state.stats()["failed_commits"] == 1
    assert await _stored_metadata(store, session.id) == {"counter": 3}


async def test_failed_group_commit_fails_every_caller_it_held() -> None:
    """A transaction holding two sessions fails: both callers get StoreUnavailable, the
    commit before it stays, both sessions roll back to what is stored and keep serving."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        first = await state.create_session()
        second = await state.create_session()
        gate = store.faults.hold_writes()
        outcomes = Outcomes()
        with _guarded(store):
            async with anyio.create_task_group() as tg:
                outcomes.start(tg, "first, committed", first.increment)
                await gate.waiting.wait()
                # Both wait for the next transaction, behind the held one.
                outcomes.start(tg, "first, failed", lambda: first.increment(by=10))
                outcomes.start(tg, "second, failed", second.increment)
                await anyio.wait_all_tasks_blocked()
                store.faults.fail_writes(1, after=1)
                gate.open()
        assert outcomes.by_name["first, committed"] == 1
        assert isinstance(outcomes.by_name["first, failed"], StoreUnavailable)
        assert isinstance(outcomes.by_name["second, failed"], StoreUnavailable)
        assert store.faults.writes_failed == 1
        assert (await first.context())["metadata"] == {"counter": 1}
        assert (await second.context())["metadata"] == {}
        assert await first.increment() == 2
        assert await second.increment() == 1
    assert await _stored_metadata(store, first.id) == {"counter": 2}
    assert await _stored_metadata(store, second.id) == {"counter": 1}


async def test_calls_made_during_a_failing_commit_fail_with_it() -> None:
    """Calls that ran while a commit was in flight built on its state: when that commit
    fails they get StoreUnavailable too, instead of waiting for ever, and the session
    serves again from what is stored."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        session = await state.create_session()
        assert await session.increment() == 1
        gate = store.faults.hold_writes()
        store.faults.fail_writes(1)
        outcomes = Outcomes()
        with _guarded(store):
            async with anyio.create_task_group() as tg:
                outcomes.start(tg, "in flight", session.increment)
                await gate.waiting.wait()
                outcomes.start(tg, "write meanwhile", lambda: session.increment(by=10))
                outcomes.start(tg, "read meanwhile", session.context)
                await anyio.wait_all_tasks_blocked()
                gate.open()
        assert set(outcomes.by_name) == {"in flight", "write meanwhile", "read meanwhile"}
        for name, outcome in outcomes.by_name.items():
            assert isinstance(outcome, StoreUnavailable), name
        assert (await session.context())["metadata"] == {"counter": 1}
        assert await session.increment() == 2


# -- a slow commit --------------------------------------------------------------


async def test_read_waits_for_a_slow_commit_in_commit_mode() -> None:
    """While a write's commit is held at the gate, a read of that session waits too (it
    must not see state that could still roll back); both complete once the commit lands."""
    store = MemoryStore()
    async with actorstate.open_state(store, durability="commit") as state:
        session = await state.create_session()
        gate = store.faults.hold_writes()
        outcomes = Outcomes()
        with _guarded(store):
            async with anyio.create_task_group() as tg:
                outcomes.start(tg, "write", session.increment)
                await gate.waiting.wait()
                outcomes.start(tg, "read", session.context)
                await anyio.wait_all_tasks_blocked()
                assert outcomes.by_name == {}
                assert await _stored_metadata(store, session.id) == {}
                gate.open()
        assert outcomes.by_name["write"] == 1
        assert outcomes.by_name["read"]["metadata"] == {"counter": 1}


async def test_a_flush_asked_for_during_another_waits_for_it() -> None:
    """One flush at a time: closing the state while the interval's flush is held at the store
    flushes after it, never beside it, so the last write is stored over the version the
    held one committed."""
    store = MemoryStore()
    session_ids: list[str] = []
    gates: list[WriteGate] = []
    ready = anyio.Event()

    async def use_then_close() -> None:
        async with actorstate.open_state(store, durability="interval") as state:
            session = await state.create_session()
            session_ids.append(session.id)
            gates.append(store.faults.hold_writes())
            await session.increment()  # acknowledged at once; its flush is held
            await gates[0].waiting.wait()
            await session.increment()  # dirty again: the close must flush it
            ready.set()
        # leaving the block: the close flushes what is dirty

    with _guarded(store):
        async with anyio.create_task_group() as tg:
            tg.start_soon(use_then_close)
            await ready.wait()
            await anyio.wait_all_tasks_blocked()
            held_then = len(gates[0].held)
            gates[0].open()
    assert held_then == 1  # the close's flush waited for the one in flight
    row = await _row(store, session_ids[0])
    assert decode_session(row.state).metadata == {"counter": 2}


# -- a failed load --------------------------------------------------------------


async def test_failed_load_fails_the_call_and_a_later_one_loads() -> None:
    """A session whose load fails answers StoreUnavailable; once loads work again the next
    call loads it with everything stored."""
    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        session_id = (await state.create_session()).id
        await state.session(session_id).increment()
    async with actorstate.open_state(store) as state:
        session = state.session(session_id)
        store.faults.fail_loads(session_id)
        # A load that failed tells nothing about the session (not even whose it is),
        # so the caller hears the store's error, never that the session is gone.
        with pytest.raises(StoreUnavailable, match="injected fault"):
            await session.context()
        store.faults.clear()
        assert await session.increment() == 2
