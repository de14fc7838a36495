"""An in-process store with fault injection, for tests and the chaos runner.

:class:`MemoryStore` keeps the rows in a dict and answers on the event loop:
no thread, no file, nothing survives the process. It keeps the contract of
:mod:`.interface` exactly as the SQLite store does (the same contract tests
run against both): one row per session with its client, a version that grows
by one per committed change, the snapshot bytes, creation, last-activity and
end times, and an owner epoch; a write commits only over its own version and
epoch; a batch commits whole or not at all.

What SQLite cannot do on demand, this store can: :attr:`MemoryStore.faults`
(a :class:`StoreFaults`) fails writes or loads with
:class:`~actorstate.errors.StoreUnavailable`, makes a write answer
``CONFLICT`` as if another process had committed first, fences a session as
if a newer owner had claimed it, and holds writes at a :class:`WriteGate`
until the test opens it, so tests order their steps on events, never on
sleeps::

    store = MemoryStore()
    async with actorstate.open_state(store) as state:
        session = await state.create_session()
        store.faults.fail_writes(1)          # the next transaction fails
        with pytest.raises(StoreUnavailable):
            await session.increment()

Every call but ``close`` is a checkpoint, like a round trip to a real
store; a call cancelled there has done nothing. A write held at the gate has done nothing
either until the gate opens.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from ..errors import StoreUnavailable
from .interface import ExpiryStep, SessionRow, SnapshotWrite, StoredSession, WriteOutcome

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["MemoryStore", "StoreFaults", "WriteGate"]

_COMMITTED, _CONFLICT, _FENCED = WriteOutcome.COMMITTED, WriteOutcome.CONFLICT, WriteOutcome.FENCED


@dataclasses.dataclass(slots=True)
class _Row:
    client_id: str
    version: int
    state: bytes
    created_at: float
    last_activity: float
    ended_at: float | None
    epoch: int


class WriteGate:
    """Holds every write that reaches it, before it commits, until :meth:`open`.

    Made by :meth:`StoreFaults.hold_writes`. ``await gate.waiting.wait()``
    returns once a write is held; :attr:`held` lists the batches waiting, in
    the order they came. Once opened the gate holds nothing more.
    """

    def __init__(self) -> None:
        self.waiting = anyio.Event()
        self.held: list[tuple[SnapshotWrite, ...]] = []
        self._opened = anyio.Event()

    def open(self) -> None:
        """Let every held write (and every later one) go on to commit."""
        self._opened.set()

    async def _pass(self, writes: Sequence[SnapshotWrite]) -> None:
        """Wait here until the gate opens (the store's side of the gate)."""
        if self._opened.is_set():
            return
        batch = tuple(writes)
        self.held.append(batch)
        self.waiting.set()
        try:
            await self._opened.wait()
        finally:
            self.held.remove(batch)


class StoreFaults:
    """The faults one :class:`MemoryStore` injects; each method takes effect at once.

    Writes are counted as they reach their commit (after the gate, if one
    holds them): one call of :meth:`MemoryStore.write` is one transaction.
    """

    def __init__(self, rows: dict[str, _Row]) -> None:
        self._rows = rows
        self._writes_to_pass = 0
        self._writes_to_fail = 0
        self._conflicts: set[str] = set()
        self._failing_loads: set[str] = set()
        self._gate: WriteGate | None = None
        self.writes_seen = 0  # transactions that reached their commit, failed or not
        self.writes_failed = 0  # of those, failed on purpose

    def fail_writes(self, count: int = 1, *, after: int = 0) -> None:
        """Let the next ``after`` transactions commit, then fail ``count`` of them.

        A failed transaction raises :class:`StoreUnavailable` and changes
        nothing, whichever sessions it held. The ``n``-th transaction from
        now fails with ``fail_writes(1, after=n - 1)``. Replaces any failure
        armed before.
        """
        if count < 0 or after < 0:
            raise ValueError("count and after cannot be negative")
        self._writes_to_pass = after
        self._writes_to_fail = count

    def conflict_next_write(self, *session_ids: str) -> None:
        """Make the next write of each session answer ``CONFLICT``.

        As if another process committed first: just before that write, the
        stored version goes up by one and the snapshot stays as it was, so a
        reload finds the same state at a newer version. A session without a
        row yet (its first write) answers ``CONFLICT`` and nothing is stored.
        """
        self._conflicts.update(session_ids)

    def fence(self, *session_ids: str) -> None:
        """A newer owner claims these sessions: their rows' epochs go up by one.

        Writes carrying the old epoch answer ``FENCED`` from now on; a load
        returns the new epoch, so whoever loads the row again may write it.

        Error handling:
            KeyError: a session has no row.
        """
        for session_id in session_ids:
            self._rows[session_id].epoch += 1

    def hold_writes(self) -> WriteGate:
        """Hold every write from now on at a new gate, until the caller opens it.

        Needs a running event loop (the gate is made of events). A gate
        already holding writes keeps them until it is opened itself.
        """
        self._gate = WriteGate()
        return self._gate

    def fail_loads(self, *session_ids: str) -> None:
        """Make every load of these sessions raise :class:`StoreUnavailable`, until :meth:`clear`."""
        self._failing_loads.update(session_ids)

    def clear(self) -> None:
        """Inject nothing more: writes and loads go through, and a holding gate opens."""
        self._writes_to_pass = self._writes_to_fail = 0
        self._conflicts.clear()
        self._failing_loads.clear()
        if self._gate is not None:
            self._gate.open()
            self._gate = None

    # -- the store's side -----------------------------------------------------

    async def _before_write(self, writes: Sequence[SnapshotWrite]) -> None:
        """Wait at the gate, if one holds writes."""
        if self._gate is not None:
            await self._gate._pass(writes)

    def _check_write(self, store_name: str, size: int) -> None:
        """Count one transaction reaching its commit; raise if it is one chosen to fail."""
        self.writes_seen += 1
        if self._writes_to_pass:
            self._writes_to_pass -= 1
        elif self._writes_to_fail:
            self._writes_to_fail -= 1
            self.writes_failed += 1
            raise StoreUnavailable(f"committing {size} sessions failed on {store_name}: injected fault")

    def _take_conflict(self, session_id: str) -> bool:
        """Land another writer's commit if this session's write is one chosen to conflict;
        True if the write must answer CONFLICT though its row has not moved (there is none)."""
        if session_id not in self._conflicts:
            return False
        self._conflicts.discard(session_id)
        row = self._rows.get(session_id)
        if row is None:
            return True
        row.version += 1
        return False  # the moved version makes it conflict like any other

    def _check_load(self, store_name: str, session_id: str) -> None:
        if session_id in self._failing_loads:
            raise StoreUnavailable(f"loading session {session_id} failed on {store_name}: injected fault")


class MemoryStore:
    """Session rows in a dict, kept to the :class:`~.interface.Store` contract; see the module docstring.

    Args:
        name: what messages call the store.
    """

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._rows: dict[str, _Row] = {}
        self._closed = False
        self.faults = StoreFaults(self._rows)

    @property
    def name(self) -> str:
        return self._name

    async def _enter(self) -> None:
        await anyio.lowlevel.checkpoint()
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"{self._name} is closed")

    async def load(self, session_id: str) -> StoredSession | None:
        await self._enter()
        self.faults._check_load(self._name, session_id)
        row = self._rows.get(session_id)
        if row is None:
            return None
        return StoredSession(
            session_id, row.client_id, row.version, row.state, row.ended_at is not None, row.epoch
        )

    async def owner_of(self, session_id: str) -> str | None:
        await self._enter()
        self.faults._check_load(self._name, session_id)
        row = self._rows.get(session_id)
        return None if row is None else row.client_id

    async def write(self, writes: Sequence[SnapshotWrite], now: float) -> list[WriteOutcome]:
        """Commit ``writes`` as one transaction; per write, COMMITTED, CONFLICT or FENCED.

        A write with ``base_version`` 0 inserts (CONFLICT if the row exists).
        Any other write needs the row with its epoch (else FENCED), not
        ended and at ``base_version`` (else CONFLICT).

        Error handling:
            StoreUnavailable: the store is closed, or a fault failed the
                transaction; nothing of the batch was stored.
        """
        await self._enter()
        await self.faults._before_write(writes)
        self._check_open()  # it may have closed while the write was held
        self.faults._check_write(self._name, len(writes))
        # Nothing awaits from here on: the batch lands whole, as one transaction.
        return [self._write_one(write, now) for write in writes]

    def _write_one(self, write: SnapshotWrite, now: float) -> WriteOutcome:
        if self.faults._take_conflict(write.id):
            return _CONFLICT
        ended_at = now if write.ended else None
        row = self._rows.get(write.id)
        if write.base_version == 0:
            if row is not None:
                return _CONFLICT
            self._rows[write.id] = _Row(
                write.client_id, 1, write.state, write.created_at, write.last_activity, ended_at, write.epoch
            )
            return _COMMITTED
        if row is None:
            return _CONFLICT
        if row.epoch != write.epoch:
            return _FENCED
        if row.ended_at is not None or row.version != write.base_version:
            return _CONFLICT
        row.version += 1
        row.state = write.state
        row.last_activity = write.last_activity
        row.ended_at = ended_at
        return _COMMITTED

    async def end(self, session_id: str, now: float) -> None:
        await self._enter()
        row = self._rows.get(session_id)
        if row is not None and row.ended_at is None:
            row.ended_at = now
            row.version += 1

    async def list_client(
        self, client_id: str, after: tuple[float, str] | None, limit: int
    ) -> list[SessionRow]:
        await self._enter()
        # A scan, not an index: this store holds what a test makes.
        keys = sorted(
            (row.created_at, session_id)
            for session_id, row in self._rows.items()
            if row.client_id == client_id
            and row.ended_at is None
            and (after is None or (row.created_at, session_id) > after)
        )
        return [
            (session_id, created_at, self._rows[session_id].last_activity)
            for created_at, session_id in keys[:limit]
        ]

    async def expire(
        self, after_id: str, limit: int, idle_before: float, now: float, resident: frozenset[str]
    ) -> ExpiryStep:
        await self._enter()
        chunk = sorted(session_id for session_id in self._rows if session_id > after_id)[:limit]
        ended = live = 0
        for session_id in chunk:
            row = self._rows[session_id]
            if row.ended_at is not None:
                continue
            if row.last_activity < idle_before and session_id not in resident:
                row.ended_at = now
                row.version += 1
                ended += 1
            else:
                live += 1
        return ExpiryStep(ended, live, chunk[-1] if len(chunk) == limit else "")

    async def touch(self, last_uses: Sequence[tuple[str, float]]) -> None:
        await self._enter()
        for session_id, at in last_uses:
            row = self._rows.get(session_id)
            if row is not None:
                row.last_activity = max(row.last_activity, at)

    async def purge(self, ended_before: float) -> int:
        await self._enter()
        gone = [
            session_id
            for session_id, row in self._rows.items()
            if row.ended_at is not None and row.ended_at < ended_before
        ]
        for session_id in gone:
            del self._rows[session_id]
        return len(gone)

    async def maintain(self) -> None:
        await self._enter()

    async def size_bytes(self) -> int | None:
        """The bytes of every stored snapshot (no overhead is counted)."""
        await self._enter()
        return sum(len(row.state) for row in self._rows.values())

    def maybe_changed(self) -> bool:
        """Only this process writes an in-memory store: nothing to look for."""
        return False

    async def moved(self, versions: Mapping[str, int]) -> list[str]:
        return []

    async def release(self, leases: Sequence[tuple[str, int]]) -> None:
        """Only this process uses an in-memory store: it holds no leases."""

    async def close(self) -> None:
        """Refuse every later call with :class:`StoreUnavailable`; closing again does nothing."""
        self._closed = True
