"""Another client's session answers like an unknown id in timing class too: each refusal of a
scoped call costs one store read, whether the session is unknown, resident and someone else's,
or resident and ended."""

from __future__ import annotations

import pytest

import actorstate
from actorstate.errors import SessionNotFound
from actorstate.store.memory import MemoryStore


class CountingStore(MemoryStore):
    """A MemoryStore that counts the loads of each session id."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: dict[str, int] = {}

    async def load(self, session_id: str):  # type: ignore[no-untyped-def]
        self.loads[session_id] = self.loads.get(session_id, 0) + 1
        return await super().load(session_id)


@pytest.mark.anyio
async def test_every_refusal_of_a_scoped_call_costs_one_store_read() -> None:
    """Unknown id: one read (its activation). Alice's resident session asked for by bob: one read,
    though memory alone could refuse. Her ended session, still resident: one read. Alice's own
    calls on her resident session read nothing."""
    store = CountingStore()
    async with actorstate.open_state(store) as state:
        alices = await state.create_session("alice")
        await alices.increment()
        ended = await state.create_session("alice")
        await ended.end()
        unknown = "00000000-0000-4000-8000-000000000000"
        store.loads.clear()

        await alices.increment()
        assert store.loads == {}

        for session_id in (unknown, alices.id, ended.id):
            with pytest.raises(SessionNotFound):
                await state.session(session_id, "bob").context()
            assert store.loads.get(session_id) == 1, (session_id, store.loads)
        assert state.residence(alices.id) == "ready"
