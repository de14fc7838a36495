"""Session events: each lifecycle step is told to listeners, with the session's owner."""

from __future__ import annotations

import anyio
import pytest

import actorstate
from actorstate import Config, SessionEvent, SessionQuarantined
from actorstate.clock import ManualClock

from .crash_hook import CrashOn

pytestmark = pytest.mark.anyio


async def _pass(clock: ManualClock, seconds: float, step: float = 60) -> None:
    """Let ``seconds`` pass on the manual clock, one maintenance tick at a time."""
    for _ in range(int(seconds // step)):
        clock.advance(step)
        await anyio.wait_all_tasks_blocked()


async def test_created_passivated_and_expired_are_told_with_the_owner() -> None:
    """A new session, its idle passivation and its expiry reach a listener, in that order."""
    clock = ManualClock()
    config = Config(idle_timeout=600, session_ttl=3600, maintenance_interval=60)
    events: list[SessionEvent] = []
    async with actorstate.open_state(config=config, clock=clock) as state:
        state.add_session_listener(events.append)
        session = await state.create_session("alice")
        await _pass(clock, 720)
        assert state.residence(session.id) == "passivated"
        await _pass(clock, 3660)
    assert [(event.kind, event.session_id, event.client_id) for event in events] == [
        ("created", session.id, "alice"),
        ("passivated", session.id, "alice"),
        ("expired", session.id, "alice"),
    ]


async def test_evictions_say_why() -> None:
    """Sessions dropped past the memory budget are told as evicted, with the reason."""
    events: list[SessionEvent] = []
    async with actorstate.open_state(config=Config(memory_budget_mb=0.5, max_resident=1_000_000)) as state:
        state.add_session_listener(events.append)
        for _ in range(3000):
            await state.create_session("bob")
        evicted = [event for event in events if event.kind == "evicted"]
        assert len(evicted) == state.stats()["evictions"]["memory"] > 0
    assert {(event.client_id, event.detail) for event in evicted} == {("bob", "memory")}


async def test_restarts_and_quarantine_are_told_and_a_listener_can_stop() -> None:
    """A crash's restart and a quarantine reach the listener; after stopping it hears nothing more."""
    clock = ManualClock()
    hook = CrashOn(crashes=10)
    config = Config(max_restarts=1, restart_backoff=1, restart_window=1000)
    events: list[SessionEvent] = []
    async with actorstate.open_state(config=config, fault_hook=hook, clock=clock) as state:
        stop = state.add_session_listener(events.append)
        session = await state.create_session("carol")
        hook.session_id = session.id

        async def call_until_quarantined() -> None:
            with pytest.raises(SessionQuarantined):
                await session.increment()

        async with anyio.create_task_group() as group:
            group.start_soon(call_until_quarantined)
            await hook.first_crash.wait()
            await anyio.wait_all_tasks_blocked()
            clock.advance(1)  # the restart comes; the call crashes the loop again: quarantined
        kinds = [event.kind for event in events]
        assert kinds[:2] == ["created", "restarted"]
        assert kinds[-1] == "quarantined"
        assert events[-1].client_id == "carol"
        assert "crashes" in events[-1].detail
        stop()
        await state.create_session("carol")
        assert len(events) == len(kinds)


async def test_a_failing_listener_changes_nothing() -> None:
    """A listener that raises is logged; the call it was told of succeeds and others still hear."""
    heard: list[str] = []

    def broken(event: SessionEvent) -> None:
        raise RuntimeError("listener bug")

    async with actorstate.open_state() as state:
        state.add_session_listener(broken)
        state.add_session_listener(lambda event: heard.append(event.kind))
        session = await state.create_session()
        assert await session.increment() == 1
    assert heard == ["created"]
