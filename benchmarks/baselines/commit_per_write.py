"""Commit per write: sessions in a dict, a lock each, every write its own SQLite transaction.

The durable design without group commit: a write is acknowledged once its
own transaction committed, on the same store actorstate uses (the same
file settings, the same worker thread), so a comparison measures batching
and nothing else. With ``cache=False`` it keeps no state in memory at
all: every call loads the row, applies the operation and writes it back
(the design that never runs out of memory, and pays for it per call).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import anyio

from actorstate.backend import parking_for_current_backend
from actorstate.config import Config
from actorstate.model.codec import decode_session, encode_session
from actorstate.model.session_state import SessionState, check_key
from actorstate.store.interface import SnapshotWrite, WriteOutcome
from actorstate.store.threaded import open_sqlite_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actorstate.store.threaded import ThreadedStore

CONFIG = Config()


class CommitPerWrite:
    """Sessions of one database, each write committed alone before it is acknowledged."""

    def __init__(self, store: ThreadedStore, cache: bool) -> None:
        self.store = store
        self.cache = cache
        self.states: dict[str, tuple[SessionState, int]] = {}  # state and its stored version
        self.locks: dict[str, anyio.Lock] = {}

    async def _load(self, session_id: str) -> tuple[SessionState, int]:
        if self.cache and session_id in self.states:
            return self.states[session_id]
        row = await self.store.load(session_id)
        if row is None:
            raise KeyError(session_id)
        found = decode_session(row.state), row.version
        if self.cache:
            self.states[session_id] = found
        return found

    def _lock(self, session_id: str) -> anyio.Lock:
        lock = self.locks.get(session_id)
        if lock is None:
            lock = self.locks[session_id] = anyio.Lock()
        return lock

    async def preload(self, ids: list[str]) -> None:
        for session_id in ids:
            await self._load(session_id)

    async def increment(self, session_id: str, key: str = "counter", by: int = 1) -> int:
        check_key(key, CONFIG)
        async with self._lock(session_id):
            state, version = await self._load(session_id)
            value = state.increment(key, by, time.time(), CONFIG)
            write = SnapshotWrite(
                session_id,
                state.client_id,
                version,
                encode_session(state),
                state.created_at,
                state.last_activity,
                False,
            )
            (outcome,) = await self.store.write([write], time.time())
            if outcome is not WriteOutcome.COMMITTED:
                raise RuntimeError(f"commit per write: {session_id} answered {outcome}")
            if self.cache:
                self.states[session_id] = state, version + 1
            return value

    async def context(self, session_id: str) -> dict[str, Any]:
        async with self._lock(session_id):
            state, _ = await self._load(session_id)
            return state.context(CONFIG.default_max_turns)


@contextlib.asynccontextmanager
async def open_commit_per_write(path: str, *, cache: bool = True) -> AsyncIterator[CommitPerWrite]:
    store = await open_sqlite_store(path, parking_for_current_backend())
    try:
        yield CommitPerWrite(store, cache)
    finally:
        await store.close()
