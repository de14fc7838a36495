"""The store contract: what the runtime asks of a durable store, and what any store must keep.

The runtime talks to one :class:`Store` (async, called from the event loop).
SQLite and PostgreSQL implement it with a synchronous engine on one worker
thread (:mod:`.threaded` around :mod:`.sqlite` or :mod:`.postgres`);
:class:`~.memory.MemoryStore` is an in-process fake with fault injection for
tests and the chaos runner. The contract every implementation keeps:

**Rows.** One row per session: its id, the client that owns it, the
snapshot (opaque bytes, :mod:`actorstate.model.codec`), its creation and
last-activity times (Unix seconds), a ``version`` that grows by exactly one
per committed change, the ``epoch`` of the owner that may write it, and
whether it has ended. A new session is written with ``base_version`` 0 and
is stored at version 1.

**Writes.** :meth:`Store.write` commits a batch in one transaction and
answers per write, in order: :attr:`WriteOutcome.COMMITTED` (the row now
holds this snapshot at ``base_version + 1``), :attr:`WriteOutcome.CONFLICT`
(the stored version is not ``base_version``, or the row ended or vanished:
nothing changed; the runtime reloads and replays) or
:attr:`WriteOutcome.FENCED` (the row's epoch is newer than the write's: a
newer owner holds the session; nothing changed, and the writer must drop
the session and never write it again). A write matches only its own epoch
and version, so a paused or partitioned old owner cannot overwrite a newer
one. Writes that commit are durable when ``write`` returns; any other
failure rolls the whole batch back and raises
:class:`~actorstate.errors.StoreUnavailable` (retry later) or
:class:`~actorstate.errors.StoreError`.

**Owners and epochs.** SQLite has a single owner by construction (every
process on one file writes under epoch 0; several processes stay correct by
versions alone), so it never answers ``FENCED``. A store shared by several
nodes (PostgreSQL) keeps, in the same row, the owner node, its epoch and a
lease expiry: a node claims a session with one statement that bumps the
epoch when the session is unowned, already its own, or its lease expired by
the *database's* clock, and :meth:`Store.load` returns the epoch the claim
got. Every write then matches ``id``, ``epoch`` and ``version`` in its
``WHERE`` clause; a row whose epoch moved answers ``FENCED``.

**Reads.** :meth:`Store.load` returns the row (ended ones too) or None;
:meth:`Store.owner_of` returns only its owner, as cheaply as a miss.
:meth:`Store.list_client` pages through a client's live sessions in
``(created_at, id)`` order from an index, so a page costs the same for ten
sessions or a million. :meth:`Store.expire` scans in primary-key chunks so
that commits slip in between.

**Errors.** Nothing of the driver (``sqlite3``, ``psycopg``) escapes: a file
or database that must not be used raises
:class:`~actorstate.errors.DatabaseRefused`, a failure that may pass raises
:class:`~actorstate.errors.StoreUnavailable`.

**Opening** reads no session: it is O(1) in the number of stored sessions.

**Freshness.** A store that other processes or nodes also write may offer
:meth:`Store.maybe_changed` (cheap, from the event loop: could anyone else
have committed since this process last looked?) and :meth:`Store.moved`
(which of these resident sessions are no longer at the version held here);
the runtime reloads those before they answer, so a read never returns state
older than a write another process had already acknowledged. A store that
only this process writes answers False and []. PostgreSQL answers
``maybe_changed`` True once a lease it relies on is a third through, and
``moved`` renews the leases of the sessions it is given in one statement,
naming those it lost (see :mod:`.postgres_leases`). Correctness of writes
never depends on this: versions (and epochs) do that.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Protocol

from ..model.listing import SessionRow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ExpiryStep", "SessionRow", "SnapshotWrite", "Store", "StoredSession", "WriteOutcome"]


class WriteOutcome(enum.Enum):
    COMMITTED = "committed"
    CONFLICT = "conflict"  # the stored version moved (or the row ended): reload and replay
    FENCED = "fenced"  # a newer owner holds the session: drop it, never write it again


@dataclasses.dataclass(frozen=True, slots=True)
class StoredSession:
    id: str
    client_id: str
    version: int
    state: bytes
    ended: bool
    epoch: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotWrite:
    """One session's new snapshot; ``base_version`` 0 means a new session."""

    id: str
    client_id: str
    base_version: int
    state: bytes
    created_at: float
    last_activity: float
    ended: bool
    epoch: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class ExpiryStep:
    """One chunk of an expiry scan: sessions it ended, live ones it left, where to go on ("" when done)."""

    ended: int
    live: int
    next_after: str


class Store(Protocol):
    """A durable store of session rows; see the module docstring for the contract."""

    @property
    def name(self) -> str:
        """What to call the store in messages: its file, or its address without secrets."""

    async def load(self, session_id: str) -> StoredSession | None:
        """The session's row, ended or not; None if there is none."""

    async def owner_of(self, session_id: str) -> str | None:
        """The client that owns the session (ended or not), or None if there is no row.

        Reads the owner alone, so asking about another client's session costs
        what asking about an unknown id costs (the runtime checks the owner
        of a scoped call this way before it loads anything).
        """

    async def write(self, writes: Sequence[SnapshotWrite], now: float) -> list[WriteOutcome]:
        """Commit ``writes`` in one transaction; the outcome of each, in order."""

    async def end(self, session_id: str, now: float) -> None:
        """Mark one session ended whatever its snapshot holds (the way out of quarantine)."""

    async def list_client(
        self, client_id: str, after: tuple[float, str] | None, limit: int
    ) -> list[SessionRow]:
        """Up to ``limit`` of the client's live sessions after the key ``(created_at, id)``, in key order."""

    async def expire(
        self, after_id: str, limit: int, idle_before: float, now: float, resident: frozenset[str]
    ) -> ExpiryStep:
        """End live sessions idle since before ``idle_before``, scanning ``limit`` rows after
        ``after_id``; sessions in ``resident`` are judged by the runtime and skipped."""

    async def touch(self, last_uses: Sequence[tuple[str, float]]) -> None:
        """Move last activity forward for sessions read (not written) since their last write."""

    async def purge(self, ended_before: float) -> int:
        """Delete sessions ended before ``ended_before``; how many."""

    async def maintain(self) -> None:
        """Housekeeping of the store itself (SQLite: checkpoint and truncate the WAL)."""

    async def size_bytes(self) -> int | None:
        """Bytes the store takes, or None where it cannot tell cheaply."""

    def maybe_changed(self) -> bool:
        """Whether another writer may have committed since this process last looked; called
        before every call, so it must cost next to nothing. False when only this process writes."""

    async def moved(self, versions: Mapping[str, int]) -> list[str]:
        """Of these sessions, with the versions this process holds, those whose stored version differs."""

    async def release(self, leases: Sequence[tuple[str, int]]) -> None:
        """Give up this node's leases on these sessions, each (id, the epoch it was loaded under),
        which the runtime took out of memory with nothing unsaved; a lease renewed under a newer
        epoch since (the session was loaded again) is kept. Nothing to do for a store without
        leases."""

    async def close(self) -> None:
        """Release the store; calls after this raise."""
