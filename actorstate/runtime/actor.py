"""A session actor: the only owner of one session's state.

An actor holds no task. Its mailbox is ``None`` while empty; the first
message posted makes it ready, and the supervisor's scheduler later drains the
whole mailbox in one go, one turn per message. Because a turn never awaits,
turns of one actor cannot interleave, and no lock is needed.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ..backend import Envelope
    from ..model.session_state import SessionState

__all__ = ["ActorStatus", "Passivated", "SessionActor"]


class ActorStatus(enum.Enum):
    READY = "ready"  # serving; scheduled whenever its mailbox is not empty
    LOADING = "loading"  # its snapshot is being read; messages wait
    BACKOFF = "backoff"  # crashed; messages wait until the restart
    QUARANTINED = "quarantined"  # crashed too often or undecodable; every call fails
    ENDED = "ended"  # ended; waits for that to commit, every call gets SessionNotFound
    GONE = "gone"  # left memory; a call in flight looks the session up again


class SessionActor:
    __slots__ = (
        "accounted",
        "accounted_basis",
        "crash_times",
        "ending",
        "epoch",
        "id",
        "in_flight",
        "last_used",
        "mailbox",
        "room",
        "state",
        "status",
        "unflushed",
        "version",
    )

    def __init__(self, session_id: str, state: SessionState | None, now: float) -> None:
        self.id = session_id
        self.state = state  # None while LOADING
        self.mailbox: list[Envelope[Any]] | None = None
        self.status = ActorStatus.READY
        self.last_used = now  # monotonic; resident dict order follows it
        self.crash_times: list[float] | None = None
        self.room: anyio.Event | None = None  # set when a full mailbox gets room
        self.accounted = 0  # bytes this actor adds to the supervisor's total
        self.accounted_basis = -1  # state.state_bytes when ``accounted`` was computed
        # Persistence (unused in memory mode): the committed version this
        # state is based on (0: never stored), the operations since then, and
        # whether a commit of this actor is in flight.
        self.version = 0
        self.epoch = 0  # the owner epoch its row was loaded with; writes carry it
        self.unflushed: list[Any] | None = None
        self.in_flight = False
        self.ending = False  # an EndSession turn ran; the row gets ended_at

    # -- the mailbox -----------------------------------------------------------

    def post(self, envelope: Envelope[Any], capacity: int) -> int:
        """Queue a call if fewer than ``capacity`` wait; return how many wait now (0: full)."""
        mailbox = self.mailbox
        if mailbox is None:
            self.mailbox = [envelope]
            return 1
        waiting = len(mailbox)
        if waiting < capacity:
            mailbox.append(envelope)
            return waiting + 1
        return 0

    def take_mailbox(self) -> list[Envelope[Any]]:
        """Every call waiting, oldest first; the mailbox is left empty, and callers waiting for room may post."""
        batch, self.mailbox = self.mailbox, None
        room = self.room
        if room is not None:
            self.room = None
            room.set()
        return batch or []

    async def wait_for_room(self) -> None:
        """Wait until the mailbox is emptied (or failed): then posting may succeed."""
        if self.room is None:
            self.room = anyio.Event()
        await self.room.wait()

    def used_at(self, now: float) -> None:
        """Its owner called it at ``now`` (monotonic): residency orders and passivates by this."""
        self.last_used = now

    # -- status: changed only here ----------------------------------------------

    def start_loading(self) -> None:
        """Its state is (re)read from the store; messages wait meanwhile."""
        self.accounted, self.accounted_basis = 0, -1
        self.state = None
        self.ending = False
        self.status = ActorStatus.LOADING

    def loaded(self, state: SessionState, version: int, epoch: int, last_used: float) -> None:
        """The stored state arrived: serve from it."""
        self.state = state
        self.version = version
        self.epoch = epoch
        self.last_used = last_used
        self.status = ActorStatus.READY

    def rebase(self, state: SessionState, version: int, epoch: int) -> None:
        """After a conflict: the stored state replaces ours, to replay our calls on."""
        self.state = state
        self.version = version
        self.epoch = epoch
        self.ending = False

    def back_off(self, crash_times: list[float]) -> None:
        """The loop crashed: wait for the restart, remembering the recent crashes."""
        self.crash_times = crash_times
        self.status = ActorStatus.BACKOFF

    def restart(self) -> None:
        self.status = ActorStatus.READY

    def quarantine(self) -> None:
        self.status = ActorStatus.QUARANTINED

    def end(self) -> None:
        """An EndSession turn ran: serve nothing more; with a store, wait for the end to commit."""
        self.ending = True
        self.status = ActorStatus.ENDED

    def leave(self) -> None:
        """Out of memory: a call in flight looks the session up again."""
        self.accounted = 0
        self.status = ActorStatus.GONE

    def accounted_as(self, size: int, basis: int) -> None:
        """Residency's estimate: ``size`` bytes, computed when its state encoded to ``basis``."""
        self.accounted = size
        self.accounted_basis = basis

    def requeue(self, envelopes: list[Envelope[Any]]) -> None:
        """Put calls back at the front of the mailbox, before any that arrived meanwhile."""
        if envelopes:
            self.mailbox = envelopes + (self.mailbox or [])

    # -- durability's bookkeeping ---------------------------------------------------

    def hold(self, entry: Any) -> bool:
        """Keep one operation since the last commit; True if it is the first (newly dirty)."""
        unflushed = self.unflushed
        if unflushed is None:
            self.unflushed = [entry]
            return True
        unflushed.append(entry)
        return False

    def take_unflushed(self) -> list[Any]:
        """The operations since the last commit, in order; the actor keeps none."""
        unflushed, self.unflushed = self.unflushed or [], None
        return unflushed

    def begin_commit(self) -> list[Any]:
        """Its snapshot goes into a commit: the operations it holds, and in flight until settled."""
        self.in_flight = True
        return self.take_unflushed()

    def commit_settled(self, version: int | None = None) -> None:
        """The commit holding its snapshot ended; with ``version`` it committed at that version."""
        self.in_flight = False
        if version is not None:
            self.version = version

    def retry_commit(self, pending: list[Any]) -> None:
        """The commit failed and will be retried: the operations it held go first again."""
        self.in_flight = False
        self.unflushed = pending + (self.unflushed or [])

    @property
    def committed(self) -> bool:
        """Serving, with nothing unsaved and no commit in flight: its state is the stored one
        (calls may wait in its mailbox)."""
        return self.status is ActorStatus.READY and self.unflushed is None and not self.in_flight

    @property
    def idle(self) -> bool:
        """Nothing waiting, nothing unsaved, serving normally: safe to passivate or evict."""
        return (
            self.mailbox is None
            and self.status is ActorStatus.READY
            and self.unflushed is None
            and not self.in_flight
        )


class Passivated:
    """A session that is not resident: its encoded snapshot, kept in memory.

    Its owner and creation time stay outside the blob: listing a client's
    sessions page by page filters and orders by them without decoding.
    """

    __slots__ = ("blob", "client_id", "created_at", "last_used")

    def __init__(self, client_id: str, created_at: float, blob: bytes, last_used: float) -> None:
        self.client_id = client_id
        self.created_at = created_at
        self.blob = blob
        self.last_used = last_used
