"""Stored sessions: round trips, lazy loading, refusals at open, quarantine of bad snapshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

import actorstate
from actorstate import Config, DatabaseRefused, SessionNotFound, SessionQuarantined
from actorstate.model.codec import encode_session
from actorstate.state import open_runtime

pytestmark = pytest.mark.anyio


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


def _row(path: str, session_id: str) -> tuple[int, bytes, float | None]:
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT version, state, ended_at FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize("durability", ["commit", "interval"])
async def test_state_survives_reopen_byte_for_byte(db_path: str, durability: str) -> None:
    """Everything a session holds comes back after the database is closed and reopened."""
    async with open_runtime(db_path, durability=durability) as runtime:  # type: ignore[arg-type]
        state = actorstate.State(runtime)
        session = await state.create_session(client_id="alice")
        await session.add_context("topic", "billing")
        await session.record_action("search", details="q=refund")
        await session.set_preference("nested", {"a": [1, 2.5, None, True], "é": "ü"})
        for _ in range(5):
            await session.increment()
        before = await session.context(max_turns=50)
        blob = encode_session(runtime.residency.resident[session.id].state)  # type: ignore[arg-type]
    version, stored, ended_at = _row(db_path, session.id)
    assert stored == blob
    assert ended_at is None
    assert version >= 1
    async with actorstate.open_state(db_path, durability=durability) as state:  # type: ignore[arg-type]
        assert state.stats()["activations"] == 0  # opening read no session
        again = state.session(session.id, client_id="alice")
        assert await again.context(max_turns=50) == before
        assert state.stats()["activations"] == 1
        assert await again.increment() == 6
        assert await state.list_sessions("alice") == [session.id]


async def test_versions_grow_by_one_per_commit(db_path: str) -> None:
    """Each commit of a session bumps its version by one; unchanged reads write nothing."""
    async with actorstate.open_state(db_path) as state:
        session = await state.create_session()
        assert _row(db_path, session.id)[0] == 1
        await session.increment()
        assert _row(db_path, session.id)[0] == 2
        await session.context()
        assert _row(db_path, session.id)[0] == 2


async def test_commit_mode_replies_only_after_commit(db_path: str) -> None:
    """In commit mode, when a write returns, another connection already sees it."""
    async with open_runtime(db_path) as runtime:
        state = actorstate.State(runtime)
        session = await state.create_session()
        for expected in range(1, 20):
            assert await session.increment() == expected
            with sqlite3.connect(db_path) as other:
                blob = other.execute("SELECT state FROM sessions WHERE id = ?", (session.id,)).fetchone()[0]
            assert b"counter" in blob
            assert runtime.residency.resident[session.id].unflushed is None


async def test_passivation_and_eviction_with_a_store_keep_state(db_path: str) -> None:
    """Past the cap and under memory pressure actors leave memory; their state comes back intact."""
    config = Config(max_resident=20, memory_budget_mb=0.05)
    async with actorstate.open_state(db_path, config=config) as state:
        sessions = []
        for index in range(150):
            session = await state.create_session()
            await session.set_preference("index", index)
            await session.record_action("made", details=str(index))
            sessions.append(session)
        stats = state.stats()
        assert stats["resident_actors"] <= 20
        assert stats["passivations"] + sum(stats["evictions"].values()) >= 130
        for index, session in enumerate(sessions):
            context = await session.context()
            assert context["metadata"] == {"index": index}
            assert context["totalEvents"] == 1


async def test_ended_session_stays_ended_after_reopen(db_path: str) -> None:
    async with actorstate.open_state(db_path) as state:
        session = await state.create_session()
        await session.end()
        with pytest.raises(SessionNotFound):
            await session.increment()
    assert _row(db_path, session.id)[2] is not None
    async with actorstate.open_state(db_path) as state:
        with pytest.raises(SessionNotFound):
            await state.session(session.id).context()
        assert await state.list_sessions() == []


async def test_interval_mode_flushes_on_exit(db_path: str) -> None:
    """Leaving open_state commits what interval mode had not flushed yet."""
    config = Config(flush_interval=3600)
    async with actorstate.open_state(db_path, durability="interval", config=config) as state:
        session = await state.create_session()
        for _ in range(10):
            await session.increment()
    async with actorstate.open_state(db_path) as state:
        assert (await state.session(session.id).context())["metadata"] == {"counter": 10}


async def test_foreign_file_is_refused_and_untouched(tmp_path: Path) -> None:
    """A file that is not SQLite is refused with its name, and never overwritten."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my precious notes\n" * 100)
    with pytest.raises(DatabaseRefused, match=r"notes\.txt is not an SQLite database"):
        async with actorstate.open_state(str(path)):
            pass
    assert path.read_bytes() == b"my precious notes\n" * 100


async def test_corrupt_database_is_refused(tmp_path: Path) -> None:
    """A file with an SQLite header but garbage inside is refused at open."""
    path = tmp_path / "corrupt.db"
    content = b"SQLite format 3\x00" + bytes(range(256)) * 64
    path.write_bytes(content)
    with pytest.raises(DatabaseRefused, match=r"corrupt\.db"):
        async with actorstate.open_state(str(path)):
            pass
    assert path.read_bytes() == content


async def test_other_applications_database_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    before = Path(path).read_bytes()
    with pytest.raises(DatabaseRefused, match="holds tables that are not actorstate's"):
        async with actorstate.open_state(path):
            pass
    assert Path(path).read_bytes() == before


async def test_newer_schema_is_refused(db_path: str) -> None:
    async with actorstate.open_state(db_path) as state:
        await state.create_session()
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA user_version = 99")
    before = Path(db_path).read_bytes()
    with pytest.raises(DatabaseRefused, match="written by a newer actorstate"):
        async with actorstate.open_state(db_path):
            pass
    assert Path(db_path).read_bytes() == before


async def test_undecodable_snapshot_quarantines_only_its_session(db_path: str) -> None:
    """A snapshot that cannot be decoded never starts empty: that session is quarantined."""
    async with actorstate.open_state(db_path) as state:
        broken = await state.create_session()
        fine = await state.create_session()
        await broken.set_preference("important", "data")
        await fine.set_preference("also", "kept")
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE sessions SET state = ? WHERE id = ?", (b"\x01\xc1garbage", broken.id))
    async with actorstate.open_state(db_path) as state:
        with pytest.raises(SessionQuarantined, match="stored snapshot cannot be read"):
            await state.session(broken.id).context()
        with pytest.raises(SessionQuarantined):
            await state.session(broken.id).set_preference("important", "overwritten?")
        assert (await state.session(fine.id).context())["metadata"] == {"also": "kept"}
        assert state.stats()["quarantined"] == 1
    # The bad row was left exactly as it was, for a person to look at.
    assert _row(db_path, broken.id)[1] == b"\x01\xc1garbage"


async def test_concurrent_first_calls_share_one_load(db_path: str) -> None:
    """Many calls to a passivated session while it loads all run, in one activation."""
    async with actorstate.open_state(db_path) as state:
        session = await state.create_session()
    async with actorstate.open_state(db_path) as state:
        handle = state.session(session.id)
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(handle.increment)
        assert (await handle.context())["metadata"] == {"counter": 50}
        assert state.stats()["activations"] == 1


async def test_owner_handle_writes_are_durable_before_they_return(db_path: str) -> None:
    async with actorstate.open_state(db_path) as state:
        session = await state.create_session(client_id="alice")
        owner = state.session_as_owner(session.id)
        assert await owner.increment() == 1
        assert _row(db_path, session.id)[0] == 2
