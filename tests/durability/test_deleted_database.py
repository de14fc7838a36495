"""A database file deleted or replaced while it is open: writes are refused with a
StoreError naming the file, never acknowledged into a file nobody can open again."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import pytest

import actorstate
from actorstate import StoreError, StoreUnavailable
from actorstate.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from pathlib import Path


def _unlink_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        os.unlink(path + suffix)


@pytest.mark.anyio
async def test_write_after_the_database_is_deleted_fails(tmp_path: Path) -> None:
    """Once state.db, -wal and -shm are unlinked, the next write raises StoreError saying so,
    and leaving open_state says it again instead of exiting as if everything were stored."""
    path = str(tmp_path / "state.db")

    async def serve_then_lose_the_file() -> None:
        async with actorstate.open_state(path) as state:
            session = await state.create_session()
            assert await session.increment() == 1
            _unlink_database(path)
            with pytest.raises(
                StoreUnavailable, match=f"^{re.escape(path)} was deleted or moved away while open"
            ):
                await session.increment()
            with pytest.raises(StoreError, match="was deleted"):
                await state.create_session()
            # The refused write was rolled back: the session shows only what was stored.
            assert (await session.context())["metadata"] == {"counter": 1}

    with pytest.raises(StoreUnavailable, match="was deleted"):
        await serve_then_lose_the_file()


@pytest.mark.anyio
async def test_write_after_the_database_is_replaced_fails(tmp_path: Path) -> None:
    """A file moved over the open database (another inode at the path) refuses the next write."""
    path = str(tmp_path / "state.db")
    other = str(tmp_path / "other.db")
    async with actorstate.open_state(other) as state:
        await state.create_session()

    async def serve_then_lose_the_file() -> None:
        async with actorstate.open_state(path) as state:
            session = await state.create_session()
            await session.increment()
            os.replace(other, path)
            with pytest.raises(
                StoreError, match=f"^{re.escape(path)} was replaced by another file while open"
            ):
                await session.increment()

    with pytest.raises(StoreUnavailable, match="was replaced"):
        await serve_then_lose_the_file()


def test_housekeeping_checkpoint_notices_a_deleted_database(tmp_path: Path) -> None:
    """The WAL checkpoint run on every housekeeping tick fails once the file is gone, with nothing written."""
    path = str(tmp_path / "state.db")
    store = SQLiteStore(path)
    try:
        store.checkpoint()
        _unlink_database(path)
        with pytest.raises(StoreError, match="was deleted or moved away while open"):
            store.checkpoint()
        with pytest.raises(StoreError, match="was deleted or moved away while open"):
            store.purge(ended_before=0.0)
    finally:
        with pytest.raises(StoreError, match="was deleted or moved away while open"):
            store.close()  # closes all the same, and says why nothing since was kept
    assert not os.path.exists(path)
