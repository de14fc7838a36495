"""The supervisor: routes each call to its session's actor, and owns the state's lifetime.

A call is an envelope for the session's actor. When the actor is idle its
turn runs at once in the caller's task (after one checkpoint), so an
uncontended call costs no hand-off at all. Otherwise (the actor is loading,
restarting, or has calls queued) the envelope waits in the mailbox and the
caller parks until the scheduler's next pass runs it.

The parts, each in its own module below this one: the scheduler
(:mod:`.scheduler`: the one turn runner, crashes, restarts, quarantine),
which composes the residency registry (:mod:`.residency`: which actors are
in memory); durability (:mod:`.durability`: group commit and held replies);
and the client index of memory mode (:mod:`.client_index`). The supervisor
wires them together and starts their tasks; on close it stops intake, lets
every posted message have its turn and flushes.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import uuid
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc

from ..backend import Envelope, Parking, ToldEnvelope, run_detached
from ..clock import Clock
from ..errors import ActorStateError, Overloaded, SessionNotFound, StateClosed
from ..model.codec import decode_session
from ..model.listing import ListingKey, SessionRow, merge_page
from ..model.messages import CreateSession, EndSession, Increment, Message
from ..model.session_state import SessionState
from .actor import ActorStatus, SessionActor
from .client_index import ClientIndex
from .durability import SnapshotActor
from .scheduler import FaultHook, Scheduler

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ..config import Config
    from ..store.interface import Store
    from .events import SessionEvent
    from .histogram import HistogramSnapshot

__all__ = ["FaultHook", "Supervisor", "open_supervisor"]

logger = logging.getLogger("actorstate.supervisor")

_READY = ActorStatus.READY
R = TypeVar("R")


@asynccontextmanager
async def open_supervisor(
    config: Config,
    parking: Parking,
    *,
    store: Store | None = None,
    hold_replies: bool = True,
    fault_hook: FaultHook | None = None,
    stop_on_signals: bool = False,
    clock: Clock | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the duration of the ``async with`` block.

    With a ``store``, sessions are kept there and ``hold_replies`` chooses
    commit (True) or interval (False) durability. On exit, intake stops,
    every message already posted gets its turn, every dirty session is
    flushed, and the background tasks end; closing the store is the
    opener's business.
    """
    snapshots = None
    if store is not None:
        snapshots = SnapshotActor(
            store=store, parking=parking, config=config, hold_replies=hold_replies, clock=clock
        )
    supervisor = Supervisor(
        config, parking, fault_hook=fault_hook, store=store, snapshots=snapshots, clock=clock
    )
    body_error: BaseException | None = None
    try:
        async with anyio.create_task_group() as task_group:
            supervisor.scheduler.use_task_group(task_group)
            task_group.start_soon(supervisor.scheduler.run)
            await task_group.start(supervisor.residency.run_maintenance)
            if snapshots is not None:
                task_group.start_soon(snapshots.run)
            # A stop signal cancels only the caller's block: the background
            # tasks keep serving while the close below drains and flushes.
            with anyio.CancelScope() as body_scope:
                if stop_on_signals:
                    await task_group.start(_stop_on_signals, body_scope)
                try:
                    yield supervisor
                except BaseException as error:
                    body_error = error
                    raise
                finally:
                    # Self-sufficient: correct even if an outer cancellation
                    # already stopped the background tasks.
                    with anyio.CancelScope(shield=True):
                        await supervisor._close()
                    task_group.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The task group wraps whatever the caller's block raised; hand it back
        # unwrapped, as if there were no task group at all.
        if body_error is not None and group.exceptions == (body_error,):
            raise body_error from None
        raise


async def _stop_on_signals(
    scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """On SIGTERM or SIGINT, cancel the block using the state; leaving it flushes and closes."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            logger.warning("received %s: stopping intake, flushing and closing", signal.Signals(signum).name)
            scope.cancel()
            return


class Supervisor:
    """Owns every session actor of one state; see the module docstring."""

    def __init__(
        self,
        config: Config,
        parking: Parking,
        *,
        fault_hook: FaultHook | None = None,
        store: Store | None = None,
        snapshots: SnapshotActor | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self.config = config
        self.clock = clock = clock or Clock()
        self._parking = parking
        self._snapshots = snapshots
        # Commit mode: a write's reply waits for its commit anyway.
        self._hold_writes = snapshots is not None and snapshots.hold_replies
        self.scheduler = scheduler = Scheduler(
            config, parking, clock, store=store, durability=snapshots, fault_hook=fault_hook
        )
        self.residency = residency = scheduler.residency
        self._turns = scheduler.turns  # bound once: called on every uncontended call
        if snapshots is not None:
            snapshots.attach(self)
        # Read on every call; the residency alone changes them.
        self._resident = residency.resident
        self._passivated = residency.passivated
        # Memory mode's listing order (a store keeps its own index).
        self._by_client = ClientIndex(self._listed_in_memory) if snapshots is None else None
        # Increment messages already built and checked, by (key, by): see Session.increment.
        self.increments: dict[tuple[str, int], Increment] = {}

    # -- calls ----------------------------------------------------------------

    async def create(self, client_id: str) -> str:
        """Create a session owned by ``client_id``; return its id."""
        self.check_open()
        session_id = str(uuid.uuid4())
        state = SessionState(session_id, client_id, self.clock.wall())
        actor = SessionActor(session_id, state, self.residency.now)
        self.residency.admit(actor)
        envelope = Envelope(CreateSession(), client_id)
        await self._post(session_id, envelope)
        self.residency.activated(actor)
        result: str = await self._parking.park(envelope)
        if self._by_client is not None:
            self._by_client.add(client_id, state.created_at, session_id)
        self.residency.events.emit("created", session_id, client_id)
        return result

    def add_session_listener(self, listener: Callable[[SessionEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every session event from now on (see :mod:`.events`); returns
        what stops it."""
        return self.residency.events.add(listener)

    async def ask(self, session_id: str, client_id: str | None, message: Message[R]) -> R:
        """Post ``message`` to the session's actor and wait for its reply.

        Error handling:
            SessionNotFound: unknown, ended, expired, evicted, or another client's.
            SessionQuarantined: the actor crashed too often.
            Overloaded: the mailbox stayed full for ``Config.ask_timeout``.
            Any exception the turn raised, with the state left unchanged.
        """
        store = self._store
        if store is not None and (store.maybe_changed() or self.residency.refreshing):
            # Another process committed: sessions it changed reload before they
            # answer. A refresh in flight counts too: it took the change as seen
            # when it read the store, but the sessions it found moved begin to
            # reload only once it is back, and until then they answer as before.
            await self.residency.refresh()
        envelope = Envelope(message, client_id)
        actor = self._resident.get(session_id)
        try:
            if actor is not None and actor.mailbox is None and actor.status is _READY:
                # The actor is idle: its turn runs right here, in this task. A reply
                # that is ready at once gets one checkpoint first (a cancelled caller
                # leaves with nothing done); a write whose reply waits for its commit
                # parks after the turn instead, and that park is the checkpoint.
                if not (self._hold_writes and message.writes):
                    await self._parking.checkpoint()
                    # Still idle? (Removal marks an actor GONE, so no lookup is needed.)
                    if actor.mailbox is not None or actor.status is not _READY:
                        await self._post(session_id, envelope)
                        return await self._parking.park(envelope)
                if not self.scheduler.closed:
                    self._turns(actor, [envelope])
                    if envelope.done:
                        return envelope.unwrap()
                    return await self._parking.park(envelope)  # held for its commit, or crashed
            await self._post(session_id, envelope)
            return await self._parking.park(envelope)
        except SessionNotFound:
            if actor is not None and client_id is not None and store is not None:
                # Answered from memory (another client's session, or an ended
                # one still resident), where an unknown id costs a read of the
                # owner (see Residency._load): the same read, so that timing
                # cannot tell which ids exist.
                with suppress(ActorStateError):
                    await store.owner_of(session_id)
            raise

    def try_now(self, session_id: str, client_id: str | None, message: Message[R]) -> Envelope[R] | None:
        """Run ``message``'s turn here and now, with no await, when nothing stands in its way;
        None when something does (nothing was done: :meth:`ask` instead).

        For a caller that is no task of its own (a transport answering from
        its reader): it never parks, so a call costs no task, no checkpoint
        and no wake-up. The turn runs as under :meth:`ask` when the actor is
        idle. The envelope comes back resolved (or failed), or not yet: held
        for its commit, or requeued for after a restart when the turn crashed
        the actor's loop. Then set its ``settled``, called when it is.

        Left to :meth:`ask`: an actor not resident, not idle or not ready;
        a store another process may have changed; a closed state; and
        another client's session, whose "not found" costs the store read an
        unknown id costs (see :meth:`ask`).
        """
        store = self._store
        if store is not None and (store.maybe_changed() or self.residency.refreshing):
            return None
        actor = self._resident.get(session_id)
        if actor is None or actor.mailbox is not None or actor.status is not _READY or self.scheduler.closed:
            return None
        if client_id is not None and (actor.state is None or actor.state.client_id != client_id):
            return None
        envelope = Envelope(message, client_id)
        self._turns(actor, [envelope])
        return envelope

    async def tell(self, session_id: str, message: Message[Any]) -> None:
        """Post ``message`` without waiting for its turn (fire and forget).

        Waits only while the mailbox is full. The turn's result is dropped; an
        error it raises is logged.
        """
        await self._post(session_id, ToldEnvelope(message, None))

    async def list_sessions(
        self, client_id: str, after: ListingKey | None, limit: int
    ) -> tuple[list[SessionRow], ListingKey | None]:
        """One page of the client's live sessions after ``after``, oldest first, and the next key.

        The store reads one page (an indexed range, so a page costs the same
        however many sessions the client has); memory adds what it knows
        better (sessions not stored yet, newer rows, ones ending).
        """
        self.check_open()
        if self._by_client is not None:
            return self._list_in_memory(client_id, after, limit)
        stored: list[SessionRow] = []
        if self._store is not None:
            # One row more than the page: it tells whether the store has more.
            stored = await self._store.list_client(client_id, after, limit + 1)
            self.check_open()
        in_memory: list[SessionRow] = []
        gone: set[str] = set()
        for session_id, actor in self._resident.items():
            state = actor.state
            if state is None or state.client_id != client_id:
                continue
            if actor.ending or actor.status is ActorStatus.ENDED:
                gone.add(session_id)
            elif after is None or (state.created_at, session_id) > after:
                in_memory.append((session_id, state.created_at, state.last_activity))
        return merge_page(stored, len(stored) > limit, in_memory, gone, limit)

    def _list_in_memory(
        self, client_id: str, after: ListingKey | None, limit: int
    ) -> tuple[list[SessionRow], ListingKey | None]:
        assert self._by_client is not None
        ids, next_key = self._by_client.page(client_id, after, limit)
        rows: list[SessionRow] = []
        for session_id in ids:
            actor = self._resident.get(session_id)
            if actor is not None and actor.state is not None:
                state = actor.state
            else:
                state = decode_session(self._passivated[session_id].blob)
            rows.append((session_id, state.created_at, state.last_activity))
        return rows, next_key

    def _listed_in_memory(self, session_id: str) -> bool:
        """Whether memory mode lists this session: live, resident or passivated."""
        actor = self._resident.get(session_id)
        if actor is None:
            return session_id in self._passivated
        return actor.state is not None and not actor.ending and actor.status is not ActorStatus.ENDED

    def residence(self, session_id: str) -> str | None:
        """Where the session is in this process: its actor's status, "passivated", or None."""
        actor = self._resident.get(session_id)
        if actor is not None:
            return actor.status.value
        return "passivated" if session_id in self._passivated else None

    def stats(self) -> dict[str, Any]:
        """Every part's counters in one flat dict (the keys the README documents)."""
        figures: dict[str, Any] = dataclasses.asdict(self.residency.stats())
        figures.update(dataclasses.asdict(self.scheduler.stats()))
        if self._snapshots is not None:
            figures.update(dataclasses.asdict(self._snapshots.stats()))
        housekeeping = self.residency.housekeeping
        if housekeeping is not None:
            # Counting a million rows on demand would stall commits: the
            # housekeeping pass counts them as it scans for expired ones, and
            # until the first pass ends the count is unknown (None, never wrong).
            kept = housekeeping.stats()
            figures["sessions"] = kept.stored_sessions
            figures["expired"] += kept.expired
            figures["db_bytes"] = kept.db_bytes
        return figures

    def histograms(self) -> dict[str, HistogramSnapshot]:
        """The histograms now, by name: every turn's duration, and durability's (with a store)."""
        turns = {"turn_seconds": self.scheduler.turn_seconds.snapshot()}
        snapshots = self._snapshots
        if snapshots is None:
            return turns
        return {
            **turns,
            "commit_seconds": snapshots.commit_seconds.snapshot(),
            "commit_batch_sessions": snapshots.commit_batch_sessions.snapshot(),
        }

    async def probe_store(self) -> int | None:
        """Renew what is due, then ask the store its size through its worker: it answers, or this
        raises. None without a store.

        Error handling:
            StateClosed: the state is closed.
            StoreError: the store did not answer (the error says why).
        """
        self.check_open()
        store = self._store
        if store is None:
            return None
        if store.maybe_changed() or self.residency.refreshing:
            # As before a call: the leases due for renewal are renewed (a
            # store shared by nodes), so a node that answers ready holds the
            # leases it serves reads under, and a renewal that fails fails the probe.
            await self.residency.refresh()
        return await store.size_bytes()

    async def housekeeping(self) -> None:
        """Run a housekeeping pass of the store now (nothing without one)."""
        if self.residency.housekeeping is not None:
            await self.residency.housekeeping.run_pass()

    def check_open(self) -> None:
        self.scheduler.check_open()

    # -- posting --------------------------------------------------------------

    async def _post(self, session_id: str, envelope: Envelope[Any]) -> None:
        scheduler = self.scheduler
        actor = self._resident.get(session_id)
        if actor is None or scheduler.closed:
            actor = self.residency.activate(session_id)
            scheduler.post(actor, envelope)
            # Accounted only once a message is posted: an actor with a message
            # waiting is never evicted, so the budget check cannot drop it.
            self.residency.activated(actor)
            return
        if (
            actor.status is ActorStatus.QUARANTINED
            and type(envelope.message) is EndSession
            and envelope.client_id in (None, scheduler.client_of(actor))
        ):
            await self._end_quarantined(actor)
            self._parking.resolve(envelope, None)
            return
        if not scheduler.post(actor, envelope):
            await self._post_when_room(actor, envelope)

    async def _post_when_room(self, actor: SessionActor, envelope: Envelope[Any]) -> None:
        """The slow path: wait up to ``ask_timeout`` for room in a full mailbox."""
        scheduler = self.scheduler
        owner = scheduler.client_of(actor)
        if envelope.client_id is not None and owner is not None and envelope.client_id != owner:
            raise SessionNotFound  # before waiting: Overloaded would tell the id exists
        with anyio.move_on_after(self.config.ask_timeout):
            while True:
                await actor.wait_for_room()
                scheduler.check_open()
                if self._resident.get(actor.id) is not actor:
                    # Passivated or reloaded meanwhile: post to whatever holds it now.
                    await self._post(actor.id, envelope)
                    return
                if scheduler.post(actor, envelope):
                    return
        raise Overloaded(
            f"session {actor.id} has {self.config.mailbox_size} calls waiting and none finished "
            f"within {self.config.ask_timeout:g} s; retry later, send fewer concurrent calls to "
            "one session, or raise Config.mailbox_size / Config.ask_timeout"
        )

    async def _end_quarantined(self, actor: SessionActor) -> None:
        """Ending is the way out of quarantine; it needs no turn.

        Detached from the caller: once the row is ended, the actor must leave
        memory too, or calls would go on hearing "quarantined" about an ended
        session, whoever cancels the caller meanwhile.
        """
        await run_detached(self.scheduler.spawn, self._end_and_release, actor)

    async def _end_and_release(self, actor: SessionActor) -> None:
        if self._store is not None:
            await self._store.end(actor.id, self.clock.wall())
        self.scheduler.release_quarantine(actor)

    # -- what durability asks of the actors' keepers (ActorHost) ---------------

    def roll_back(self, actor: SessionActor) -> None:
        self.residency.roll_back(actor)

    def forget_ended(self, actor: SessionActor) -> None:
        self.residency.forget_ended(actor)

    def drop(self, actor: SessionActor, error: Exception) -> None:
        self.residency.drop(actor, error)

    def replay(
        self, actor: SessionActor, state: SessionState, version: int, epoch: int, calls: list[Envelope[Any]]
    ) -> None:
        self.scheduler.replay(actor, state, version, epoch, calls)

    # -- shutdown -------------------------------------------------------------

    async def _close(self) -> None:
        """Stop intake, let every posted message have its turn, flush."""
        scheduler = self.scheduler
        scheduler.close()
        closed = StateClosed("actorstate closed before this call got its turn")
        for actor in list(self._resident.values()):
            if actor.status is ActorStatus.BACKOFF and actor.mailbox:
                scheduler.fail_mailbox(actor, closed)
        # Database reads in flight land first (a pass of housekeeping too).
        await self.residency.wait_idle()
        for actor in list(self._resident.values()):
            if actor.status is ActorStatus.LOADING:  # its load was cancelled
                self.residency.remove(actor, closed)
        # Run what is queued here: the scheduler may already be cancelled.
        scheduler.drain_all()
        if self._snapshots is not None:
            await self._snapshots.flush_all()
