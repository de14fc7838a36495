"""Crashes of an actor's loop around commits and replays: every caller hears, nothing committed is denied."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actorstate
from actorstate import Config
from actorstate.clock import ManualClock
from actorstate.model.messages import AddContext
from actorstate.store.memory import MemoryStore

from .test_faults import GatedLoad, gated_connect

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


class CrashOnNth:
    """A fault hook that kills the loop on chosen (key, n-th time seen) turns of add_context."""

    def __init__(self, *crashes: tuple[str, int]) -> None:
        self.crashes = set(crashes)
        self.seen: dict[str, int] = {}

    def __call__(self, session_id: str, client_id: str | None, message: Any) -> None:
        if isinstance(message, AddContext):
            n = self.seen[message.key] = self.seen.get(message.key, 0) + 1
            if (message.key, n) in self.crashes:
                raise RuntimeError(f"injected crash on {message.key} #{n}")


async def _calls(session: actorstate.Session, results: dict[str, Any], key: str) -> None:
    try:
        results[key] = await session.add_context(key, 1)
    except Exception as error:
        results[key] = error


async def test_a_crash_before_a_queued_call_does_not_fail_the_call_before_it(tmp_path: Path) -> None:
    """Two calls queue while the session loads; the loop dies before the second. The first,
    held for its commit, commits and its caller hears so; the second runs after the restart."""
    path = tmp_path / "queued.db"
    async with actorstate.open_state(path) as state:
        session_id = (await state.create_session("alice")).id
    results: dict[str, Any] = {}
    gate = GatedLoad.gate = threading.Event()
    try:
        async with actorstate.open_state(
            path, fault_hook=CrashOnNth(("boom", 1)), connect=gated_connect
        ) as state:
            session = state.session(session_id, "alice")
            async with anyio.create_task_group() as tg:
                tg.start_soon(_calls, session, results, "first")  # activates: the session loads
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(_calls, session, results, "boom")  # queued behind it: one batch of two
                await anyio.wait_all_tasks_blocked()
                gate.set()
    finally:
        GatedLoad.gate = None
    assert results == {"first": 1, "boom": 2}
    async with actorstate.open_state(path) as state:
        assert (await state.session(session_id, "alice").context())["metadata"] == {"first": 1, "boom": 1}


async def test_a_crash_while_replaying_a_conflict_keeps_every_queued_call() -> None:
    """A commit meets a conflict while the actor is in backoff with calls queued, and its replay
    crashes too: nothing queued is dropped, and after the restarts every caller is answered."""
    store = MemoryStore()
    clock = ManualClock()
    hook = CrashOnNth(("crash", 1), ("a", 2))
    results: dict[str, Any] = {}
    config = Config(restart_backoff=1, restart_backoff_max=1, max_restarts=10)
    async with actorstate.open_state(store, fault_hook=hook, config=config, clock=clock) as state:
        session = await state.create_session("alice")
        gate = store.faults.hold_writes()
        store.faults.conflict_next_write(session.id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_calls, session, results, "a")
            await gate.waiting.wait()  # a's commit is held in flight
            tg.start_soon(_calls, session, results, "crash")  # the loop dies: backoff, 'crash' queued
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_calls, session, results, "b")  # queued too
            await anyio.wait_all_tasks_blocked()
            gate.open()  # conflict: reload, replay 'a' while in backoff
            with anyio.fail_after(10):
                while len(results) < 3:
                    clock.advance(1)  # each restart comes on the test's clock
                    await anyio.wait_all_tasks_blocked()
        assert results == {"a": 1, "crash": 2, "b": 3}
        assert (await session.context())["metadata"] == {"a": 1, "crash": 1, "b": 1}


async def test_interval_mode_keeps_acknowledged_writes_through_a_failed_flush() -> None:
    """Interval mode: writes were acknowledged before their flush; a flush that fails keeps them
    and the next interval stores them, instead of rolling them back."""
    store = MemoryStore()
    clock = ManualClock()
    config = Config(flush_interval=1)
    async with actorstate.open_state(store, durability="interval", config=config, clock=clock) as state:
        session = await state.create_session()
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        for expected in range(1, 6):
            assert await session.increment() == expected  # acknowledged at once
        store.faults.fail_writes(1)
        clock.advance(1)  # this flush fails
        await anyio.wait_all_tasks_blocked()
        assert state.stats()["failed_commits"] == 1
        assert (await session.context())["metadata"] == {"counter": 5}
        clock.advance(1)  # the next one stores them
        await anyio.wait_all_tasks_blocked()
    async with actorstate.open_state(store) as state:
        assert (await state.session(session.id).context())["metadata"] == {"counter": 5}
