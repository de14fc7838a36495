"""Fresh reads across processes: a session resident here reloads when another process commits to it."""

from __future__ import annotations

import functools
import sqlite3
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actorstate
from actorstate.model.messages import GetContext
from actorstate.state import open_runtime

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

# Another process: add to the counter of one session, and exit once that is acknowledged.
_WRITER = textwrap.dedent(
    """
    import sys, anyio, actorstate
    async def main(path, session_id, by):
        async with actorstate.open_state(path) as state:
            print(await state.session(session_id, "alice").increment(by=int(by)))
    anyio.run(main, *sys.argv[1:])
    """
)


def _write_elsewhere(path: Path, session_id: str, by: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path), session_id, str(by)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


async def test_a_read_sees_a_write_another_process_acknowledged(tmp_path: Path) -> None:
    """The session is resident here (read and written); another process adds 10 and exits;
    the next read here returns its write, and a write here goes on from it."""
    path = tmp_path / "shared.db"
    async with actorstate.open_state(path) as state:
        session = await state.create_session("alice")
        assert await session.increment() == 1
        assert (await session.context())["metadata"] == {"counter": 1}
        assert _write_elsewhere(path, session.id, 10) == 11
        assert (await session.context())["metadata"] == {"counter": 11}
        assert await session.increment() == 12
        assert state.stats()["refreshed"] == 1
        assert state.stats()["conflicts"] == 0  # reloaded before it answered, not found out at commit


async def test_own_commits_never_look_like_another_process(tmp_path: Path) -> None:
    """Alone on its file, a process reloads nothing, however much it writes and reads."""
    async with actorstate.open_state(tmp_path / "alone.db") as state:
        sessions = [await state.create_session() for _ in range(20)]
        for _ in range(10):
            for session in sessions:
                await session.increment()
                await session.context()
        await state.housekeeping()  # its commits and checkpoint are this process's too
        await sessions[0].context()
        assert state.stats()["refreshed"] == 0


async def test_a_session_with_calls_waiting_is_refreshed_too(tmp_path: Path) -> None:
    """A resident session with a call queued (busy, but nothing of its own unsaved) still
    reloads when another connection changed it: the read after it sees that write."""
    path = tmp_path / "busy.db"
    async with open_runtime(path) as runtime, actorstate.open_state(path) as other:
        state = actorstate.State(runtime)
        session = await state.create_session("alice")
        assert await session.increment() == 1
        assert await other.session(session.id, "alice").increment() == 2  # acknowledged over there
        await runtime.tell(session.id, GetContext(10))  # queued: the actor is busy, not dirty
        assert (await session.context())["metadata"] == {"counter": 2}


class _HeldAfterRead(sqlite3.Connection):
    """Holds the first statement starting with ``held`` after it has read the store, until released.

    Arm it with :meth:`arm`; ``reached`` is set once a statement is held.
    """

    held: str | None = None
    reached = threading.Event()
    release = threading.Event()

    @classmethod
    def arm(cls, statement: str) -> None:
        cls.reached.clear()
        cls.release.clear()
        cls.held = statement

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        cursor = super().execute(sql, *args, **kwargs)
        held = _HeldAfterRead.held
        if held is not None and sql.startswith(held):
            _HeldAfterRead.held = None
            _HeldAfterRead.reached.set()
            _HeldAfterRead.release.wait(30)
        return cursor


_VERSION_CHECK = "SELECT id, version FROM sessions WHERE id IN"
_LOAD = "SELECT client_id, version, state, ended_at FROM sessions"


async def test_a_caller_waiting_for_a_refresh_looks_again(tmp_path: Path) -> None:
    """A refresh that read the store before another connection's commit does not answer for a
    caller that saw that commit: the caller looks again, and reads the write."""
    path = tmp_path / "late.db"
    connect = functools.partial(sqlite3.connect, factory=_HeldAfterRead)
    async with actorstate.open_state(path, connect=connect) as state, actorstate.open_state(path) as other:
        session = await state.create_session("alice")
        bystander = await state.create_session("alice")
        assert await session.increment() == 1
        assert await other.session(bystander.id, "alice").increment() == 1  # makes the next call look
        _HeldAfterRead.arm(_VERSION_CHECK)
        reads: list[Any] = []

        async def read() -> None:
            reads.append((await session.context())["metadata"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)  # its refresh reads the versions, then is held
            assert await anyio.to_thread.run_sync(_HeldAfterRead.reached.wait, 30)
            assert await other.session(session.id, "alice").increment() == 2  # acknowledged after that read
            tg.start_soon(read)  # sees the newer commit, waits for the refresh in flight
            await anyio.wait_all_tasks_blocked()
            _HeldAfterRead.release.set()
        assert reads[-1] == {"counter": 2}


async def test_a_call_waits_for_a_refresh_in_flight_that_took_the_change_as_seen(tmp_path: Path) -> None:
    """Another connection's commit, acknowledged before a read here is invoked, sets a refresh
    going (for a call on another session); the refresh counts the commit as seen once it reads
    the store, before it reloads what moved. The read, arriving in between, waits for it and
    returns the write instead of the resident state from before it."""
    path = tmp_path / "seen.db"
    connect = functools.partial(sqlite3.connect, factory=_HeldAfterRead)
    async with actorstate.open_state(path, connect=connect) as state, actorstate.open_state(path) as other:
        session = await state.create_session("alice")
        bystander = await state.create_session("alice")
        assert await session.increment() == 1
        assert await bystander.increment() == 1
        assert await other.session(session.id, "alice").increment() == 2  # acknowledged over there
        _HeldAfterRead.arm(_VERSION_CHECK)
        reads: dict[str, Any] = {}

        async def read(which: actorstate.Session) -> None:
            reads[which.id] = (await which.context())["metadata"]

        async with anyio.create_task_group() as tg:
            tg.start_soon(read, bystander)  # its refresh reads the versions, then is held
            assert await anyio.to_thread.run_sync(_HeldAfterRead.reached.wait, 30)
            tg.start_soon(read, session)  # invoked after the commit; nothing reports it as news now
            await anyio.wait_all_tasks_blocked()
            _HeldAfterRead.release.set()
        assert reads == {session.id: {"counter": 2}, bystander.id: {"counter": 1}}


async def test_a_load_that_read_before_another_commit_reads_again(tmp_path: Path) -> None:
    """A session being loaded when another connection commits to it (and a caller saw that
    commit) is read again: the caller gets the newer state, not the one the load read first."""
    path = tmp_path / "loading.db"
    connect = functools.partial(sqlite3.connect, factory=_HeldAfterRead)
    async with actorstate.open_state(path) as other:
        session_id = (await other.create_session("alice")).id
        assert await other.session(session_id, "alice").increment() == 1
        async with actorstate.open_state(path, connect=connect) as state:
            session = state.session(session_id, "alice")
            _HeldAfterRead.arm(_LOAD)
            reads: list[Any] = []

            async def read() -> None:
                reads.append((await session.context())["metadata"])

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)  # loads the session: the row is read, then the load is held
                assert await anyio.to_thread.run_sync(_HeldAfterRead.reached.wait, 30)
                assert await other.session(session_id, "alice").increment() == 2  # acknowledged
                tg.start_soon(read)  # sees that commit; waits for the load
                await anyio.wait_all_tasks_blocked()
                _HeldAfterRead.release.set()
            assert reads[-1] == {"counter": 2}


async def test_a_refresh_whose_caller_was_cancelled_still_reloads(tmp_path: Path) -> None:
    """The call that set a refresh going is cancelled while the refresh is held after reading the
    store (which then counts the other connection's commit as seen): the refresh still reloads
    what moved, so a later read returns the write instead of the resident state from before it."""
    path = tmp_path / "cancelled.db"
    connect = functools.partial(sqlite3.connect, factory=_HeldAfterRead)
    async with actorstate.open_state(path, connect=connect) as state, actorstate.open_state(path) as other:
        session = await state.create_session("alice")
        bystander = await state.create_session("alice")
        assert await session.increment() == 1
        assert await bystander.increment() == 1
        assert await other.session(session.id, "alice").increment() == 2  # acknowledged over there
        _HeldAfterRead.arm(_VERSION_CHECK)
        async with anyio.create_task_group() as tg:
            tg.start_soon(bystander.context)  # its refresh reads the versions, then is held
            assert await anyio.to_thread.run_sync(_HeldAfterRead.reached.wait, 30)
            tg.cancel_scope.cancel()  # the caller gives up
        _HeldAfterRead.release.set()
        assert (await session.context())["metadata"] == {"counter": 2}
