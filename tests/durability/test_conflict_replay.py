"""A conflict replays the calls since the last commit through the scheduler, as turns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import actorstate
from actorstate.model.messages import Increment

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


async def test_a_conflict_replays_through_the_turns_the_fault_hook_sees(tmp_path: Path) -> None:
    """Process B commits over A's version; A's next write conflicts, and its replay on B's
    state is a turn like any other: the fault hook sees it a second time, and the counter is exact."""
    path = tmp_path / "replay.db"
    log = TurnLog()
    async with (
        actorstate.open_state(path, fault_hook=log) as first,
        actorstate.open_state(path) as second,
    ):
        session = await first.create_session("alice")
        assert await session.increment(by=1) == 1
        assert await second.session(session.id, "alice").increment(by=10) == 11  # B commits version 3
        assert await session.increment(by=100) == 111  # A wrote over version 2: conflict, replay on 11
        assert first.stats()["conflicts"] == 1
        assert log.increments == [("counter", 1), ("counter", 100), ("counter", 100)]
    async with actorstate.open_state(path) as state:
        assert (await state.session(session.id, "alice").context())["metadata"] == {"counter": 111}


async def test_a_replayed_call_that_now_fails_fails_its_caller_only(tmp_path: Path) -> None:
    """A write that fit A's state but not B's newer one gets its error from the replay; nothing else changes."""
    path = tmp_path / "refused.db"
    async with actorstate.open_state(path) as first, actorstate.open_state(path) as second:
        session = await first.create_session()
        await session.set_preference("counter", 1)
        await second.session(session.id).set_preference("counter", "no longer a number")
        with pytest.raises(actorstate.InvalidInput, match="not an integer counter"):
            await session.increment()
        assert (await session.context())["metadata"] == {"counter": "no longer a number"}
        assert await session.set_preference("after", True) == {"counter": "no longer a number", "after": True}
