"""The snapshot actor: group commit of dirty sessions, and replies gated on durability.

After a turn changes a session, the actor is marked dirty. The snapshot actor
collects every dirty actor and writes them all in one transaction (group
commit): a session changed a hundred times between flushes is written once.

``"commit"`` mode holds each reply until the transaction holding its state
has committed (like Akka Persistence's reply-after-persist and Durable
Objects' output gates); a read of a session with uncommitted changes waits
too, so no caller ever sees state that could still roll back. ``"interval"``
mode replies at once and flushes every ``Config.flush_interval``.

Snapshots carry a version and an owner epoch (see the store contract). A
write based on a stale version (another process changed the session) is a
conflict: the session is reloaded and the operations since its last commit
run again on top, as turns of the supervisor (the one turn runner), then
are written in the next flush. A write the store fences (a newer owner holds
the session) fails its calls with :class:`SessionMoved` and the actor is
dropped, never replayed. A failed transaction in commit mode fails every
reply it held with :class:`StoreError` and reloads those actors from their
last committed state; in interval mode the replies went out already, so the
sessions stay dirty and the next flush tries again.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ..backend import ToldEnvelope
from ..clock import Clock
from ..errors import SessionMoved, SessionNotFound, StoreError, StoreUnavailable
from ..model.codec import SnapshotDecodeError, decode_session, encode_session
from ..planted import active
from ..store.interface import SnapshotWrite, WriteOutcome
from .histogram import BATCH_SIZE_BOUNDS, LATENCY_BOUNDS, Histogram

if TYPE_CHECKING:
    from ..backend import Envelope, Parking
    from ..config import Config
    from ..model.messages import Message
    from ..model.session_state import SessionState
    from ..store.interface import Store
    from .actor import SessionActor

__all__ = ["SnapshotActor"]

logger = logging.getLogger("actorstate.snapshots")

_COMMITTED, _FENCED = WriteOutcome.COMMITTED, WriteOutcome.FENCED

# Planted bugs (see actorstate.planted): off unless the chaos runner asks.
_ACK_BEFORE_COMMIT = active("ack-before-commit")
_LOSE_UPDATE_ON_CONFLICT = active("lose-update-on-conflict")
# How far the planted ack-before-commit bug lets commits lag: long enough that a SIGKILL always
# finds acknowledged writes uncommitted, however slowly a loaded machine serves.
_PLANTED_LAG = 0.5

# One operation since the last commit: the caller's envelope (None once the
# reply went out, as in interval mode) and the message, kept to re-apply it
# after a version conflict.
Pending = tuple["Envelope[Any] | None", "Message[Any]"]


@dataclasses.dataclass(frozen=True, slots=True)
class DurabilityStats:
    """What durability counts; commit latencies over the last 1,024 commits (None before any)."""

    commits: int
    failed_commits: int
    conflicts: int
    fenced: int
    sessions_written: int
    commit_latency_ms_p50: float | None
    commit_latency_ms_p99: float | None


class ActorHost(Protocol):
    """What durability asks of whoever keeps the actors in memory (the residency)."""

    def roll_back(self, actor: SessionActor) -> None:
        """A commit failed: put the actor back to its last committed state."""

    def forget_ended(self, actor: SessionActor) -> None:
        """The end of this session is committed: let the actor go."""

    def drop(self, actor: SessionActor, error: Exception) -> None:
        """Take the actor out of memory at once; calls waiting for it get ``error``."""

    def replay(
        self, actor: SessionActor, state: SessionState, version: int, epoch: int, calls: list[Envelope[Any]]
    ) -> None:
        """Put the stored ``state`` in the actor and run ``calls`` again on it, as turns."""


class SnapshotActor:
    def __init__(
        self,
        *,
        store: Store,
        parking: Parking,
        config: Config,
        hold_replies: bool,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or Clock()
        self.store = store
        self.hold_replies = hold_replies
        self._parking = parking
        self._config = config
        self._supervisor: ActorHost | None = None
        # Dirty actors in the order they first changed (a dict as an ordered set).
        self._dirty: dict[SessionActor, None] = {}
        self._wakeup: anyio.Event | None = None
        self.commits = 0
        self.failed_commits = 0
        self.conflicts = 0
        self.fenced = 0
        self.sessions_written = 0
        self._latencies: deque[float] = deque(maxlen=1024)
        # Every committed transaction, for metrics: its seconds and its sessions.
        self.commit_seconds = Histogram(LATENCY_BOUNDS)
        self.commit_batch_sessions = Histogram(BATCH_SIZE_BOUNDS)
        # One flush at a time: each bases its versions on the previous one's outcome.
        self._flushing = anyio.Lock()

    def attach(self, supervisor: ActorHost) -> None:
        self._supervisor = supervisor

    # -- called from turns (synchronous, on the event loop) -------------------

    def after_turn(
        self, actor: SessionActor, envelope: Envelope[Any], message: Message[Any], result: Any
    ) -> None:
        """Route one turn's reply: now, or once its state is durable."""
        if message.writes:
            hold = self.hold_replies and not _ACK_BEFORE_COMMIT
            if hold:
                envelope.hold_result(result)
            if actor.hold((envelope if hold else None, message)):
                self._mark_dirty(actor)
            if hold:
                return
        elif (
            self.hold_replies and not _ACK_BEFORE_COMMIT and (actor.unflushed is not None or actor.in_flight)
        ):
            # A read of uncommitted state waits for that state to commit.
            envelope.hold_result(result)
            if actor.hold((envelope, message)):
                self._mark_dirty(actor)
            return
        self._parking.resolve(envelope, result)

    def _mark_dirty(self, actor: SessionActor) -> None:
        self._dirty[actor] = None
        if self._wakeup is not None:
            self._wakeup.set()

    def forget(self, actor: SessionActor, error: Exception) -> None:
        """Stop tracking an actor that leaves memory; replies it still held get ``error``."""
        self._abandon(actor, [], error)

    def _abandon(self, actor: SessionActor, pending: list[Pending], error: Exception) -> None:
        """Fail ``pending`` and whatever the actor still holds with ``error``; it is no longer dirty."""
        self._dirty.pop(actor, None)
        self._fail_pending(pending + actor.take_unflushed(), error)

    # -- the flush loop -------------------------------------------------------

    async def run(self) -> None:
        """Flush whenever something is dirty: at once in commit mode, on the interval otherwise."""
        while True:
            if not self._dirty:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                self._wakeup = None
            if _ACK_BEFORE_COMMIT:  # planted: commits lag the replies by half a second
                await self._clock.sleep(_PLANTED_LAG)
            elif not self.hold_replies:
                await self._clock.sleep(self._config.flush_interval)
            # Commit mode: no pause after a failed flush. Its sessions were
            # rolled back and are no longer dirty, so the next flush holds
            # only writes made since, and their callers hear the store's
            # verdict at once instead of after a backoff; a store that keeps
            # failing costs one failed transaction per group of writes.
            # Interval mode: the writes were acknowledged already, so a failed
            # flush keeps them dirty and the next interval tries again.
            with anyio.CancelScope(shield=True):
                await self.flush(keep_on_failure=not self.hold_replies)

    async def flush_all(self, attempts: int = 6) -> None:
        """Flush until nothing is dirty (shutdown).

        A failed attempt keeps the same sessions dirty and tries again after a
        growing pause (a lock held briefly by another process must not cost
        acknowledged interval-mode writes); only the last attempt gives up
        and fails what it held.
        """
        for attempt in range(1, attempts + 1):
            if not self._dirty:
                return
            if await self.flush(keep_on_failure=attempt < attempts):
                continue
            if attempt < attempts:
                await self._clock.sleep(0.05 * 2**attempt)

    async def flush(self, *, keep_on_failure: bool = False) -> bool:
        """Write every dirty session in one transaction; False if the transaction failed."""
        flushing = self._flushing
        if flushing.locked():
            async with flushing:
                return await self._flush(keep_on_failure)
        # Free: taken without the lock's two checkpoints, a trip round the
        # event loop on every commit (the store's write yields anyway).
        flushing.acquire_nowait()
        try:
            return await self._flush(keep_on_failure)
        finally:
            flushing.release()

    async def _flush(self, keep_on_failure: bool) -> bool:
        if not self._dirty:
            return True
        batch = list(self._dirty)
        self._dirty.clear()
        writes = []
        held: list[list[Pending]] = []
        for actor in batch:
            state = actor.state
            assert state is not None
            writes.append(
                SnapshotWrite(
                    state.id,
                    state.client_id,
                    actor.version,
                    encode_session(state),
                    state.created_at,
                    state.last_activity,
                    actor.ending,
                    actor.epoch,
                )
            )
            held.append(actor.begin_commit())
        started = self._clock.monotonic()
        try:
            outcomes = await self.store.write(writes, self._clock.wall())
        except Exception as raised:
            if isinstance(raised, StoreError):
                error = raised
            else:  # a store that broke its contract: its callers still hear, and the loop lives on
                logger.exception("commit of %d sessions raised unexpectedly", len(batch))
                error = StoreUnavailable(f"committing to {self.store.name} failed unexpectedly: {raised!r}")
            if keep_on_failure:
                self.failed_commits += 1
                logger.warning("commit of %d sessions failed, will retry: %s", len(batch), error)
                for actor, pending in zip(batch, held, strict=True):
                    actor.retry_commit(pending)
                    self._dirty[actor] = None
                return False
            for actor in batch:
                actor.commit_settled()
            self._failed(batch, held, error)
            return False
        except BaseException:
            for actor in batch:
                actor.commit_settled()
            raise
        took = self._clock.monotonic() - started
        self._latencies.append(took)
        self.commit_seconds.observe(took)
        self.commit_batch_sessions.observe(len(batch))
        self.commits += 1
        self.sessions_written += len(batch)
        resolve = self._parking.resolve
        conflicts: list[tuple[SessionActor, list[Pending]]] = []
        for actor, write, pending, outcome in zip(batch, writes, held, outcomes, strict=True):
            if outcome is not _COMMITTED:
                if outcome is _FENCED:
                    self._fenced(actor, pending)
                else:
                    # Stays in flight until resolved: its reads wait, and it is not idle.
                    conflicts.append((actor, pending))
                continue
            actor.commit_settled(write.base_version + 1)
            for envelope, _ in pending:
                if envelope is not None:
                    resolve(envelope, envelope.result)
            if write.ended:
                self._supervisor_forget(actor)
        for actor, pending in conflicts:
            try:
                await self._resolve_conflict(actor, pending)
            finally:
                actor.commit_settled()
        return True

    def _fenced(self, actor: SessionActor, pending: list[Pending]) -> None:
        """A newer owner holds the session: fail what this node held and drop it, never replay."""
        actor.commit_settled()
        moved = SessionMoved(f"session {actor.id} is now served by another node; retry the call")
        logger.warning("session %s moved to a newer owner; dropping this node's copy", actor.id)
        self.fenced += 1
        self._abandon(actor, pending, moved)
        assert self._supervisor is not None
        self._supervisor.drop(actor, moved)

    def _supervisor_forget(self, actor: SessionActor) -> None:
        assert self._supervisor is not None
        self._supervisor.forget_ended(actor)

    def _failed(self, batch: list[SessionActor], held: list[list[Pending]], error: StoreError) -> None:
        """Fail every reply the transaction held and roll its actors back to the store."""
        self.failed_commits += 1
        logger.error("commit of %d sessions failed: %s", len(batch), error)
        assert self._supervisor is not None
        for actor, pending in zip(batch, held, strict=True):
            self._abandon(actor, pending, error)
            self._supervisor.roll_back(actor)

    def _fail_pending(self, pending: list[Pending], error: Exception) -> None:
        for envelope, _ in pending:
            if envelope is not None:
                self._parking.fail(envelope, error)

    async def _resolve_conflict(self, actor: SessionActor, pending: list[Pending]) -> None:
        """Another process changed the session: reload it and apply our operations again."""
        self.conflicts += 1
        assert self._supervisor is not None
        session_id = actor.id
        try:
            row = await self.store.load(session_id)
            fresh = None if row is None or row.ended else decode_session(row.state)
        except (StoreError, SnapshotDecodeError) as error:
            failure = StoreError(
                f"session {session_id} changed in another process and could not be reloaded: {error}"
            )
            self._abandon(actor, pending, failure)
            self._supervisor.roll_back(actor)
            return
        if fresh is None or row is None:
            self._abandon(actor, pending, SessionNotFound())
            self._supervisor_forget(actor)
            return
        if _LOSE_UPDATE_ON_CONFLICT:  # planted: our operations are dropped, their callers told "done"
            for envelope, _ in pending + actor.take_unflushed():
                if envelope is not None:
                    self._parking.resolve(envelope, envelope.result)
            self._supervisor.replay(actor, fresh, row.version, row.epoch, [])
            return
        # Everything since our last commit, in order, on top of the other
        # process's state, as turns: the scheduler runs them like any other
        # (ownership checks, the fault hook, crashes and restarts included),
        # and each lands back here through after_turn, held for the next commit.
        replay = [
            envelope if envelope is not None else ToldEnvelope(message, None)
            for envelope, message in pending + actor.take_unflushed()
        ]
        self._supervisor.replay(actor, fresh, row.version, row.epoch, replay)
        # DEBUG: two processes sharing a database conflict routinely; the count is in stats.
        logger.debug("session %s changed in another process; replayed %d operations", session_id, len(replay))

    def stats(self) -> DurabilityStats:
        latencies = sorted(self._latencies)
        return DurabilityStats(
            commits=self.commits,
            failed_commits=self.failed_commits,
            conflicts=self.conflicts,
            fenced=self.fenced,
            sessions_written=self.sessions_written,
            commit_latency_ms_p50=round(statistics.median(latencies) * 1000, 3) if latencies else None,
            commit_latency_ms_p99=round(latencies[int(len(latencies) * 0.99)] * 1000, 3)
            if latencies
            else None,
        )
