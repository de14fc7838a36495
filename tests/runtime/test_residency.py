"""Residency: the resident cap, the memory budget, idle passivation and TTL expiry."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import anyio
import pytest
import trio.testing

import actorstate
from actorstate import Config, SessionNotFound
from actorstate.clock import ManualClock
from actorstate.model.codec import encode_session
from actorstate.runtime.memory import read_rss
from actorstate.state import open_runtime

from .crash_hook import CrashOn

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_resident_cap_passivates_and_reload_keeps_state_exactly() -> None:
    """Past max_resident the least recently used actors passivate; a call brings them back intact."""
    async with open_runtime(config=Config(max_resident=50)) as runtime:
        state = actorstate.State(runtime)
        sessions = []
        for index in range(200):
            session = await state.create_session(client_id=f"client{index % 3}")
            await session.add_context("index", index)
            await session.record_action("made", details=str(index))
            await session.set_preference("nested", {"list": [index, None, 1.5, True], "text": "é"})
            sessions.append(session)
        stats = state.stats()
        assert stats["resident_actors"] <= 50
        assert stats["passivated_sessions"] == 200 - stats["resident_actors"]
        assert stats["passivations"] >= 150
        # Byte-for-byte: what the actor encodes after a reload equals what it encoded before.
        first = sessions[0]
        assert state.residence(first.id) == "passivated"
        blob_before = runtime.residency.passivated[first.id].blob
        context = await first.context(max_turns=50)
        assert state.residence(first.id) == "ready"
        assert encode_session(runtime.residency.resident[first.id].state) == blob_before
        assert context["metadata"] == {"index": 0, "nested": {"list": [0, None, 1.5, True], "text": "é"}}
        for index, session in enumerate(sessions):
            assert (await session.context())["metadata"]["index"] == index
        assert sorted(await state.list_sessions("client1")) == sorted(s.id for s in sessions[1::3])
        assert state.stats()["sessions"] == 200


async def test_memory_budget_holds_while_100k_sessions_are_created() -> None:
    """With a budget far below the working set, eviction keeps memory near the budget."""
    budget_mb = 8
    config = Config(memory_budget_mb=budget_mb, max_resident=1_000_000)
    budget = budget_mb * 1024 * 1024
    gc.collect()
    rss_before = read_rss()
    async with actorstate.open_state(config=config) as state:
        recent: list[actorstate.Session] = []
        first_id = None
        peak_accounted = 0
        for index in range(100_000):
            session = await state.create_session()
            await session.increment()
            if first_id is None:
                first_id = session.id
            recent = [*recent[-9:], session]
            if index % 1000 == 0:
                peak_accounted = max(peak_accounted, state.stats()["accounted_bytes"])
        stats = state.stats()
        assert peak_accounted <= budget
        assert stats["accounted_bytes"] <= budget
        assert stats["evictions"]["memory"] > 50_000
        assert stats["sessions"] + stats["evictions"]["memory"] == 100_000
        # The oldest is gone, saying so; the newest are intact.
        with pytest.raises(SessionNotFound):
            await state.session(first_id).context()
        for session in recent:
            assert (await session.context())["metadata"] == {"counter": 1}
        gc.collect()
        rss_after = read_rss()
    if rss_before is not None and rss_after is not None:
        # Without eviction the same sessions take about 70 MB.
        assert rss_after - rss_before < 3 * budget


async def test_actor_with_waiting_messages_is_never_evicted() -> None:
    """Memory pressure skips an actor whose mailbox holds calls; they complete later."""
    hook = CrashOn(crashes=1)
    config = Config(memory_budget_mb=0.5, restart_backoff=60, max_resident=1_000_000)
    clock = ManualClock()
    async with actorstate.open_state(config=config, fault_hook=hook, clock=clock) as state:
        busy = await state.create_session()
        await busy.set_preference("keep", "me")
        hook.session_id = busy.id
        results: list[int] = []

        async def call() -> None:
            results.append(await busy.increment())

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)  # crashes; its call waits in the mailbox for the restart
            await hook.first_crash.wait()
            for _ in range(5000):  # far past the budget: everything idle is evicted
                await state.create_session()
            assert state.stats()["evictions"]["memory"] > 0
            assert state.residence(busy.id) == "backoff"
            assert results == []
            clock.advance(60)  # the backoff ends now, on the test's clock
        assert results == [1]
        assert (await busy.context())["metadata"] == {"keep": "me", "counter": 1}


class TestClock:
    """Idle passivation and TTL expiry, driven by trio's mock clock (no real sleeps)."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    CONFIG = Config(idle_timeout=600, session_ttl=3600, maintenance_interval=60)

    async def test_idle_actors_passivate_and_come_back_on_the_next_call(self) -> None:
        """An actor idle past idle_timeout leaves memory; the next call reloads it unchanged."""
        async with actorstate.open_state(config=self.CONFIG) as state:
            idle = await state.create_session()
            active = await state.create_session()
            await idle.add_context("topic", "billing")
            before = await idle.context()
            await anyio.sleep(300)
            await active.increment()
            await anyio.sleep(400)  # idle: 700 s without a call; active: 400 s
            stats = state.stats()
            assert (stats["resident_actors"], stats["passivated_sessions"]) == (1, 1)
            assert state.residence(idle.id) == "passivated"
            assert await idle.context() == before
            assert state.stats()["resident_actors"] == 2
            assert state.stats()["activations"] == 3

    async def test_sessions_idle_past_ttl_end(self) -> None:
        """A session untouched for session_ttl ends, resident or passivated; a used one lives on."""
        async with actorstate.open_state(config=self.CONFIG) as state:
            forgotten = await state.create_session()
            used = await state.create_session()
            for _ in range(8):  # 8 x 500 s: past the TTL for `forgotten` only
                await anyio.sleep(500)
                await used.increment()
            with pytest.raises(SessionNotFound):
                await forgotten.context()
            assert (await used.context())["metadata"] == {"counter": 8}
            assert state.stats()["expired"] == 1
            assert await state.list_sessions() == [used.id]


async def test_growth_of_the_host_process_does_not_evict_sessions() -> None:
    """RSS growth far beyond what sessions could cost is not blamed on sessions."""
    async with open_runtime(config=Config(memory_budget_mb=16)) as runtime:
        state = actorstate.State(runtime)
        sessions = [await state.create_session() for _ in range(200)]
        ballast = bytearray(64 * 1024 * 1024)
        ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: real RSS
        runtime.residency.sweep()
        assert state.stats()["evictions"] == {}
        for session in sessions:
            await session.context()
        del ballast


class TestIntruders:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    async def test_another_clients_calls_keep_nothing_alive(self) -> None:
        """Probing an id from another client neither refreshes nor reactivates the session."""
        config = Config(idle_timeout=600, session_ttl=3600, maintenance_interval=60)
        async with actorstate.open_state(config=config) as state:
            session = await state.create_session(client_id="alice")
            probe = state.session(session.id, client_id="mallory")
            for _ in range(10):
                await anyio.sleep(500)
                with pytest.raises(SessionNotFound):
                    await probe.context()
            with pytest.raises(SessionNotFound):
                await session.context()
            assert state.stats()["expired"] == 1


async def test_stats_right_after_open_never_report_a_wrong_session_count(tmp_path: Path) -> None:
    """Reopening a database of 251 sessions: the size is known at once, and the count is unknown (None)
    until the housekeeping pass that opening starts has counted 251, never 0."""
    path = tmp_path / "counted.db"
    async with actorstate.open_state(path) as state:
        for _ in range(251):
            await state.create_session()
    async with actorstate.open_state(path) as state:
        first = state.stats()
        assert first["db_bytes"] > 0
        assert first["sessions"] in (None, 251)
        await state.housekeeping()  # waits for the pass opening started, then makes one more
        assert state.stats()["sessions"] == 251


async def _pass(clock: ManualClock, seconds: float, step: float = 60) -> None:
    """Let ``seconds`` pass on the manual clock, one maintenance tick at a time."""
    for _ in range(int(seconds // step)):
        clock.advance(step)
        await anyio.wait_all_tasks_blocked()


async def test_idle_passivation_and_expiry_follow_the_injected_clock() -> None:
    """On either backend, a ManualClock alone drives idle passivation and TTL expiry: no real time passes."""
    clock = ManualClock()
    config = Config(idle_timeout=600, session_ttl=3600, maintenance_interval=60)
    async with actorstate.open_state(config=config, clock=clock) as state:
        idle = await state.create_session()
        active = await state.create_session()
        await idle.add_context("topic", "billing")
        before = await idle.context()
        await _pass(clock, 300)
        await active.increment()
        await _pass(clock, 420)  # idle: 720 s without a call; active: 420 s
        stats = state.stats()
        assert (stats["resident_actors"], stats["passivated_sessions"]) == (1, 1)
        assert await idle.context() == before  # a passivated session comes back unchanged
        await _pass(clock, 3660)
        with pytest.raises(SessionNotFound):
            await active.context()
        assert state.stats()["expired"] >= 1
