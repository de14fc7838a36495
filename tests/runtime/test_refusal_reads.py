"""Another client's session answers like an unknown id in timing class too: a refused scoped call
costs one read of the owner alone, whether the session is unknown, stored and someone else's,
resident and someone else's, or ended; another client's session is never loaded or made resident."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import actorstate
from actorstate.errors import SessionNotFound
from actorstate.store.memory import MemoryStore

if TYPE_CHECKING:
    from pathlib import Path

    from actorstate.store.interface import StoredSession


class CountingStore(MemoryStore):
    """A MemoryStore that records every read: ("load" or "owner", session id)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    async def load(self, session_id: str) -> StoredSession | None:
        self.reads.append(("load", session_id))
        return await super().load(session_id)

    async def owner_of(self, session_id: str) -> str | None:
        self.reads.append(("owner", session_id))
        return await super().owner_of(session_id)


UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.mark.anyio
async def test_every_refusal_of_a_scoped_call_costs_one_owner_read() -> None:
    """Unknown id, alice's resident session, her ended one: each refusal for bob reads the owner
    once and loads nothing. Alice's own calls on her resident session read nothing."""
    store = CountingStore()
    async with actorstate.open_state(store) as state:
        alices = await state.create_session("alice")
        await alices.increment()
        ended = await state.create_session("alice")
        await ended.end()
        store.reads.clear()

        await alices.increment()
        assert store.reads == []

        for session_id in (UNKNOWN, alices.id, ended.id):
            with pytest.raises(SessionNotFound):
                await state.session(session_id, "bob").context()
            assert store.reads == [("owner", session_id)], session_id
            store.reads.clear()


@pytest.mark.anyio
async def test_another_clients_stored_session_is_never_loaded() -> None:
    """After a restart alice's session is stored, not resident: bob's call reads its owner only,
    loads nothing and leaves it out of memory, and counts as an unknown id's call does (one
    activation begun); alice's call then reads the owner and loads it."""
    store = CountingStore()
    async with actorstate.open_state(store) as state:
        alices = await state.create_session("alice")
        await alices.increment()
    async with actorstate.open_state(store) as state:
        store.reads.clear()
        with pytest.raises(SessionNotFound):
            await state.session(alices.id, "bob").increment()
        assert store.reads == [("owner", alices.id)]
        assert state.residence(alices.id) is None
        with pytest.raises(SessionNotFound):
            await state.session(UNKNOWN, "bob").increment()
        assert state.stats()["activations"] == 2  # the same for both
        assert state.stats()["resident_actors"] == 0
        store.reads.clear()
        assert await state.session(alices.id, "alice").increment() == 2
        assert store.reads == [("owner", alices.id), ("load", alices.id)]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_owner_of_answers_the_owner_of_live_and_ended_rows_and_none_for_missing(
    kind: str, tmp_path: Path
) -> None:
    """Both stores: owner_of names the client of a live row and of an ended one, None for no row."""
    from actorstate.backend import parking_for_current_backend
    from actorstate.store.threaded import open_sqlite_store

    store: Any = (
        await open_sqlite_store(str(tmp_path / "s.db"), parking_for_current_backend())
        if kind == "sqlite"
        else MemoryStore()
    )
    try:
        async with actorstate.open_state(store) as state:
            live = await state.create_session("alice")
            ended = await state.create_session("bob")
            await ended.end()
        assert await store.owner_of(live.id) == "alice"
        assert await store.owner_of(ended.id) == "bob"
        assert await store.owner_of(UNKNOWN) is None
    finally:
        if kind == "sqlite":
            await store.close()
