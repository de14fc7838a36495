"""The supervisor: finds, schedules, restarts and evicts session actors.

A call is an envelope for the session's actor. When the actor is idle its
turn runs at once in the caller's task (after one checkpoint), so an
uncontended call costs no hand-off at all. Otherwise (the actor is loading,
restarting, or has calls queued) the envelope waits in the mailbox and the
caller parks; the first post to an empty mailbox puts the actor on the ready
list and wakes the scheduler task, which drains the whole mailbox of every
ready actor in one synchronous pass. Turns never await, so turns of one
actor never interleave, and no lock is taken.

Which actors are in memory, and for how long, is the business of
:mod:`actorstate.runtime.residency`, which the supervisor composes; restart
intensity is :mod:`actorstate.runtime.restart`; durability replays conflicts
through :meth:`Supervisor.replay`, so turns have one runner.

Crashes follow Erlang/OTP restart intensity: an actor whose loop dies is
restarted with exponential backoff, and more than ``max_restarts`` crashes
within ``restart_window`` quarantine the session.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc

from ..backend import Envelope, Parking, ToldEnvelope
from ..clock import Clock
from ..errors import Overloaded, SessionNotFound, SessionQuarantined, StateClosed
from ..model.codec import decode_session
from ..model.listing import ListingKey, SessionRow, merge_page
from ..model.messages import CreateSession, EndSession, Increment, Message
from ..model.session_state import SessionState
from .actor import ActorStatus, SessionActor
from .client_index import ClientIndex
from .durability import SnapshotActor
from .residency import Residency
from .restart import RestartPolicy

if TYPE_CHECKING:
    from ..config import Config
    from ..store.interface import Store

__all__ = ["FaultHook", "Supervisor", "open_supervisor"]

logger = logging.getLogger("actorstate.supervisor")

# Called before every turn with the session id, the caller's client id (None
# for a tell or an owner handle) and the message; an exception raised here
# kills the actor's loop (fault injection for tests and the chaos runner; also
# a faithful log of the order in which turns ran).
FaultHook = Callable[[str, str | None, Message[Any]], None]

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
        snapshots = SnapshotActor(store=store, parking=parking, config=config, hold_replies=hold_replies, clock=clock)
    supervisor = Supervisor(
        config, parking, fault_hook=fault_hook, store=store, snapshots=snapshots, clock=clock
    )
    body_error: BaseException | None = None
    try:
        async with anyio.create_task_group() as task_group:
            supervisor._task_group = task_group
            task_group.start_soon(supervisor._run_scheduler)
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


@dataclasses.dataclass(frozen=True, slots=True)
class SupervisorStats:
    """What the supervisor counts: restarts, sessions quarantined now, the fullest mailbox seen."""

    restarts: int
    quarantined: int
    mailbox_high_water: int


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
        self._fault_hook = fault_hook
        self._restart_policy = RestartPolicy(config)
        self._snapshots = snapshots
        # Commit mode: a write's reply waits for its commit anyway.
        self._hold_writes = snapshots is not None and snapshots.hold_replies
        if snapshots is not None:
            snapshots.attach(self)
        # Why a session is quarantined, and who owns it (its state may be unreadable).
        self._quarantined: dict[str, tuple[str, str]] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._ready: list[SessionActor] = []
        self._scheduler_wakeup: Envelope[Any] | None = None

        self.residency = residency = Residency(config, clock, self, store=store, durability=snapshots)
        # Read on every call; the residency alone changes them.
        self._resident = residency.resident
        self._passivated = residency.passivated

        # Memory mode's listing order (a store keeps its own index).
        self._by_client = ClientIndex(self._listed_in_memory) if snapshots is None else None

        # Increment messages already built and checked, by (key, by): see Session.increment.
        self.increments: dict[tuple[str, int], Increment] = {}
        self.restarts = 0
        self.mailbox_high_water = 0

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
        return result

    async def ask(self, session_id: str, client_id: str | None, message: Message[R]) -> R:
        """Post ``message`` to the session's actor and wait for its reply.

        Error handling:
            SessionNotFound: unknown, ended, expired, evicted, or another client's.
            SessionQuarantined: the actor crashed too often.
            Overloaded: the mailbox stayed full for ``Config.ask_timeout``.
            Any exception the turn raised, with the state left unchanged.
        """
        store = self._store
        if store is not None and store.maybe_changed():
            # Another process committed: sessions it changed reload before they answer.
            await self.residency.refresh()
        envelope = Envelope(message, client_id)
        actor = self._resident.get(session_id)
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
            if not self._closed:
                self._turns(actor, [envelope])
                if envelope.done:
                    return envelope.unwrap()
                return await self._parking.park(envelope)  # held for its commit, or crashed
        await self._post(session_id, envelope)
        return await self._parking.park(envelope)

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

    def stats(self) -> dict[str, Any]:
        """Every part's counters in one flat dict (the keys the README documents)."""
        figures: dict[str, Any] = dataclasses.asdict(self.residency.stats())
        figures.update(dataclasses.asdict(self.supervisor_stats()))
        if self._snapshots is not None:
            figures.update(dataclasses.asdict(self._snapshots.stats()))
            figures["db_bytes"] = self.residency.db_bytes
        return figures

    def supervisor_stats(self) -> SupervisorStats:
        quarantined = sum(1 for a in self._resident.values() if a.status is ActorStatus.QUARANTINED)
        return SupervisorStats(self.restarts, quarantined, self.mailbox_high_water)

    # -- posting --------------------------------------------------------------

    async def _post(self, session_id: str, envelope: Envelope[Any]) -> None:
        actor = self._resident.get(session_id)
        if actor is None or self._closed:
            actor = self.residency.activate(session_id)
            self._post_now(actor, envelope)
            # Accounted only once a message is posted: an actor with a message
            # waiting is never evicted, so the budget check cannot drop it.
            self.residency.activated(actor)
            return
        if (
            actor.status is ActorStatus.QUARANTINED
            and type(envelope.message) is EndSession
            and envelope.client_id in (None, self._client_of(actor))
        ):
            await self._end_quarantined(actor)
            self._parking.resolve(envelope, None)
            return
        if not self._post_now(actor, envelope):
            await self._post_when_room(actor, envelope)

    def _post_now(self, actor: SessionActor, envelope: Envelope[Any]) -> bool:
        """Post if the mailbox has room; False if it is full."""
        self.check_open()
        status = actor.status
        if status is ActorStatus.QUARANTINED:
            raise self._quarantine_error(actor, envelope.client_id)
        if status is ActorStatus.ENDED:
            raise SessionNotFound
        mailbox = actor.mailbox
        if mailbox is None:
            actor.mailbox = [envelope]
            if status is _READY:
                self._ready.append(actor)
                self._wake_scheduler()
            # Loading or in backoff: the message waits for the actor.
            return True
        if len(mailbox) < self.config.mailbox_size:
            mailbox.append(envelope)
            if len(mailbox) > self.mailbox_high_water:
                self.mailbox_high_water = len(mailbox)
            return True
        return False

    async def _post_when_room(self, actor: SessionActor, envelope: Envelope[Any]) -> None:
        """The slow path: wait up to ``ask_timeout`` for room in a full mailbox."""
        owner = self._client_of(actor)
        if envelope.client_id is not None and owner is not None and envelope.client_id != owner:
            raise SessionNotFound  # before waiting: Overloaded would tell the id exists
        with anyio.move_on_after(self.config.ask_timeout):
            while True:
                if actor.room is None:
                    actor.room = anyio.Event()
                await actor.room.wait()
                self.check_open()
                if self._resident.get(actor.id) is not actor:
                    # Passivated or reloaded meanwhile: post to whatever holds it now.
                    await self._post(actor.id, envelope)
                    return
                if self._post_now(actor, envelope):
                    return
        raise Overloaded(
            f"session {actor.id} has {self.config.mailbox_size} calls waiting and none finished "
            f"within {self.config.ask_timeout:g} s; retry later, send fewer concurrent calls to "
            "one session, or raise Config.mailbox_size / Config.ask_timeout"
        )

    def _client_of(self, actor: SessionActor) -> str | None:
        if actor.state is not None:
            return actor.state.client_id
        reason = self._quarantined.get(actor.id)
        return reason[1] if reason else None

    def _quarantine_error(self, actor: SessionActor, client_id: str | None) -> Exception:
        if client_id is not None and client_id != self._client_of(actor):
            return SessionNotFound()
        reason = self._quarantined.get(actor.id, ("quarantined", ""))[0]
        return SessionQuarantined(f"session {actor.id} is {reason}; end it, or restart the server")

    def quarantine(self, actor: SessionActor, reason: str, client_id: str) -> None:
        actor.quarantine()
        self._quarantined[actor.id] = (reason, client_id)
        self.fail_mailbox(actor, self._quarantine_error(actor, None))

    async def _end_quarantined(self, actor: SessionActor) -> None:
        """Ending is the way out of quarantine; it needs no turn.

        Shielded: once the row is ended, the actor must leave memory too,
        or calls would go on hearing "quarantined" about an ended session.
        """
        with anyio.CancelScope(shield=True):
            await self._end_quarantined_now(actor)

    async def _end_quarantined_now(self, actor: SessionActor) -> None:
        if self._store is not None:
            await self._store.end(actor.id, self.clock.wall())
        self._quarantined.pop(actor.id, None)
        self.residency.remove(actor)

    def check_open(self) -> None:
        if self._closed:
            raise StateClosed("this actorstate is closed; open a new one with open_state()")

    # -- what the residency and durability ask of the scheduler ----------------

    @property
    def closed(self) -> bool:
        return self._closed

    def schedule(self, actor: SessionActor) -> None:
        self._ready.append(actor)
        self._wake_scheduler()

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        assert self._task_group is not None
        self._task_group.start_soon(fn, *args)

    def roll_back(self, actor: SessionActor) -> None:
        self.residency.roll_back(actor)

    def forget_ended(self, actor: SessionActor) -> None:
        self.residency.forget_ended(actor)

    def drop(self, actor: SessionActor, error: Exception) -> None:
        self.residency.drop(actor, error)

    async def housekeeping(self) -> None:
        await self.residency.housekeeping()

    # -- turns ----------------------------------------------------------------

    async def _run_scheduler(self) -> None:
        """Drain every ready actor's mailbox; park while there is none."""
        parking = self._parking
        while True:
            if not self._ready:
                wakeup: Envelope[None] = Envelope(None, None)
                self._scheduler_wakeup = wakeup
                await parking.park(wakeup)
            self._drain_ready()

    def _drain_ready(self) -> None:
        """One pass over the ready list: every ready actor's whole mailbox."""
        ready, self._ready = self._ready, []
        self.residency.tick()
        for actor in ready:
            batch = actor.mailbox
            if batch is not None and actor.status is _READY:
                actor.mailbox = None
                if actor.room is not None:
                    actor.room.set()
                    actor.room = None
                self._turns(actor, batch)

    def _wake_scheduler(self) -> None:
        wakeup = self._scheduler_wakeup
        if wakeup is not None:
            self._scheduler_wakeup = None
            self._parking.resolve(wakeup, None)

    def _turns(self, actor: SessionActor, batch: list[Envelope[Any]]) -> None:
        """Run one turn per envelope of ``batch``, taken from the actor's mailbox.

        This is the hot loop of the library. A turn never awaits, so turns of
        one actor cannot interleave. A turn that raises fails its caller and
        changes nothing (operations check before they mutate). An exception
        outside a turn is the actor's loop dying: see :meth:`_crashed`.
        """
        parking = self._parking
        fault_hook = self._fault_hook
        snapshots = self._snapshots
        wall = self.clock.wall()
        state: Any = actor.state
        ended = used = False
        started = 0
        routing: Envelope[Any] | None = None  # the call whose reply is being routed
        try:
            for envelope in batch:
                if envelope.cancelled or (envelope.waiter is not None and parking.abandoned(envelope)):
                    started += 1
                    continue
                message: Any = envelope.message
                if fault_hook is not None:
                    fault_hook(state.id, envelope.client_id, message)
                started += 1
                routing = envelope
                if ended or (envelope.client_id != state.client_id and envelope.client_id is not None):
                    parking.fail(envelope, SessionNotFound())
                    continue
                used = True
                try:
                    result = message.apply(state, wall, self.config)
                except BaseException as error:
                    # Whatever the turn raised is that caller's alone, even a
                    # BaseException from user code (see Session.update):
                    # the actor and every other caller go on.
                    if type(envelope) is ToldEnvelope:
                        logger.warning("a told message failed in session %s: %r", state.id, error)
                    parking.fail(envelope, error)
                    continue
                if type(message) is EndSession:
                    ended = True
                if snapshots is None:
                    parking.resolve(envelope, result)
                else:
                    snapshots.after_turn(actor, envelope, message, result)
                routing = None
        except Exception as crash:
            if not ended:
                self._crashed(actor, batch, started, routing, crash)
                return
            actor.requeue(batch[started:])
        if ended:
            actor.end()
            if snapshots is None:
                self.residency.remove(actor)
            else:
                # Stays resident (answering SessionNotFound) until the end is
                # committed; else a call could reload the old row meanwhile.
                self.fail_mailbox(actor, SessionNotFound())
            return
        # Most recently used goes last: every sweep walks from the front.
        # Only the owner's calls count: another client's probes keep nothing alive.
        if used and actor.status is not ActorStatus.GONE:
            self.residency.used(actor)

    def replay(
        self, actor: SessionActor, state: SessionState, version: int, epoch: int, calls: list[Envelope[Any]]
    ) -> None:
        """After a conflict: the stored ``state`` replaces the actor's, and ``calls`` (every
        operation since its last commit, in order) run again on it as turns.

        This is the one turn runner: a replayed call is checked for ownership,
        passes the fault hook, and can crash the loop like any other turn.
        """
        actor.rebase(state, version, epoch)
        self.residency.account(actor)
        if not calls:
            return
        if actor.status is ActorStatus.QUARANTINED:
            for envelope in calls:
                self._parking.fail(envelope, self._quarantine_error(actor, envelope.client_id))
        elif actor.status is ActorStatus.BACKOFF:
            actor.requeue(calls)  # first in line when the restart comes
        else:
            self._turns(actor, calls)

    # -- crashes and restarts -------------------------------------------------

    def _crashed(
        self,
        actor: SessionActor,
        batch: list[Envelope[Any]],
        started: int,
        routing: Envelope[Any] | None,
        crash: Exception,
    ) -> None:
        """The actor's loop died between turns; restart it or quarantine it."""
        if routing is not None and not routing.done:
            # The loop died while routing this call's reply; never leave its caller hanging.
            self._parking.fail(routing, crash)
        decision = self._restart_policy.after_crash(actor.crash_times, self.residency.now)
        actor.requeue([e for e in batch[started:] if not e.cancelled])
        session_id = actor.id
        if self._closed:
            # No restart after close: nobody would run it.
            logger.warning("session %s crashed while closing (%r)", session_id, crash)
            self.fail_mailbox(actor, StateClosed("actorstate closed while this session was restarting"))
            return
        if decision.delay is None:
            logger.error(
                "session %s quarantined: %d crashes within %g s, last: %r",
                session_id,
                decision.crashes,
                self.config.restart_window,
                crash,
            )
            reason = f"quarantined after {decision.crashes} crashes within {self.config.restart_window:g} s"
            self.quarantine(actor, reason, self._client_of(actor) or "")
            return
        actor.back_off(decision.crash_times)
        delay = decision.delay
        logger.warning(
            "session %s crashed (%r); restarting from its last good state in %.3f s (crash %d of %d allowed)",
            session_id,
            crash,
            delay,
            decision.crashes,
            self.config.max_restarts,
        )
        assert self._task_group is not None
        self._task_group.start_soon(self._restart_after, actor, delay)

    async def _restart_after(self, actor: SessionActor, delay: float) -> None:
        await self.clock.sleep(delay)
        if actor.status is not ActorStatus.BACKOFF or self._resident.get(actor.id) is not actor:
            return
        actor.restart()
        self.restarts += 1
        logger.warning("session %s restarted", actor.id)
        if actor.mailbox:
            self._ready.append(actor)
            self._wake_scheduler()

    def fail_mailbox(self, actor: SessionActor, error: Exception) -> None:
        batch, actor.mailbox = actor.mailbox or [], None
        # Another client's call hears only "not found". An actor whose state
        # never loaded has no known owner: a failed load says nothing about
        # whose the session is, so every caller hears what really happened.
        owner = self._client_of(actor)
        for envelope in batch:
            if envelope.client_id is not None and owner is not None and envelope.client_id != owner:
                self._parking.fail(envelope, SessionNotFound())
            else:
                self._parking.fail(envelope, error)
        if actor.room is not None:
            actor.room.set()
            actor.room = None

    # -- shutdown -------------------------------------------------------------

    async def _close(self) -> None:
        """Stop intake, let every posted message have its turn, flush, close the store."""
        self._closed = True
        closed = StateClosed("actorstate closed before this call got its turn")
        for actor in list(self._resident.values()):
            if actor.status is ActorStatus.BACKOFF and actor.mailbox:
                self.fail_mailbox(actor, closed)
        # Database reads in flight land first (a pass of housekeeping too).
        await self.residency.wait_idle()
        for actor in list(self._resident.values()):
            if actor.status is ActorStatus.LOADING:  # its load was cancelled
                self.residency.remove(actor, closed)
        # Run what is queued here: the scheduler may already be cancelled.
        while self._ready:
            self._drain_ready()
        if self._snapshots is not None:
            await self._snapshots.flush_all()
