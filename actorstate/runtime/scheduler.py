"""The scheduler: the one runner of turns, and what happens when an actor's loop dies.

A session actor holds no task. The first message posted to an empty mailbox
puts the actor on the ready list and wakes the scheduler task, which drains
the whole mailbox of every ready actor in one synchronous pass, one turn per
message. Turns never await, so turns of one actor never interleave, and no
lock is taken. The supervisor also runs a turn directly in the caller's task
when the actor is idle (:meth:`Scheduler.turns`); durability replays calls
after a conflict through :meth:`Scheduler.replay`. Either way every turn goes
through :meth:`Scheduler.turns`: the ownership check and the fault hook apply
to each one.

Crashes follow Erlang/OTP restart intensity (:mod:`.restart`): an actor
whose loop dies is restarted with exponential backoff, and more than
``max_restarts`` crashes within ``restart_window`` quarantine the session.

The scheduler composes the residency registry and is the host it asks for
scheduling, failing a mailbox, quarantine and background tasks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..backend import Envelope, Parking, ToldEnvelope
from ..errors import SessionNotFound, SessionQuarantined, StateClosed
from ..model.messages import EndSession, Message
from .actor import ActorStatus, SessionActor
from .histogram import TURN_BOUNDS, Histogram
from .residency import Residency
from .restart import RestartPolicy

if TYPE_CHECKING:
    import anyio.abc

    from ..clock import Clock
    from ..config import Config
    from ..model.session_state import SessionState
    from ..store.interface import Store
    from .durability import SnapshotActor

__all__ = ["FaultHook", "Scheduler", "SchedulerStats"]

logger = logging.getLogger("actorstate.supervisor")

# Called before every turn with the session id, the caller's client id (None
# for a tell or an owner handle) and the message; an exception raised here
# kills the actor's loop (fault injection for tests and the chaos runner; also
# a faithful log of the order in which turns ran).
FaultHook = Callable[[str, str | None, Message[Any]], None]

_READY = ActorStatus.READY


@dataclasses.dataclass(frozen=True, slots=True)
class SchedulerStats:
    """What the scheduler counts: restarts, sessions quarantined now, the fullest mailbox seen,
    and now: calls waiting in every mailbox together and in the fullest one."""

    restarts: int
    quarantined: int
    mailbox_high_water: int
    mailbox_waiting: int
    mailbox_depth_max: int


class Scheduler:
    """Runs every turn of one state's actors; see the module docstring."""

    def __init__(
        self,
        config: Config,
        parking: Parking,
        clock: Clock,
        *,
        store: Store | None = None,
        durability: SnapshotActor | None = None,
        fault_hook: FaultHook | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._parking = parking
        self._fault_hook = fault_hook
        self._snapshots = durability
        self._restart_policy = RestartPolicy(config)
        self.residency = Residency(config, clock, self, store=store, durability=durability)
        # Why a session is quarantined, and who owns it (its state may be unreadable).
        self._quarantined: dict[str, tuple[str, str]] = {}
        self._ready: list[SessionActor] = []
        self._wakeup: Envelope[None] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        # Read on every call (a plain attribute: cheaper than a property); only close() sets it.
        self.closed = False
        self.restarts = 0
        self.mailbox_high_water = 0
        # How long each turn that completed took (two clock reads and a bisection per turn).
        self.turn_seconds = Histogram(TURN_BOUNDS)

    def stats(self) -> SchedulerStats:
        # One walk over the resident actors, when figures are asked for: the
        # hot path keeps no running count of its own.
        quarantined = waiting = deepest = 0
        for actor in self.residency.resident.values():
            if actor.status is ActorStatus.QUARANTINED:
                quarantined += 1
            mailbox = actor.mailbox
            if mailbox is not None:
                waiting += len(mailbox)
                deepest = max(deepest, len(mailbox))
        return SchedulerStats(self.restarts, quarantined, self.mailbox_high_water, waiting, deepest)

    # -- lifetime -------------------------------------------------------------

    def use_task_group(self, task_group: anyio.abc.TaskGroup) -> None:
        """Background work (loads, restarts, housekeeping) runs in ``task_group`` from now on."""
        self._task_group = task_group

    async def run(self) -> None:
        """The scheduler task: drain every ready actor's mailbox; park while there is none."""
        parking = self._parking
        while True:
            if not self._ready:
                wakeup: Envelope[None] = Envelope(None, None)
                self._wakeup = wakeup
                await parking.park(wakeup)
            self.drain()

    def close(self) -> None:
        """Stop intake: calls posted from now on raise StateClosed; queued ones still run."""
        self.closed = True

    def check_open(self) -> None:
        if self.closed:
            raise StateClosed("this actorstate is closed; open a new one with open_state()")

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the background, in the state's task group."""
        assert self._task_group is not None
        self._task_group.start_soon(fn, *args)

    # -- mailboxes ------------------------------------------------------------

    def post(self, actor: SessionActor, envelope: Envelope[Any]) -> bool:
        """Post if the mailbox has room; False if it is full.

        Error handling:
            StateClosed, SessionQuarantined, SessionNotFound (the actor ended).
        """
        self.check_open()
        status = actor.status
        if status is ActorStatus.QUARANTINED:
            raise self.quarantine_error(actor, envelope.client_id)
        if status is ActorStatus.ENDED:
            raise SessionNotFound
        waiting = actor.post(envelope, self.config.mailbox_size)
        if waiting == 1:
            if status is _READY:
                self.schedule(actor)
            # Loading or in backoff: the message waits for the actor.
        elif waiting > self.mailbox_high_water:
            self.mailbox_high_water = waiting
        return waiting != 0

    def schedule(self, actor: SessionActor) -> None:
        """The actor has messages waiting and can run them: the next pass drains it."""
        self._ready.append(actor)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            self._parking.resolve(wakeup, None)

    def drain(self) -> None:
        """One pass over the ready list: every ready actor's whole mailbox."""
        ready, self._ready = self._ready, []
        self.residency.tick()
        for actor in ready:
            if actor.mailbox is not None and actor.status is _READY:
                self.turns(actor, actor.take_mailbox())

    def drain_all(self) -> None:
        """Run everything queued, here (closing: the scheduler task may be cancelled already)."""
        while self._ready:
            self.drain()

    def fail_mailbox(self, actor: SessionActor, error: Exception, owner: str | None = None) -> None:
        """Every call waiting for the actor gets ``error`` (another client's: SessionNotFound).

        ``owner``: the session's client when the actor's state does not say (a
        load that read the owner, or a reload, then failed)."""
        batch = actor.take_mailbox()
        # An actor whose state never loaded, and whose owner was not read, has
        # no known owner: a failed load says nothing about whose the session
        # is, so every caller hears what really happened.
        owner = self.client_of(actor) or owner
        for envelope in batch:
            if envelope.client_id is not None and owner is not None and envelope.client_id != owner:
                self._parking.fail(envelope, SessionNotFound())
            else:
                self._parking.fail(envelope, error)

    def client_of(self, actor: SessionActor) -> str | None:
        """The session's owner, if known (a quarantined session's state may be unreadable)."""
        if actor.state is not None:
            return actor.state.client_id
        reason = self._quarantined.get(actor.id)
        return reason[1] if reason else None

    # -- turns ----------------------------------------------------------------

    def turns(self, actor: SessionActor, batch: list[Envelope[Any]]) -> None:
        """Run one turn per envelope of ``batch``, taken from the actor's mailbox.

        This is the hot loop of the library. A turn never awaits, so turns of
        one actor cannot interleave. A turn that raises fails its caller and
        changes nothing (operations check before they mutate). An exception
        outside a turn is the actor's loop dying: see :meth:`_crashed`.
        """
        parking = self._parking
        fault_hook = self._fault_hook
        snapshots = self._snapshots
        timer = self.clock.timer
        observe_turn = self.turn_seconds.observe
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
                    begun = timer()
                    result = message.apply(state, wall, self.config)
                    observe_turn(timer() - begun)
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

        A replayed call is checked for ownership, passes the fault hook, and
        can crash the loop like any other turn.
        """
        actor.rebase(state, version, epoch)
        self.residency.account(actor)
        if not calls:
            return
        if actor.status is ActorStatus.QUARANTINED:
            for envelope in calls:
                self._parking.fail(envelope, self.quarantine_error(actor, envelope.client_id))
        elif actor.status is ActorStatus.BACKOFF:
            actor.requeue(calls)  # first in line when the restart comes
        else:
            self.turns(actor, calls)

    # -- crashes, restarts, quarantine ---------------------------------------

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
        if self.closed:
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
            self.quarantine(actor, reason, self.client_of(actor) or "")
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
        self.spawn(self._restart_after, actor, delay)

    async def _restart_after(self, actor: SessionActor, delay: float) -> None:
        await self.clock.sleep(delay)
        self.restart(actor)

    def restart(self, actor: SessionActor) -> None:
        """End the actor's backoff now: it serves again, and its waiting calls run in the next pass.

        Does nothing unless the actor is still resident and in backoff.
        """
        if actor.status is not ActorStatus.BACKOFF or self.residency.resident.get(actor.id) is not actor:
            return
        actor.restart()
        self.restarts += 1
        logger.warning("session %s restarted", actor.id)
        self.residency.events.emit("restarted", actor.id, self.client_of(actor))
        if actor.mailbox:
            self.schedule(actor)

    def quarantine(self, actor: SessionActor, reason: str, client_id: str) -> None:
        """Stop serving the session: every call, now and later, fails until it is ended."""
        actor.quarantine()
        self._quarantined[actor.id] = (reason, client_id)
        self.fail_mailbox(actor, self.quarantine_error(actor, None))
        self.residency.events.emit("quarantined", actor.id, client_id or None, reason)

    def quarantine_error(self, actor: SessionActor, client_id: str | None) -> Exception:
        if client_id is not None and client_id != self.client_of(actor):
            return SessionNotFound()
        reason = self._quarantined.get(actor.id, ("quarantined", ""))[0]
        return SessionQuarantined(f"session {actor.id} is {reason}; end it, or restart the server")

    def release_quarantine(self, actor: SessionActor) -> None:
        """The quarantined session ended: forget why it was quarantined, and let the actor go."""
        self._quarantined.pop(actor.id, None)
        self.residency.remove(actor)
