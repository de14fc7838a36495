"""The supervisor: finds, schedules, restarts and evicts session actors.

A call is an envelope for the session's actor. When the actor is idle its
turn runs at once in the caller's task (after one checkpoint), so an
uncontended call costs no hand-off at all. Otherwise (the actor is loading,
restarting, or has calls queued) the envelope waits in the mailbox and the
caller parks; the first post to an empty mailbox puts the actor on the ready
list and wakes the scheduler task, which drains the whole mailbox of every
ready actor in one synchronous pass. Turns never await, so turns of one
actor never interleave, and no lock is taken.

Residency follows Orleans-style virtual actors: an actor is activated on its
first message, passivated when idle or past the resident cap (memory mode
keeps an encoded snapshot; with a store the state is already saved), and
evicted, least recently used first, when the memory budget is exceeded (in
memory mode an evicted session is gone). The resident dict is kept in
least-recently-used order for eviction.

Crashes follow Erlang/OTP restart intensity: an actor whose loop dies is
restarted with exponential backoff, and more than ``max_restarts`` crashes
within ``restart_window`` quarantine the session.
"""

from __future__ import annotations

import functools
import logging
import signal
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import Overloaded, SessionNotFound, SessionQuarantined, StateClosed, StoreError
from ..persistence.codec import SnapshotDecodeError, decode_session, encode_session
from ..persistence.db_thread import DatabaseThread
from ..persistence.snapshots import SnapshotActor
from ..persistence.store import SQLiteStore
from ..session_state import SessionState
from ._parking import Envelope, Parking, ToldEnvelope, parking_for_current_backend
from .memory import passivated_bytes, read_rss, resident_bytes
from .messages import CreateSession, EndSession, Message
from .session_actor import ActorStatus, Passivated, SessionActor

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["FaultHook", "Supervisor", "open_supervisor"]

logger = logging.getLogger("actorstate.supervisor")

# Called before every turn with the session id, the caller's client id (None
# for a tell or an owner handle) and the message; an exception raised here kills the actor's loop
# (fault injection for tests and the chaos runner; also a faithful log of the
# order in which turns ran).
FaultHook = Callable[[str, str | None, Message], None]

# Sample process RSS after this many activations (and on every maintenance
# tick): often enough to catch a burst of new sessions, cheap per call.
_RSS_SAMPLE_EVERY = 1024
_READY = ActorStatus.READY
# RSS growth up to this multiple of the accounted bytes is taken as sessions
# costing more than estimated; beyond it, as growth of the host application.
_RSS_PLAUSIBLE_FACTOR = 3
# Rows per expiry scan step (a few milliseconds of database time).
_EXPIRY_CHUNK = 2000


@asynccontextmanager
async def open_supervisor(
    config: Config,
    *,
    fault_hook: FaultHook | None = None,
    path: str | None = None,
    hold_replies: bool = True,
    connect: Callable[..., Any] | None = None,
    stop_on_signals: bool = False,
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the duration of the ``async with`` block.

    With a ``path``, sessions are stored in that SQLite file and
    ``hold_replies`` chooses commit (True) or interval (False) durability.
    On exit, intake stops, every message already posted gets its turn, every
    dirty session is flushed, and the background tasks end.
    """
    parking = parking_for_current_backend()
    snapshots = None
    if path is not None:
        db = DatabaseThread(parking, name="actorstate-db")
        try:
            store = await db.run(
                functools.partial(
                    SQLiteStore, busy_timeout=config.busy_timeout, connect=connect or sqlite3.connect
                ),
                path,
            )
        except BaseException:
            await db.stop()
            raise
        snapshots = SnapshotActor(
            store=store, db=db, parking=parking, config=config, hold_replies=hold_replies
        )
    supervisor = Supervisor(config, parking, fault_hook=fault_hook, snapshots=snapshots)
    body_error: BaseException | None = None
    try:
        async with anyio.create_task_group() as task_group:
            supervisor._task_group = task_group
            task_group.start_soon(supervisor._run_scheduler)
            task_group.start_soon(supervisor._run_maintenance)
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
        snapshots: SnapshotActor | None = None,
    ) -> None:
        self.config = config
        self._parking = parking
        self._fault_hook = fault_hook
        self._snapshots = snapshots
        # Commit mode: a write's reply waits for its commit anyway.
        self._hold_writes = snapshots is not None and snapshots.hold_replies
        if snapshots is not None:
            snapshots.attach(self)
        # Why a session is quarantined, and who owns it (its state may be unreadable).
        self._quarantined: dict[str, tuple[str, str]] = {}
        self._housekeeping_due = 0.0
        self._housekeeping = anyio.Lock()
        self._loads_in_flight = 0
        self._touched: dict[str, float] = {}
        self._db_bytes: int | None = None
        # Live sessions in the store, counted by the last housekeeping pass.
        self._stored_sessions: int | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False

        # Resident actors in least-recently-used order (oldest first), and the last one.
        self._resident: dict[str, SessionActor] = {}
        self._most_recent: SessionActor | None = None
        # Passivated sessions in passivation order (oldest first).
        self._passivated: dict[str, Passivated] = {}
        self._ready: list[SessionActor] = []
        self._scheduler_wakeup: Envelope | None = None

        # The monotonic clock, read once per scheduler pass and maintenance
        # tick rather than once per turn: residency decisions need seconds.
        self._now = anyio.current_time()

        self._accounted = 0
        self._high_bytes = int(config.memory_budget_bytes * config.memory_high_watermark)
        self._low_bytes = int(config.memory_budget_bytes * config.memory_low_watermark)
        self._rss_baseline = read_rss()
        self._rss_mark = 0

        # Increment messages already built and checked, by (key, by): see Session.increment.
        self.increments: dict[tuple[str, int], Message] = {}

        self.activations = 0
        self.passivations = 0
        self.evictions: Counter[str] = Counter()
        self.expired = 0
        self.restarts = 0
        self.mailbox_high_water = 0

    # -- calls ----------------------------------------------------------------

    async def create(self, client_id: str) -> str:
        """Create a session owned by ``client_id``; return its id."""
        self._check_open()
        session_id = str(uuid.uuid4())
        actor = SessionActor(session_id, SessionState(session_id, client_id, time.time()), self._now)
        self._resident[session_id] = actor
        self._most_recent = actor
        envelope = Envelope(CreateSession(), client_id)
        await self._post(session_id, envelope)
        self._activated(actor)
        result: str = await self._parking.park(envelope)
        return result

    async def ask(self, session_id: str, client_id: str | None, message: Message) -> Any:
        """Post ``message`` to the session's actor and wait for its reply.

        Error handling:
            SessionNotFound: unknown, ended, expired, evicted, or another client's.
            SessionQuarantined: the actor crashed too often.
            Overloaded: the mailbox stayed full for ``Config.ask_timeout``.
            Any exception the turn raised, with the state left unchanged.
        """
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

    async def tell(self, session_id: str, message: Message) -> None:
        """Post ``message`` without waiting for its turn (fire and forget).

        Waits only while the mailbox is full. The turn's result is dropped; an
        error it raises is logged.
        """
        await self._post(session_id, ToldEnvelope(message, None))

    async def list_sessions(self, client_id: str) -> list[tuple[str, float, float]]:
        """(id, created_at, last_activity) of the client's live sessions, oldest first."""
        found: dict[str, tuple[str, float, float]] = {}
        if self._snapshots is not None:
            rows = await self._snapshots.db.run(self._snapshots.store.list_client, client_id)
            found.update((row[0], tuple(row)) for row in rows)  # type: ignore[misc]
        for session_id, actor in self._resident.items():
            state = actor.state
            if actor.ending or actor.status is ActorStatus.ENDED:
                found.pop(session_id, None)
            elif state is not None and state.client_id == client_id:
                found[session_id] = (session_id, state.created_at, state.last_activity)
        for session_id, entry in self._passivated.items():
            if entry.client_id == client_id:
                state = decode_session(entry.blob)
                found[session_id] = (session_id, state.created_at, state.last_activity)
        return sorted(found.values(), key=lambda row: row[1])

    def stats(self) -> dict[str, Any]:
        quarantined = sum(1 for a in self._resident.values() if a.status is ActorStatus.QUARANTINED)
        store_stats: dict[str, Any] = {}
        sessions = len(self._resident) + len(self._passivated)
        if self._snapshots is not None:
            store_stats = self._snapshots.stats()
            store_stats["db_bytes"] = self._db_bytes
            # Counting a million rows on demand would stall commits; the
            # housekeeping pass counts them as it scans for expired ones.
            if self._stored_sessions is not None:
                sessions = self._stored_sessions
        return store_stats | {
            "resident_actors": len(self._resident),
            "passivated_sessions": len(self._passivated),
            "sessions": sessions,
            "activations": self.activations,
            "passivations": self.passivations,
            "evictions": dict(self.evictions),
            "expired": self.expired,
            "restarts": self.restarts,
            "quarantined": quarantined,
            "mailbox_high_water": self.mailbox_high_water,
            "accounted_bytes": self._accounted,
            "rss_bytes": read_rss(),
        }

    # -- posting --------------------------------------------------------------

    async def _post(self, session_id: str, envelope: Envelope) -> None:
        actor = self._resident.get(session_id)
        if actor is None or self._closed:
            actor = self._activate(session_id)
            self._post_now(actor, envelope)
            # Accounted only once a message is posted: an actor with a message
            # waiting is never evicted, so the budget check cannot drop it.
            self._activated(actor)
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

    def _post_now(self, actor: SessionActor, envelope: Envelope) -> bool:
        """Post if the mailbox has room; False if it is full."""
        self._check_open()
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

    async def _post_when_room(self, actor: SessionActor, envelope: Envelope) -> None:
        """The slow path: wait up to ``ask_timeout`` for room in a full mailbox."""
        owner = self._client_of(actor)
        if envelope.client_id is not None and owner is not None and envelope.client_id != owner:
            raise SessionNotFound  # before waiting: Overloaded would tell the id exists
        with anyio.move_on_after(self.config.ask_timeout):
            while True:
                if actor.room is None:
                    actor.room = anyio.Event()
                await actor.room.wait()
                self._check_open()
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

    def _quarantine(self, actor: SessionActor, reason: str, client_id: str) -> None:
        actor.status = ActorStatus.QUARANTINED
        self._quarantined[actor.id] = (reason, client_id)
        self._fail_mailbox(actor, self._quarantine_error(actor, None))

    async def _end_quarantined(self, actor: SessionActor) -> None:
        """Ending is the way out of quarantine; it needs no turn."""
        if self._snapshots is not None:
            snapshots = self._snapshots
            await snapshots.db.run(snapshots.store.end, actor.id, time.time())
        self._quarantined.pop(actor.id, None)
        self._remove(actor)

    def _check_open(self) -> None:
        if self._closed:
            raise StateClosed("this actorstate is closed; open a new one with open_state()")

    # -- turns ----------------------------------------------------------------

    async def _run_scheduler(self) -> None:
        """Drain every ready actor's mailbox; park while there is none."""
        parking = self._parking
        while True:
            if not self._ready:
                wakeup = Envelope(None, None)
                self._scheduler_wakeup = wakeup
                await parking.park(wakeup)
            self._drain_ready()

    def _drain_ready(self) -> None:
        """One pass over the ready list: every ready actor's whole mailbox."""
        ready, self._ready = self._ready, []
        self._now = anyio.current_time()
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

    def _turns(self, actor: SessionActor, batch: list[Envelope]) -> None:
        """Run one turn per envelope of ``batch``, taken from the actor's mailbox.

        This is the hot loop of the library. A turn never awaits, so turns of
        one actor cannot interleave. A turn that raises fails its caller and
        changes nothing (operations check before they mutate). An exception
        outside a turn is the actor's loop dying: see :meth:`_crashed`.
        """
        parking = self._parking
        fault_hook = self._fault_hook
        snapshots = self._snapshots
        wall = time.time()
        state: Any = actor.state
        ended = used = False
        started = 0
        try:
            for envelope in batch:
                if envelope.cancelled or (envelope.waiter is not None and parking.abandoned(envelope)):
                    started += 1
                    continue
                message: Any = envelope.message
                if fault_hook is not None:
                    fault_hook(state.id, envelope.client_id, message)
                started += 1
                if ended or (envelope.client_id != state.client_id and envelope.client_id is not None):
                    parking.fail(envelope, SessionNotFound())
                    continue
                used = True
                try:
                    result = message.apply(state, wall, self.config)
                except Exception as error:
                    if type(envelope) is ToldEnvelope:
                        logger.warning("a told message failed in session %s: %r", state.id, error)
                    parking.fail(envelope, error)
                    continue
                if type(message) is EndSession:
                    ended = actor.ending = True
                if snapshots is None:
                    parking.resolve(envelope, result)
                else:
                    snapshots.after_turn(actor, envelope, message, result)
        except Exception as crash:
            if not ended:
                self._crashed(actor, batch, started, crash)
                return
            actor.mailbox = batch[started:] or None
        if ended:
            if snapshots is None:
                self._remove(actor)
            else:
                # Stays resident (answering SessionNotFound) until the end is
                # committed; else a call could reload the old row meanwhile.
                actor.status = ActorStatus.ENDED
                self._fail_mailbox(actor, SessionNotFound())
            return
        # Most recently used goes last: every sweep walks from the front.
        # Only the owner's calls count: another client's probes keep nothing alive.
        resident = self._resident
        session_id = state.id
        if used and actor.status is not ActorStatus.GONE:
            if actor is not self._most_recent:  # a hot session is already last
                del resident[session_id]
                resident[session_id] = actor
                self._most_recent = actor
            actor.last_used = self._now
            if state.metadata_bytes + state.events_bytes != actor.accounted_basis:
                self._account(actor)

    # -- crashes and restarts -------------------------------------------------

    def _crashed(self, actor: SessionActor, batch: list[Envelope], started: int, crash: Exception) -> None:
        """The actor's loop died between turns; restart it or quarantine it."""
        if started and not batch[started - 1].done:
            # The loop died around this message's reply; never leave its caller hanging.
            self._parking.fail(batch[started - 1], crash)
        window_start = self._now - self.config.restart_window
        crash_times = [t for t in actor.crash_times or () if t > window_start]
        crash_times.append(self._now)
        actor.crash_times = crash_times
        unstarted = [e for e in batch[started:] if not e.cancelled]
        actor.mailbox = unstarted or None
        session_id = actor.id
        if self._closed:
            # No restart after close: nobody would run it.
            logger.warning("session %s crashed while closing (%r)", session_id, crash)
            self._fail_mailbox(actor, StateClosed("actorstate closed while this session was restarting"))
            return
        if len(crash_times) > self.config.max_restarts:
            logger.error(
                "session %s quarantined: %d crashes within %g s, last: %r",
                session_id,
                len(crash_times),
                self.config.restart_window,
                crash,
            )
            reason = f"quarantined after {len(crash_times)} crashes within {self.config.restart_window:g} s"
            self._quarantine(actor, reason, self._client_of(actor) or "")
            return
        actor.status = ActorStatus.BACKOFF
        delay = min(
            self.config.restart_backoff * 2 ** (len(crash_times) - 1), self.config.restart_backoff_max
        )
        logger.warning(
            "session %s crashed (%r); restarting from its last good state in %.3f s (crash %d of %d allowed)",
            session_id,
            crash,
            delay,
            len(crash_times),
            self.config.max_restarts,
        )
        assert self._task_group is not None
        self._task_group.start_soon(self._restart_after, actor, delay)

    async def _restart_after(self, actor: SessionActor, delay: float) -> None:
        await anyio.sleep(delay)
        if actor.status is not ActorStatus.BACKOFF or self._resident.get(actor.id) is not actor:
            return
        actor.status = ActorStatus.READY
        self.restarts += 1
        logger.warning("session %s restarted", actor.id)
        if actor.mailbox:
            self._ready.append(actor)
            self._wake_scheduler()

    def _fail_mailbox(self, actor: SessionActor, error: Exception) -> None:
        batch, actor.mailbox = actor.mailbox or [], None
        for envelope in batch:
            if envelope.client_id is not None and envelope.client_id != self._client_of(actor):
                self._parking.fail(envelope, SessionNotFound())
            else:
                self._parking.fail(envelope, error)
        if actor.room is not None:
            actor.room.set()
            actor.room = None

    # -- residency ------------------------------------------------------------

    def _activate(self, session_id: str) -> SessionActor:
        """Bring a session that is not resident back: decode it, or start loading it."""
        self._check_open()
        if self._snapshots is not None:
            actor = SessionActor(session_id, None, self._now)
            actor.status = ActorStatus.LOADING
            self._resident[session_id] = actor
            self._most_recent = actor
            assert self._task_group is not None
            self._task_group.start_soon(self._load, actor)
            return actor
        entry = self._passivated.pop(session_id, None)
        if entry is None:
            raise SessionNotFound
        self._accounted -= passivated_bytes(entry.blob)
        # Its last use stays what it was: a call that turns out to be another
        # client's must not make the session look recently used.
        actor = SessionActor(session_id, decode_session(entry.blob), entry.last_used)
        self._resident[session_id] = actor
        self._most_recent = actor
        return actor

    async def _load(self, actor: SessionActor) -> None:
        """Read an actor's snapshot from the store; its messages wait meanwhile."""
        snapshots = self._snapshots
        assert snapshots is not None
        session_id = actor.id
        self._loads_in_flight += 1
        try:
            row = await snapshots.db.run(snapshots.store.load, session_id)
        except StoreError as error:
            self._remove(actor, error)
            return
        finally:
            self._loads_in_flight -= 1
        if self._resident.get(session_id) is not actor or actor.status is not ActorStatus.LOADING:
            return
        if row is None or row.ended:
            self._remove(actor)
            return
        try:
            state = decode_session(row.state)
            if state.id != session_id:
                raise SnapshotDecodeError(f"the snapshot belongs to session {state.id}")
        except SnapshotDecodeError as error:
            logger.error("session %s quarantined: its stored snapshot cannot be read: %s", session_id, error)
            self._quarantine(
                actor, f"quarantined: its stored snapshot cannot be read ({error})", row.client_id
            )
            return
        actor.state = state
        actor.version = row.version
        actor.status = _READY
        # Last use as the store knows it (see _activate).
        actor.last_used = self._now - max(0.0, time.time() - state.last_activity)
        self._account(actor)
        if actor.mailbox:
            self._ready.append(actor)
            self._wake_scheduler()

    def roll_back(self, actor: SessionActor) -> None:
        """A commit failed: put the actor back to its last committed state (reload it)."""
        if self._resident.get(actor.id) is not actor or actor.status is ActorStatus.QUARANTINED:
            return
        if actor.version == 0 or actor.status is ActorStatus.ENDED:
            # Never stored, or its end is what failed: drop it; a call reloads the row.
            self._remove(actor, StoreError(f"session {actor.id} was not saved; try again"))
            return
        self._accounted -= actor.accounted
        actor.accounted, actor.accounted_basis = 0, -1
        actor.state = None
        actor.ending = False
        actor.status = ActorStatus.LOADING
        assert self._task_group is not None
        self._task_group.start_soon(self._load, actor)

    def forget_ended(self, actor: SessionActor) -> None:
        """The end of this session is committed: let the actor go."""
        self._remove(actor)

    def reaccount(self, actor: SessionActor) -> None:
        """The actor's state was replaced (conflict resolution): account its new size."""
        if self._resident.get(actor.id) is actor and actor.state is not None:
            self._account(actor)

    def _activated(self, actor: SessionActor) -> None:
        self.activations += 1
        if actor.state is not None:
            self._account(actor)
        if len(self._resident) > self.config.max_resident:
            self._passivate_lru(len(self._resident) - self.config.max_resident, "cap")
        if self.activations % _RSS_SAMPLE_EVERY == 0:
            self._check_rss()

    def _account(self, actor: SessionActor) -> None:
        state: Any = actor.state
        basis = state.state_bytes
        size = resident_bytes(basis)
        self._accounted += size - actor.accounted
        actor.accounted = size
        actor.accounted_basis = basis
        if self._accounted > self._high_bytes:
            self._evict_down_to(self._low_bytes, "memory")

    def _remove(self, actor: SessionActor, error: Exception | None = None) -> None:
        """Take the actor out of memory; calls waiting in its mailbox get ``error``."""
        if self._resident.get(actor.id) is actor:
            del self._resident[actor.id]
            self._accounted -= actor.accounted
            actor.accounted = 0
            actor.status = ActorStatus.GONE
            if self._most_recent is actor:
                self._most_recent = None
        error = error or SessionNotFound()
        if self._snapshots is not None:
            self._snapshots.forget(actor, error)
        self._fail_mailbox(actor, error)

    def _passivate(self, actor: SessionActor) -> None:
        """Take an idle actor out of memory, keeping its state.

        With a store the state is already there (idle means nothing unsaved);
        in memory mode it is kept as a compact encoded snapshot.
        """
        if self._snapshots is not None:
            self._remove(actor)
            self.passivations += 1
            return
        state: Any = actor.state
        try:
            blob = encode_session(state)
        except Exception as error:  # inputs are checked; this would be a bug, not a reason to die
            logger.error("session %s cannot be encoded (%r); it stays resident", actor.id, error)
            return
        self._remove(actor)
        self.passivations += 1
        self._passivated[actor.id] = Passivated(state.client_id, blob, actor.last_used)
        self._accounted += passivated_bytes(blob)

    def _passivate_lru(self, count: int, reason: str) -> None:
        victims: list[SessionActor] = []
        for actor in self._resident.values():
            if len(victims) >= count:
                break
            if actor.idle:
                victims.append(actor)
        for actor in victims:
            self._passivate(actor)
        if victims:
            logger.debug("passivated %d idle sessions (%s)", len(victims), reason)

    def _evict_down_to(self, target_bytes: int, reason: str) -> None:
        """Drop least-recently-used sessions until the accounted bytes reach the target.

        Passivated sessions go first (they are older than any resident one),
        then idle resident actors. In memory mode an evicted session is gone.
        """
        dropped = 0
        passivated = self._passivated
        while self._accounted > target_bytes and passivated:
            session_id = next(iter(passivated))
            self._accounted -= passivated_bytes(passivated.pop(session_id).blob)
            dropped += 1
        if self._accounted > target_bytes:
            victims: list[SessionActor] = []
            excess = self._accounted - target_bytes
            for actor in self._resident.values():
                if excess <= 0:
                    break
                if actor.idle:
                    victims.append(actor)
                    excess -= actor.accounted
            for actor in victims:
                # With a store this only passivates: the state is saved already.
                self._remove(actor)
            dropped += len(victims)
        if dropped:
            self.evictions[reason] += dropped
            logger.info(
                "evicted %d sessions (%s): %d bytes accounted, budget %d bytes",
                dropped,
                reason,
                self._accounted,
                self.config.memory_budget_bytes,
            )

    def _check_rss(self) -> None:
        rss = read_rss()
        if rss is None or self._rss_baseline is None:
            return
        growth = rss - self._rss_baseline
        if growth <= self._high_bytes or rss <= self._rss_mark or self._accounted <= 0:
            return
        # RSS seldom shrinks after objects are freed (the allocator keeps the
        # pages for reuse), so act again only when RSS grows past this mark.
        self._rss_mark = rss
        if growth > _RSS_PLAUSIBLE_FACTOR * self._accounted:
            # Far more growth than sessions could explain: the host application
            # grew, not us. Evicting sessions would destroy state for nothing.
            logger.warning(
                "process RSS grew by %d MB, far beyond the %d MB accounted to sessions; "
                "not evicting sessions for it",
                growth // 2**20,
                self._accounted // 2**20,
            )
            return
        # The estimate is low: RSS says sessions cost more than accounted.
        # Scale the target by the observed ratio.
        self._evict_down_to(int(self._accounted * self._low_bytes / growth), "memory")

    # -- maintenance ----------------------------------------------------------

    async def _run_maintenance(self) -> None:
        while True:
            await anyio.sleep(self.config.maintenance_interval)
            self.sweep()

    def sweep(self) -> None:
        """End expired sessions, passivate idle actors, check RSS."""
        now = self._now = anyio.current_time()
        ttl_cutoff = now - self.config.session_ttl
        idle_cutoff = now - self.config.idle_timeout
        housekeeping_due = now >= self._housekeeping_due and not self._closed

        expired: list[str] = []
        if housekeeping_due and self._snapshots is None:
            # Passivated sessions can be many; scan them only once per housekeeping interval.
            expired = [sid for sid, entry in self._passivated.items() if entry.last_used <= ttl_cutoff]
            for session_id in expired:
                self._accounted -= passivated_bytes(self._passivated.pop(session_id).blob)
            self._housekeeping_due = now + self.config.housekeeping_interval
        stale: list[SessionActor] = []
        idle: list[SessionActor] = []
        # A full scan (about a millisecond per 10,000 actors): an actor brought
        # back by someone else's probe keeps its old last use, so the resident
        # order alone cannot tell which ones are idle.
        for actor in self._resident.values():
            if not actor.idle:
                continue
            if actor.last_used <= ttl_cutoff:
                stale.append(actor)
            elif actor.last_used <= idle_cutoff:
                idle.append(actor)
        for actor in stale:
            self._remember_last_use(actor)
            self._remove(actor)
        for actor in idle:
            self._remember_last_use(actor)
            self._passivate(actor)
        if self._snapshots is not None:
            # With a store, the store ends expired rows (housekeeping below);
            # resident actors idle past the TTL only leave memory here.
            stale = []
            if housekeeping_due and not self._housekeeping.locked():
                assert self._task_group is not None
                self._task_group.start_soon(self.housekeeping)
        if expired or stale:
            self.expired += len(expired) + len(stale)
            logger.info(
                "ended %d sessions idle longer than %g s", len(expired) + len(stale), self.config.session_ttl
            )
        if idle:
            logger.debug("passivated %d sessions idle longer than %g s", len(idle), self.config.idle_timeout)
        self._check_rss()

    def _remember_last_use(self, actor: SessionActor) -> None:
        """Note when a stored session was last used if reads made it later than its row says.

        Reads change nothing, so they write nothing; this keeps a session that
        was only read from looking idle to the store's TTL expiry.
        """
        if self._snapshots is None or actor.state is None:
            return
        wall_last_use = time.time() - (self._now - actor.last_used)
        if wall_last_use > actor.state.last_activity + 1.0:
            self._touched[actor.id] = wall_last_use

    async def housekeeping(self) -> None:
        """End expired rows, purge old ended ones, checkpoint the WAL (store only).

        Runs every ``Config.housekeeping_interval``; failures are logged and
        retried next time.
        """
        snapshots = self._snapshots
        if snapshots is None:
            return
        async with self._housekeeping:
            await self._housekeep(snapshots)

    async def _housekeep(self, snapshots: SnapshotActor) -> None:
        db, store = snapshots.db, snapshots.store
        try:
            wall = time.time()
            touched, self._touched = self._touched, {}
            if touched:
                try:
                    await db.run(store.touch, list(touched.items()))
                except BaseException:
                    self._touched = touched | self._touched  # try again next time
                    raise
            expired = live = 0
            after_id = ""
            resident = frozenset(self._resident)
            while True:  # one chunk per job: commits slip in between
                ended, still_live, after_id = await db.run(
                    store.expire, after_id, _EXPIRY_CHUNK, wall - self.config.session_ttl, wall, resident
                )
                expired += ended
                live += still_live
                if not after_id:
                    break
            self._stored_sessions = live
            purged = await db.run(store.purge, wall - self.config.ended_retention)
            await db.run(store.checkpoint)
            self._db_bytes = await db.run(store.size_bytes)
            self.expired += expired
            if expired or purged:
                logger.info(
                    "ended %d sessions idle longer than %g s; purged %d ended sessions",
                    expired,
                    self.config.session_ttl,
                    purged,
                )
        except StoreError as error:
            logger.warning("housekeeping failed, will retry: %s", error)
        except Exception:  # a bug must not take the whole state down with it
            logger.exception("housekeeping failed unexpectedly, will retry")
        finally:
            self._housekeeping_due = anyio.current_time() + self.config.housekeeping_interval

    # -- shutdown -------------------------------------------------------------

    async def _close(self) -> None:
        """Stop intake, let every posted message have its turn, flush, close the store."""
        self._closed = True
        closed = StateClosed("actorstate closed before this call got its turn")
        for actor in list(self._resident.values()):
            if actor.status is ActorStatus.BACKOFF and actor.mailbox:
                self._fail_mailbox(actor, closed)
        while self._loads_in_flight or self._housekeeping.locked():  # noqa: ASYNC110 - rare, shutdown only
            await anyio.sleep(0.002)  # database reads in flight; let them land
        for actor in list(self._resident.values()):
            if actor.status is ActorStatus.LOADING:  # its load was cancelled
                self._remove(actor, closed)
        # Run what is queued here: the scheduler may already be cancelled.
        while self._ready:
            self._drain_ready()
        snapshots = self._snapshots
        if snapshots is not None:
            await snapshots.flush_all()
            try:
                await snapshots.db.run(snapshots.store.close)
            finally:
                await snapshots.db.stop()
