"""Edges of the store found in review: cancellation during a load, snapshots of the
wrong types, reads during a version conflict, ending a quarantined session that
held replies, and shutdown retries."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import msgpack
import pytest

import actorstate
from actorstate import Config, SessionNotFound, SessionQuarantined
from actorstate.store.memory import MemoryStore

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def _make(path: str, **metadata: Any) -> str:
    async with actorstate.open_state(path) as state:
        session = await state.create_session()
        for key, value in metadata.items():
            await session.set_preference(key, value)
        return session.id


class SlowLoad(sqlite3.Connection):
    """Loading a session takes half a second (a busy disk); ``loading`` is set when one starts."""

    armed = False
    loading = threading.Event()

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if SlowLoad.armed and sql.startswith("SELECT client_id, version"):
            SlowLoad.loading.set()
            time.sleep(0.5)
        return super().execute(sql, *args, **kwargs)


def slow_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    return sqlite3.connect(*args, factory=SlowLoad, **kwargs)


async def test_outer_cancellation_during_a_load_still_closes(tmp_path: Path) -> None:
    """Cancelling the block while a session loads closes cleanly, without hanging."""
    path = str(tmp_path / "cancel.db")
    session_id = await _make(path, k="v")
    SlowLoad.loading.clear()
    SlowLoad.armed = True
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def read_while_loading() -> None:
                    async with actorstate.open_state(path, connect=slow_connect) as state:
                        await state.session(session_id).context()

                tg.start_soon(read_while_loading)
                # Cancel once the load has started, not after a guessed delay.
                await anyio.to_thread.run_sync(SlowLoad.loading.wait, 5)
                tg.cancel_scope.cancel()
    finally:
        SlowLoad.armed = False
    # The cancelled block still closed its database: its worker thread is gone.
    assert not [thread for thread in threading.enumerate() if thread.name == "actorstate-db"]
    async with actorstate.open_state(path) as state:
        assert (await state.session(session_id).context())["metadata"] == {"k": "v"}


async def test_snapshot_with_wrong_types_quarantines_only_its_session(tmp_path: Path) -> None:
    path = str(tmp_path / "types.db")
    bad = await _make(path)
    good = await _make(path, k="v")
    fields = [bad, "anonymous", 0.0, "yesterday", 0, {}, []]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE sessions SET state = ? WHERE id = ?", (b"\x01" + msgpack.packb(fields), bad))
    async with actorstate.open_state(path) as state:
        with pytest.raises(SessionQuarantined, match="last_activity is a str"):
            await state.session(bad).context()
        assert (await state.session(good).context())["metadata"] == {"k": "v"}


async def test_reads_wait_while_a_conflict_is_resolved(tmp_path: Path) -> None:
    """A read during conflict resolution sees only what commits, and the actor is never idle then."""
    path = str(tmp_path / "conflict.db")
    async with (
        actorstate.open_state(path, connect=slow_connect) as first,
        actorstate.open_state(path) as second,
    ):
        session = await first.create_session()
        assert await session.increment() == 1
        await second.session(session.id).set_preference("counter", "text")  # the other process wins
        SlowLoad.loading.clear()
        SlowLoad.armed = True
        seen: dict[str, Any] = {}

        async def writer() -> None:
            try:
                seen["write"] = await session.increment()
            except actorstate.InvalidInput as error:
                seen["write"] = error

        async def reader() -> None:
            # Once the reload has started, the conflict is being resolved.
            assert await anyio.to_thread.run_sync(SlowLoad.loading.wait, 30)
            seen["residence"] = first.residence(session.id)
            seen["read"] = (await session.context())["metadata"]

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer)
                tg.start_soon(reader)
        finally:
            SlowLoad.armed = False
        assert isinstance(seen["write"], actorstate.InvalidInput)  # re-applied on "text": refused
        assert seen["residence"] == "loading"
        assert seen["read"] == {"counter": "text"}  # never the uncommitted 2


async def test_ending_a_quarantined_session_answers_its_held_calls() -> None:
    """Calls held for a commit are answered when the session is ended, never left waiting."""
    store = MemoryStore()
    crash = {"on": False}

    def hook(session_id: str, client_id: str | None, message: Any) -> None:
        if crash["on"]:
            raise RuntimeError("injected crash")

    config = Config(max_restarts=0, flush_interval=3600)
    async with actorstate.open_state(store, durability="commit", config=config, fault_hook=hook) as state:
        other = await state.create_session()
        session = await state.create_session()
        results: list[Any] = []

        async def write(target: actorstate.Session) -> None:
            try:
                results.append(await target.increment())
            except actorstate.ActorStateError as error:
                results.append(error)

        # One flush at a time: while the other session's commit waits at the
        # gate, this session's write is held, waiting for the next flush.
        gate = store.faults.hold_writes()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(write, other)
                await gate.waiting.wait()
                tg.start_soon(write, session)
                await anyio.wait_all_tasks_blocked()
                crash["on"] = True
                with pytest.raises(SessionQuarantined):
                    await session.increment()
                crash["on"] = False
                with anyio.fail_after(5):
                    await session.end()
                    await anyio.wait_all_tasks_blocked()
                # Answered at once, while the flush before it is still held.
                assert len(results) == 1
                assert isinstance(results[0], SessionNotFound)
                gate.open()
        finally:
            gate.open()
        assert results[1] == 1  # the other session's write committed once the gate opened
        with pytest.raises(SessionNotFound):
            await session.context()


async def test_shutdown_retries_a_flush_blocked_by_a_short_lock(tmp_path: Path) -> None:
    """Interval-mode writes survive a close that meets another connection's brief write lock."""
    path = str(tmp_path / "retry.db")
    session_id = await _make(path)
    config = Config(flush_interval=3600, busy_timeout=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    async with anyio.create_task_group() as tg:
        async with actorstate.open_state(path, durability="interval", config=config) as state:
            session = state.session(session_id)
            for _ in range(5):
                await session.increment()
            blocker.execute("BEGIN IMMEDIATE")

            async def release_later() -> None:
                await anyio.sleep(0.35)
                blocker.execute("ROLLBACK")

            tg.start_soon(release_later)
    blocker.close()
    async with actorstate.open_state(path) as state:
        assert (await state.session(session_id).context())["metadata"] == {"counter": 5}
