"""Real store faults: a full disk, a locked database, failing I/O. Callers get StoreError,
nothing acknowledged is lost, and service resumes once the fault clears."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actorstate
from actorstate import Config, StoreError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


class Connections:
    """A ``connect`` replacement that remembers the connection it made."""

    def __init__(self, factory: type[sqlite3.Connection] = sqlite3.Connection) -> None:
        self.factory = factory
        self.made: list[sqlite3.Connection] = []

    def __call__(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = sqlite3.connect(*args, factory=self.factory, **kwargs)
        self.made.append(connection)
        return connection


class FailingConnection(sqlite3.Connection):
    """Fails the N-th statement after being armed, like a disk returning EIO."""

    fail_in: int | None = None

    @classmethod
    def _count(cls) -> None:
        if cls.fail_in is not None:
            cls.fail_in -= 1
            if cls.fail_in <= 0:
                cls.fail_in = None
                raise sqlite3.OperationalError("disk I/O error")

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self._count()
        return super().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self._count()
        return super().executemany(*args, **kwargs)


async def _on_db_thread(state: actorstate.State, fn: Any, *args: Any) -> Any:
    """Run ``fn`` against the state's own connection while nothing else uses it.

    A per-connection setting (``max_page_count``) must be changed on that
    connection; the test calls this only between calls, when the database
    thread is idle (sqlite3 serializes the connection itself).
    """
    await state.housekeeping()  # nothing of the state's own is running on the connection after this
    return fn(*args)


async def _stored_metadata(path: str, session_id: str) -> dict[str, Any]:
    async with actorstate.open_state(path) as state:
        context = await state.session(session_id).context()
        return context["metadata"]


async def test_disk_full_fails_the_write_and_rolls_back(tmp_path: Path) -> None:
    """With the database at its page limit, a growing write gets StoreError; older writes stay."""
    path = str(tmp_path / "full.db")
    connections = Connections()
    async with actorstate.open_state(path, connect=connections) as state:
        session = await state.create_session()
        await session.set_preference("small", "kept")
        await session.increment()
        db = connections.made[0]
        pages = (await _on_db_thread(state, lambda: db.execute("PRAGMA page_count").fetchone()))[0]
        await _on_db_thread(state, db.execute, f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match=r"database or disk is full"):
            await session.set_preference("big", "x" * 60_000)
        # The session is back at its last committed state, and still serving.
        assert (await session.context())["metadata"] == {"small": "kept", "counter": 1}
        assert await session.increment() == 2
        # The fault clears: the same write now succeeds.
        await _on_db_thread(state, db.execute, "PRAGMA max_page_count = 1073741823")
        assert "big" in await session.set_preference("big", "x" * 60_000)
        assert state.stats()["failed_commits"] >= 1
    metadata = await _stored_metadata(path, session.id)
    assert metadata["counter"] == 2
    assert len(metadata["big"]) == 60_000


async def test_locked_database_fails_after_busy_timeout_then_recovers(tmp_path: Path) -> None:
    """Another connection holding the write lock past busy_timeout makes writes fail, not hang."""
    path = str(tmp_path / "locked.db")
    async with actorstate.open_state(path, config=Config(busy_timeout=0.2)) as state:
        session = await state.create_session()
        await session.increment()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="database is locked"):
                await session.increment()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await session.context())["metadata"] == {"counter": 1}
        # Once the lock is gone, service resumes (after the store's backoff).
        assert await session.increment() == 2
    assert await _stored_metadata(path, session.id) == {"counter": 2}


async def test_io_error_fails_every_reply_of_that_commit(tmp_path: Path) -> None:
    """An I/O error during a group commit fails all its callers; acknowledged writes survive."""
    path = str(tmp_path / "io.db")
    FailingConnection.fail_in = None
    async with actorstate.open_state(path, connect=Connections(FailingConnection)) as state:
        sessions = [await state.create_session() for _ in range(10)]
        for session in sessions:
            await session.increment()
        await state.housekeeping()  # the pass opening started: its statements must not be counted
        FailingConnection.fail_in = 2  # mid-transaction: BEGIN, then the writes fail
        outcomes: list[object] = []

        async def write(session: actorstate.Session) -> None:
            try:
                outcomes.append(await session.increment())
            except StoreError as error:
                outcomes.append(error)

        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(write, session)
        failed = [o for o in outcomes if isinstance(o, StoreError)]
        assert len(failed) == 10, outcomes  # one transaction held all ten replies
        assert all("disk I/O error" in str(error) for error in failed)
        # Rolled back to the committed state, then serving again.
        for session in sessions:
            assert (await session.context())["metadata"] == {"counter": 1}
            assert await session.increment() == 2
    for session in sessions:
        assert await _stored_metadata(path, session.id) == {"counter": 2}


async def test_new_session_whose_insert_fails_does_not_exist(tmp_path: Path) -> None:
    """If the commit creating a session fails, the caller gets StoreError and no session is left."""
    path = str(tmp_path / "create.db")
    FailingConnection.fail_in = None
    async with actorstate.open_state(path, connect=Connections(FailingConnection)) as state:
        await state.housekeeping()  # the pass opening started: its statements must not be counted
        FailingConnection.fail_in = 2
        with pytest.raises(StoreError):
            await state.create_session(client_id="alice")
        assert await state.list_sessions("alice") == []
        session = await state.create_session(client_id="alice")
        assert await state.list_sessions("alice") == [session.id]
