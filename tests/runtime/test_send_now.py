"""``send_now``: a call answered without awaiting, its reply held for its commit.

A transport answering from its reader has no task to park: the turn runs at
once, and in commit mode the reply reaches the envelope's ``settled`` only
once the commit holding it is over (what the stdio fast path writes then).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actorstate
from actorstate import SessionNotFound, StoreError
from actorstate.model.codec import decode_session
from actorstate.state import increment_message, send_now

from ..durability.test_store_faults import Connections, FailingConnection

if TYPE_CHECKING:
    from pathlib import Path

    from actorstate.backend import Envelope

pytestmark = pytest.mark.anyio


def _stored_counter(path: str, session_id: str) -> Any:
    """The counter in the session's committed row, read through a connection of its own."""
    with sqlite3.connect(path) as db:
        (state,) = db.execute("SELECT state FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return decode_session(state).metadata.get("counter")


class Settled:
    """A ``settled`` function that records each envelope handed to it, and when."""

    def __init__(self, check: Any = None) -> None:
        self.envelopes: list[Envelope[Any]] = []
        self.seen_then: list[Any] = []
        self._check = check
        self.event = anyio.Event()

    def __call__(self, envelope: Envelope[Any]) -> None:
        self.envelopes.append(envelope)
        if self._check is not None:
            self.seen_then.append(self._check())
        self.event.set()


async def _held_increment(session: actorstate.Session, settled: Settled) -> Envelope[Any]:
    """An increment sent with ``send_now`` and held for its commit, once ``settled`` got it."""
    envelope = send_now(session, increment_message(session))
    assert envelope is not None
    assert not envelope.done  # held: not committed yet
    envelope.settled = settled
    with anyio.fail_after(30):
        await settled.event.wait()
    return envelope


async def test_an_idle_session_answers_at_once_in_memory_mode() -> None:
    """Memory mode: the envelope comes back resolved, the turn applied."""
    async with actorstate.open_state(None) as state:
        session = await state.create_session()
        envelope = send_now(session, increment_message(session, by=5))
        assert envelope is not None
        assert envelope.done
        assert envelope.unwrap() == 5
        assert (await session.context())["metadata"] == {"counter": 5}


async def test_a_write_is_settled_only_once_its_commit_is_over(tmp_path: Path) -> None:
    """Commit mode: the envelope is held; ``settled`` gets it after the commit, never before."""
    path = str(tmp_path / "now.db")
    async with actorstate.open_state(path) as state:
        session = await state.create_session()
        assert await session.increment() == 1
        settled = Settled(check=lambda: _stored_counter(path, session.id))
        envelope = await _held_increment(session, settled)
        assert settled.envelopes == [envelope]
        assert envelope.unwrap() == 2
        assert settled.seen_then == [2]  # the row said 2 when the reply was released


async def test_a_failed_commit_fails_the_held_call(tmp_path: Path) -> None:
    """An I/O error in the commit reaches ``settled`` as StoreError; the session rolls back."""
    path = str(tmp_path / "failing.db")
    FailingConnection.fail_in = None
    async with actorstate.open_state(path, connect=Connections(FailingConnection)) as state:
        session = await state.create_session()
        assert await session.increment() == 1
        await state.housekeeping()  # nothing of the state's own runs on the connection now
        settled = Settled()
        FailingConnection.fail_in = 2  # BEGIN, then the write fails
        envelope = await _held_increment(session, settled)
        with pytest.raises(StoreError, match="disk I/O error"):
            envelope.unwrap()
        assert (await session.context())["metadata"] == {"counter": 1}
    assert _stored_counter(path, session.id) == 1


async def test_a_cancelled_held_call_is_never_settled_and_its_write_stands(tmp_path: Path) -> None:
    """Cancelled while held (its client gave up): no ``settled``, and the turn's change commits."""
    path = str(tmp_path / "cancel.db")
    async with actorstate.open_state(path) as state:
        session = await state.create_session()
        settled = Settled()
        envelope = send_now(session, increment_message(session))
        assert envelope is not None
        assert not envelope.done
        envelope.settled = settled
        envelope.cancelled = True
        assert await session.increment() == 2  # committed after the cancelled one
        assert settled.envelopes == []
    assert _stored_counter(path, session.id) == 2


async def test_what_cannot_run_at_once_is_left_to_send(tmp_path: Path) -> None:
    """None, with nothing done: a session not in memory, another client's, a closed state."""
    path = str(tmp_path / "left.db")
    async with actorstate.open_state(path) as state:
        session = await state.create_session(client_id="alice")
        await session.increment()
        mallory = state.session(session.id, client_id="mallory")
        assert send_now(mallory, increment_message(mallory)) is None
        with pytest.raises(SessionNotFound):
            await mallory.increment()
    async with actorstate.open_state(path) as state:
        reopened = state.session(session.id, client_id="alice")
        assert send_now(reopened, increment_message(reopened)) is None  # not loaded yet
        assert await reopened.increment() == 2  # loaded by the ask
        envelope = send_now(reopened, increment_message(reopened))
        assert envelope is not None  # resident and idle now
    assert send_now(reopened, increment_message(reopened)) is None  # closed
    assert _stored_counter(path, session.id) == 3
