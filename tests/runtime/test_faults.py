"""Faults inside actors: raising turns, dying loops, restarts, quarantine, overload."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actorstate
from actorstate import Config, Overloaded, SessionNotFound, SessionQuarantined
from actorstate.clock import ManualClock
from actorstate.state import open_runtime

from .crash_hook import CrashOn

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_raising_update_rolls_back_and_actor_keeps_serving() -> None:
    """A turn that raises leaves the state exactly as before; the caller gets the error."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        await session.set_preference("items", [1, 2])
        await session.increment()
        before = await session.context()

        def half_done(metadata: dict[str, object]) -> None:
            metadata["items"].append(3)  # type: ignore[attr-defined]
            metadata["counter"] = 99
            raise ValueError("changed my mind")

        with pytest.raises(ValueError, match="changed my mind"):
            await session.update(half_done)
        assert await session.context() == before
        assert await session.increment() == 2


async def test_update_that_breaks_the_rules_changes_nothing() -> None:
    """An update leaving a non-JSON value is refused whole."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        await session.set_preference("a", 1)

        def sneak(metadata: dict[str, object]) -> None:
            metadata["a"] = 2
            metadata["b"] = {1, 2}

        with pytest.raises(actorstate.InvalidInput, match="a set is not a JSON value"):
            await session.update(sneak)
        assert (await session.context())["metadata"] == {"a": 1}


async def test_dead_loop_is_restarted_from_last_good_state(caplog: pytest.LogCaptureFixture) -> None:
    """After its loop dies the actor restarts with its state, and the pending call completes."""
    hook = CrashOn(crashes=1)
    async with actorstate.open_state(fault_hook=hook) as state:
        session = await state.create_session()
        await session.add_context("kept", "yes")
        hook.session_id = session.id
        with caplog.at_level(logging.WARNING, logger="actorstate"):
            assert await session.increment() == 1  # crashes once, then runs after the restart
        assert hook.crashed == 1
        assert await session.increment() == 2
        context = await session.context()
        assert context["metadata"] == {"kept": "yes", "counter": 2}
        assert state.stats()["restarts"] == 1
        assert state.stats()["quarantined"] == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("crashed (InjectedCrash('injected crash 1'))" in m for m in messages), messages
    assert any(m == f"session {session.id} restarted" for m in messages), messages


async def test_repeated_crashes_quarantine_only_that_session(caplog: pytest.LogCaptureFixture) -> None:
    """More than max_restarts crashes within the window quarantine the session."""
    hook = CrashOn(crashes=100)
    config = Config(max_restarts=3, restart_window=60, restart_backoff=0.001)
    async with actorstate.open_state(config=config, fault_hook=hook) as state:
        doomed = await state.create_session()
        healthy = await state.create_session()
        await doomed.set_preference("note", "before")
        hook.session_id = doomed.id
        with caplog.at_level(logging.WARNING, logger="actorstate"):
            with pytest.raises(SessionQuarantined, match="quarantined after 4 crashes within 60 s"):
                await doomed.increment()
        assert hook.crashed == 4
        assert state.stats()["restarts"] == 3
        assert state.stats()["quarantined"] == 1
        # Every later call fails the same way, reads included.
        with pytest.raises(SessionQuarantined):
            await doomed.context()
        # Another client still cannot tell the session exists.
        with pytest.raises(SessionNotFound):
            await state.session(doomed.id, client_id="mallory").context()
        # Other sessions are unaffected.
        assert await healthy.increment() == 1
        # Ending is the way out.
        await doomed.end()
        with pytest.raises(SessionNotFound):
            await doomed.context()
        assert state.stats()["quarantined"] == 0
    assert any(
        "quarantined: 4 crashes" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


def restart_now(clock: ManualClock) -> None:
    """End every backoff now: tests order steps on a manual clock instead of waiting on timers."""
    clock.advance(60)


async def test_full_mailbox_gives_overloaded_and_loses_nothing() -> None:
    """While an actor cannot drain, callers past mailbox_size get Overloaded; the rest complete."""
    hook = CrashOn(crashes=1)
    config = Config(mailbox_size=4, ask_timeout=0.05, restart_backoff=60)
    clock = ManualClock()
    async with actorstate.open_state(config=config, fault_hook=hook, clock=clock) as state:
        session = await state.create_session()
        hook.session_id = session.id
        results: list[int] = []

        async def call() -> None:
            results.append(await session.increment())

        async with anyio.create_task_group() as tg:
            for _ in range(4):  # the first crashes the loop; all four wait for the restart
                tg.start_soon(call)
            while state.stats()["mailbox_high_water"] < 4:
                await anyio.lowlevel.checkpoint()
            assert results == []
            with pytest.raises(Overloaded, match=r"has 4 calls waiting and none finished within 0\.05 s"):
                await session.increment()
            assert results == []
            restart_now(clock)
        assert sorted(results) == [1, 2, 3, 4]
        assert (await session.context())["metadata"] == {"counter": 4}


async def test_cancelled_caller_leaves_nothing_behind() -> None:
    """A call cancelled while queued is skipped: its turn never runs."""
    hook = CrashOn(crashes=1)
    clock = ManualClock()
    async with actorstate.open_state(
        config=Config(restart_backoff=60), fault_hook=hook, clock=clock
    ) as state:
        session = await state.create_session()
        hook.session_id = session.id
        cancelled = anyio.Event()

        async def cancelled_call(scope: anyio.CancelScope) -> None:
            with scope:
                await session.increment("other", by=5)
            cancelled.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(session.increment)  # crashes the loop, waits for the restart
            await hook.first_crash.wait()
            scope = anyio.CancelScope()
            tg.start_soon(cancelled_call, scope)
            await anyio.wait_all_tasks_blocked()  # queued behind the crashed call
            scope.cancel()
            await cancelled.wait()
            assert scope.cancelled_caught
            restart_now(clock)
        assert (await session.context())["metadata"] == {"counter": 1}


async def test_update_raising_stopiteration_reaches_its_caller() -> None:
    """Even StopIteration from a queued turn is delivered (as RuntimeError), never a hang."""
    hook = CrashOn(crashes=1)
    async with actorstate.open_state(config=Config(restart_backoff=0.01), fault_hook=hook) as state:
        session = await state.create_session()
        hook.session_id = session.id

        def stop(metadata: dict[str, object]) -> None:
            raise StopIteration

        async with anyio.create_task_group() as tg:
            tg.start_soon(session.increment)  # crashes: the next call queues behind it
            await hook.first_crash.wait()
            with anyio.fail_after(5), pytest.raises(RuntimeError, match="StopIteration"):
                await session.update(stop)
        assert (await session.context())["metadata"] == {"counter": 1}


async def test_close_while_callers_wait_for_a_restart_fails_them() -> None:
    """Leaving open_state with calls queued on a crashed actor fails them with StateClosed."""
    hook = CrashOn(crashes=1)
    config = Config(mailbox_size=1, restart_backoff=60, ask_timeout=60)
    outcomes: list[object] = []

    async def call(session: actorstate.Session) -> None:
        try:
            outcomes.append(await session.increment())
        except actorstate.StateClosed as error:
            outcomes.append(error)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            async with actorstate.open_state(config=config, fault_hook=hook) as state:
                session = await state.create_session()
                hook.session_id = session.id
                tg.start_soon(call, session)  # crashes; queued for a restart 60 s away
                await hook.first_crash.wait()
                tg.start_soon(call, session)  # the mailbox is full: waits for room
                await anyio.wait_all_tasks_blocked()
    assert len(outcomes) == 2
    assert all(isinstance(o, actorstate.StateClosed) for o in outcomes)


async def test_caller_waiting_for_room_follows_a_passivated_session() -> None:
    """A caller waiting on a full mailbox is not told SessionNotFound if the session was passivated meanwhile.

    The race (the mailbox drains, the actor goes idle and is passivated before
    the waiting caller runs) is laid out step by step through the runtime's seam.
    """
    hook = CrashOn(crashes=1)
    config = Config(mailbox_size=1, restart_backoff=60, ask_timeout=30)
    async with open_runtime(config=config, fault_hook=hook) as runtime:
        state = actorstate.State(runtime)
        session = await state.create_session()
        hook.session_id = session.id
        results: dict[str, object] = {}

        async def call(name: str) -> None:
            results[name] = await session.increment()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "first")  # crashes: waits in the (now full) mailbox
            await hook.first_crash.wait()
            tg.start_soon(call, "waiter")  # the mailbox is full: waits for room
            await anyio.wait_all_tasks_blocked()
            actor = runtime.residency.resident[session.id]
            # The restart and the scheduler's next pass, in one go: the mailbox
            # drains and the waiter is told there is room...
            runtime.scheduler.restart(actor)
            runtime.scheduler.drain()
            # ...and before the waiter runs, the now idle actor is passivated.
            runtime.residency.passivate(actor)
            assert state.residence(session.id) == "passivated"
        assert results == {"first": 1, "waiter": 2}
        assert (await session.context())["metadata"] == {"counter": 2}


class UserBaseException(BaseException):
    """A BaseException of the user's own."""


class GatedLoad(sqlite3.Connection):
    """Loading a session waits until the test opens the gate: calls queue in the mailbox meanwhile."""

    gate: threading.Event | None = None

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        gate = GatedLoad.gate
        if gate is not None and sql.startswith("SELECT client_id, version"):
            gate.wait(30)
        return super().execute(sql, *args, **kwargs)


def gated_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    return sqlite3.connect(*args, factory=GatedLoad, **kwargs)


@pytest.mark.parametrize(
    ("raised", "caller_gets"),
    [
        (KeyboardInterrupt, KeyboardInterrupt),
        (SystemExit, SystemExit),
        (UserBaseException, UserBaseException),
        (asyncio.CancelledError, RuntimeError),
        (GeneratorExit, RuntimeError),
    ],
)
async def test_base_exception_from_a_queued_update_reaches_only_its_caller(
    tmp_path: Path, raised: type[BaseException], caller_gets: type[BaseException]
) -> None:
    """A BaseException raised by ``update``'s function in a queued turn goes to that caller only.

    The turn runs in the scheduler (the session is loading, so every call
    queues): the caller gets the exception (a cancellation or GeneratorExit
    arrives as RuntimeError: the caller was not cancelled, nor closed), the calls
    queued before and after it get their results, and the block goes on.
    """
    path = tmp_path / "queued.db"
    async with actorstate.open_state(path) as state:
        session_id = (await state.create_session()).id
    gate = GatedLoad.gate = threading.Event()
    results: dict[str, object] = {}
    try:
        async with actorstate.open_state(path, connect=gated_connect) as state:
            session = state.session(session_id)

            def user_code(metadata: dict[str, object]) -> None:
                metadata["counter"] = 100
                raise raised("raised by user code")

            async def increment(name: str) -> None:
                results[name] = await session.increment()

            async def update() -> None:
                try:
                    await session.update(user_code)
                except caller_gets as error:
                    results["update"] = type(error)

            async with anyio.create_task_group() as tg:
                for task in (
                    functools.partial(increment, "before"),
                    update,
                    functools.partial(increment, "after"),
                ):
                    tg.start_soon(task)
                    await anyio.wait_all_tasks_blocked()
                gate.set()
            results["still serving"] = await session.increment()
    finally:
        GatedLoad.gate = None
    assert results == {"before": 1, "update": caller_gets, "after": 2, "still serving": 3}


async def test_update_with_an_async_function_is_refused_and_changes_nothing() -> None:
    """``update(async_fn)`` is refused with InvalidInput naming the mistake, however the coroutine hides."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        await session.set_preference("counter", 1)

        async def bump(metadata: dict[str, Any]) -> None:
            metadata["counter"] += 1

        class AsyncCallable:
            async def __call__(self, metadata: dict[str, Any]) -> None:
                metadata["counter"] += 1

        with pytest.raises(actorstate.InvalidInput, match="not the async function"):
            await session.update(bump)
        with pytest.raises(actorstate.InvalidInput, match="returned an awaitable; a turn cannot await"):
            await session.update(lambda metadata: bump(metadata))
        with pytest.raises(actorstate.InvalidInput, match="returned an awaitable; a turn cannot await"):
            await session.update(AsyncCallable())
        assert (await session.context())["metadata"] == {"counter": 1}
        assert await session.increment() == 2
