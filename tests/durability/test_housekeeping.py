"""Housekeeping with a store: idle passivation, TTL expiry, purging, WAL checkpoints.

Idle passivation runs on trio's mock clock. The store's TTL works on
wall-clock times kept in the rows, so those tests age rows by editing them and
run one housekeeping pass directly (the maintenance task runs the same method
every ``housekeeping_interval``; with a mock clock that autojumps while the
database thread works, its timing would not be deterministic)."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING

import anyio
import pytest
import trio.testing

import actorstate
from actorstate import Config, SessionNotFound
from actorstate.runtime import housekeeping as housekeeping_module

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

CONFIG = Config(idle_timeout=600, session_ttl=3600, maintenance_interval=60, housekeeping_interval=120)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def test_idle_actor_leaves_memory_and_reloads_from_the_store(tmp_path: Path) -> None:
    path = str(tmp_path / "idle.db")
    async with actorstate.open_state(path, config=CONFIG) as state:
        session = await state.create_session()
        await session.add_context("topic", "billing")
        before = await session.context()
        await anyio.sleep(700)
        assert state.stats()["resident_actors"] == 0
        assert state.stats()["passivations"] == 1
        assert await session.context() == before
        assert state.stats()["activations"] == 2


async def test_store_ends_sessions_idle_past_ttl_and_purges_old_ended(tmp_path: Path) -> None:
    path = str(tmp_path / "ttl.db")
    async with actorstate.open_state(path, config=CONFIG) as state:
        old = await state.create_session()
        recent = await state.create_session()
        long_ended = await state.create_session()
        await long_ended.end()
        await anyio.sleep(700)  # all passivated: none resident any more
        day_ago = time.time() - 25 * 3600
        with sqlite3.connect(path) as db:
            db.execute("UPDATE sessions SET last_activity = ? WHERE id = ?", (day_ago, old.id))
            db.execute(
                "UPDATE sessions SET ended_at = ? WHERE id = ?", (time.time() - 30 * 86400, long_ended.id)
            )
        await state.housekeeping()
        assert state.stats()["sessions"] == 1  # counted in the store: only `recent` is live
        with pytest.raises(SessionNotFound):
            await old.context()
        assert (await recent.context())["metadata"] == {}
        assert state.stats()["expired"] == 1
        assert await state.list_sessions() == [recent.id]
    with sqlite3.connect(path) as db:
        ids = {row[0] for row in db.execute("SELECT id FROM sessions")}
    assert long_ended.id not in ids  # purged after ended_retention
    assert {old.id, recent.id} <= ids  # expired rows stay until their retention passes


async def test_expiry_scans_the_table_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TTL scan walks the whole table a chunk at a time and misses nothing."""
    monkeypatch.setattr(housekeeping_module, "_EXPIRY_CHUNK", 2)
    path = str(tmp_path / "chunks.db")
    async with actorstate.open_state(path, config=CONFIG) as state:
        sessions = [await state.create_session() for _ in range(7)]
        await anyio.sleep(700)  # passivated: the store decides
        stale = sessions[::2]
        with sqlite3.connect(path) as db:
            db.executemany(
                "UPDATE sessions SET last_activity = ? WHERE id = ?",
                [(time.time() - 25 * 3600, s.id) for s in stale],
            )
        await state.housekeeping()
        assert sorted(await state.list_sessions()) == sorted(s.id for s in sessions[1::2])
        for session in stale:
            with pytest.raises(SessionNotFound):
                await session.context()


async def test_checkpoint_keeps_the_wal_from_growing(tmp_path: Path) -> None:
    path = str(tmp_path / "wal.db")
    # Nothing idles out meanwhile: no background write may land after the checkpoint.
    config = Config(idle_timeout=10**9, session_ttl=10**9, housekeeping_interval=10**9)
    async with actorstate.open_state(path, config=config) as state:
        session = await state.create_session()
        for index in range(300):
            await session.set_preference("blob", "x" * 4000 + str(index))
        assert os.path.getsize(path + "-wal") > 0
        await state.housekeeping()
        assert os.path.getsize(path + "-wal") == 0
        assert state.stats()["db_bytes"] > 0
