"""A conflict replays the calls since the last commit through the scheduler, as turns;
a session another process changed is answered from that process's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import actorstate
from actorstate.model.messages import Increment
from actorstate.store.memory import MemoryStore

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


class TurnLog:
    """A fault hook that only records the increments it sees, in order."""

    def __init__(self) -> None:
        self.increments: list[tuple[str, int]] = []

    def __call__(self, session_id: str, client_id: str | None, message: Any) -> None:
        if isinstance(message, Increment):
            self.increments.append((message.key, message.by))


async def test_a_conflict_replays_through_the_turns_the_fault_hook_sees() -> None:
    """A write that meets a conflict (another writer committed first) is replayed on the reloaded
    state as a turn like any other: the fault hook sees it a second time, and the counter is exact."""
    store = MemoryStore()
    log = TurnLog()
    async with actorstate.open_state(store, fault_hook=log) as state:
        session = await state.create_session("alice")
        assert await session.increment(by=1) == 1
        store.faults.conflict_next_write(session.id)
        assert await session.increment(by=100) == 101
        assert state.stats()["conflicts"] == 1
        assert log.increments == [("counter", 1), ("counter", 100), ("counter", 100)]
    async with actorstate.open_state(store) as state:
        assert (await state.session(session.id, "alice").context())["metadata"] == {"counter": 101}


async def test_a_call_that_fails_on_the_other_process_state_fails_its_caller_only(tmp_path: Path) -> None:
    """A write that fit A's copy but not B's newer state (which A reloads before answering) fails
    with the error B's state gives; nothing else changes."""
    path = tmp_path / "refused.db"
    async with actorstate.open_state(path) as first, actorstate.open_state(path) as second:
        session = await first.create_session()
        await session.set_preference("counter", 1)
        await second.session(session.id).set_preference("counter", "no longer a number")
        with pytest.raises(actorstate.InvalidInput, match="not an integer counter"):
            await session.increment()
        assert (await session.context())["metadata"] == {"counter": "no longer a number"}
        assert await session.set_preference("after", True) == {"counter": "no longer a number", "after": True}
