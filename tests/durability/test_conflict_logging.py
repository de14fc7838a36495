"""Conflicts with another process are routine: counted in stats and logged at DEBUG, not INFO."""

from __future__ import annotations

import logging

import pytest

import actorstate
from actorstate.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


async def test_conflicts_are_counted_and_logged_only_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Each write the store answers with a conflict (another writer committed first) is replayed,
    counted in stats, and logged at DEBUG: nothing about it reaches INFO."""
    store = MemoryStore()
    caplog.set_level(logging.DEBUG, logger="actorstate")
    async with actorstate.open_state(store) as state:
        session = await state.create_session()
        for _ in range(3):
            store.faults.conflict_next_write(session.id)
            await session.increment()
        assert (await session.context())["metadata"] == {"counter": 3}
        assert state.stats()["conflicts"] == 3
    replayed = [record for record in caplog.records if "changed in another process" in record.getMessage()]
    assert [record.levelno for record in replayed] == [logging.DEBUG] * 3
