"""A synchronous store engine served from one worker thread, as a :class:`~.interface.Store`.

The SQLite and PostgreSQL engines block; every call runs
on the engine's own :class:`~.worker.DatabaseThread`, in order, and the
event loop only waits for the answer. One thread means one connection and a
strict order of transactions, with no lock around the connection.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import TYPE_CHECKING, Any, Protocol

from .sqlite import SQLiteStore
from .worker import DatabaseThread

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ..backend import Parking
    from .interface import ExpiryStep, SessionRow, SnapshotWrite, StoredSession, WriteOutcome

__all__ = ["StoreEngine", "ThreadedStore", "open_sqlite_store"]


class StoreEngine(Protocol):
    """The synchronous side of a store: the :class:`~.interface.Store` methods, blocking."""

    @property
    def name(self) -> str: ...
    def load(self, session_id: str) -> StoredSession | None: ...
    def owner_of(self, session_id: str) -> str | None: ...
    def write(self, writes: Sequence[SnapshotWrite], now: float) -> list[WriteOutcome]: ...
    def end(self, session_id: str, now: float) -> None: ...
    def list_client(
        self, client_id: str, after: tuple[float, str] | None, limit: int
    ) -> list[SessionRow]: ...
    def expire(
        self, after_id: str, limit: int, idle_before: float, now: float, resident: frozenset[str]
    ) -> ExpiryStep: ...
    def touch(self, last_uses: Sequence[tuple[str, float]]) -> None: ...
    def purge(self, ended_before: float) -> int: ...
    def maintain(self) -> None: ...
    def size_bytes(self) -> int: ...
    def moved(self, versions: Mapping[str, int]) -> list[str]: ...
    def release(self, leases: Sequence[tuple[str, int]]) -> None: ...
    def close(self) -> None: ...


class ThreadedStore:
    """Runs a :class:`StoreEngine` on its worker thread; implements :class:`~.interface.Store`."""

    def __init__(
        self, engine: StoreEngine, worker: DatabaseThread, maybe_changed: Callable[[], bool] | None = None
    ) -> None:
        self._engine = engine
        self._worker = worker
        # Called from the event loop before every call, so it must be cheap:
        # SQLite's change watch, PostgreSQL's lease book (a renewal is due).
        self._maybe_changed = maybe_changed

    @property
    def name(self) -> str:
        return self._engine.name

    async def load(self, session_id: str) -> StoredSession | None:
        return await self._worker.run(self._engine.load, session_id)

    async def owner_of(self, session_id: str) -> str | None:
        return await self._worker.run(self._engine.owner_of, session_id)

    async def write(self, writes: Sequence[SnapshotWrite], now: float) -> list[WriteOutcome]:
        return await self._worker.run(self._engine.write, writes, now)

    async def end(self, session_id: str, now: float) -> None:
        await self._worker.run(self._engine.end, session_id, now)

    async def list_client(
        self, client_id: str, after: tuple[float, str] | None, limit: int
    ) -> list[SessionRow]:
        return await self._worker.run(self._engine.list_client, client_id, after, limit)

    async def expire(
        self, after_id: str, limit: int, idle_before: float, now: float, resident: frozenset[str]
    ) -> ExpiryStep:
        return await self._worker.run(self._engine.expire, after_id, limit, idle_before, now, resident)

    async def touch(self, last_uses: Sequence[tuple[str, float]]) -> None:
        await self._worker.run(self._engine.touch, last_uses)

    async def purge(self, ended_before: float) -> int:
        return await self._worker.run(self._engine.purge, ended_before)

    async def maintain(self) -> None:
        await self._worker.run(self._engine.maintain)

    async def size_bytes(self) -> int | None:
        return await self._worker.run(self._engine.size_bytes)

    def maybe_changed(self) -> bool:
        maybe_changed = self._maybe_changed
        return maybe_changed is not None and maybe_changed()

    async def moved(self, versions: Mapping[str, int]) -> list[str]:
        return await self._worker.run(self._engine.moved, versions)

    async def release(self, leases: Sequence[tuple[str, int]]) -> None:
        await self._worker.run(self._engine.release, leases)

    async def close(self) -> None:
        """Close the engine on its thread (after every job queued before), then end the thread."""
        try:
            await self._worker.run(self._engine.close)
        finally:
            await self._worker.stop()


async def open_sqlite_store(
    path: str,
    parking: Parking,
    *,
    busy_timeout: float = 5.0,
    connect: Callable[..., Any] | None = None,
) -> ThreadedStore:
    """Open (creating or migrating) the SQLite database at ``path`` on a new worker thread.

    Error handling:
        DatabaseRefused: not an SQLite database, another application's, newer, or corrupt.
        StoreUnavailable: it cannot be opened now.
    """
    worker = DatabaseThread(parking, name="actorstate-db")
    try:
        engine = await worker.run(
            functools.partial(SQLiteStore, busy_timeout=busy_timeout, connect=connect or sqlite3.connect),
            path,
        )
    except BaseException:
        await worker.stop()
        raise
    return ThreadedStore(engine, worker, engine.changes.maybe_changed)
