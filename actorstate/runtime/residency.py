"""Residency: which session actors are in memory, and for how long.

Orleans-style virtual actors: an actor is activated on its first message
(decoded from a passivated snapshot, or loaded from the store), passivated
when idle or past the resident cap, and evicted, least recently used first,
when the memory budget is exceeded. With a store, passivation and eviction
only drop the in-memory copy; in memory mode a passivated session is kept as
a compact encoded snapshot and an evicted one is gone. Also here: memory
accounting and the maintenance sweep, which starts the store's housekeeping
(:mod:`.housekeeping`) when it is due.

:class:`Residency` is an object the supervisor composes: it owns the
resident and passivated maps and their accounting, and asks the scheduler
for what it needs (failing a mailbox, scheduling an actor, a background
task) through :class:`ResidencyHost`. Before a call, :meth:`Residency.refresh`
reloads the sessions another process changed (see the store's freshness
contract).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

from ..backend import run_detached
from ..errors import SessionNotFound, StoreError
from ..fault_seam import process_seam
from ..model.codec import SnapshotDecodeError, decode_session, encode_session
from .actor import ActorStatus, Passivated, SessionActor
from .events import SessionEvents
from .housekeeping import Housekeeping
from .memory import passivated_bytes, read_rss, resident_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from ..clock import Clock
    from ..config import Config
    from ..store.interface import Store
    from .durability import SnapshotActor

__all__ = ["Residency"]

logger = logging.getLogger("actorstate.supervisor")

# Sample process RSS after this many activations (and on every maintenance
# tick): often enough to catch a burst of new sessions, cheap per call.
_RSS_SAMPLE_EVERY = 1024
# RSS growth up to this multiple of the accounted bytes is taken as sessions
# costing more than estimated; beyond it, as growth of the host application.
_RSS_PLAUSIBLE_FACTOR = 3
_READY = ActorStatus.READY


@dataclasses.dataclass(frozen=True, slots=True)
class ResidencyStats:
    """What residency counts: actors in memory, sessions, and memory."""

    resident_actors: int
    passivated_sessions: int
    sessions: int | None  # memory mode only: with a store, housekeeping counts them
    activations: int
    passivations: int
    evictions: dict[str, int]  # by reason
    expired: int
    refreshed: int  # sessions reloaded because another process changed them
    accounted_bytes: int
    rss_bytes: int | None


class ResidencyHost(Protocol):
    """What residency asks of the scheduler that runs the actors (the supervisor)."""

    @property
    def closed(self) -> bool: ...
    def check_open(self) -> None: ...
    def fail_mailbox(self, actor: SessionActor, error: Exception, owner: str | None = None) -> None: ...
    def quarantine(self, actor: SessionActor, reason: str, client_id: str) -> None: ...
    def schedule(self, actor: SessionActor) -> None:
        """The actor can run again (its load landed) and has messages waiting."""

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the background, in the state's task group."""


class Residency:
    """The registry of actors in memory: which are resident, passivated, loading; their
    memory; idle passivation, eviction and expiry."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        host: ResidencyHost,
        *,
        store: Store | None = None,
        durability: SnapshotActor | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._host = host
        self._store = store
        self._snapshots = durability
        # The chaos runner's seam, in a server it attacks: may squeeze the resident cap.
        self._fault_seam = process_seam()
        # The monotonic clock, read once per scheduler pass and maintenance
        # tick rather than once per turn: residency decisions need seconds.
        self.now = clock.monotonic()
        # Resident actors in least-recently-used order (oldest first), and the last one.
        self.resident: dict[str, SessionActor] = {}
        self._most_recent: SessionActor | None = None
        # Passivated sessions in passivation order (oldest first).
        self.passivated: dict[str, Passivated] = {}
        self.accounted = 0
        self._high_bytes = int(config.memory_budget_bytes * config.memory_high_watermark)
        self._low_bytes = int(config.memory_budget_bytes * config.memory_low_watermark)
        self._rss_baseline = read_rss()
        self._rss_mark = 0
        self._expiry_due = 0.0  # memory mode: when passivated sessions are next checked for expiry
        self.housekeeping = (
            Housekeeping(config, clock, store, self.resident.keys) if store is not None else None
        )
        self._loads_in_flight = 0
        self._no_loads: anyio.Event | None = None  # set when the last load in flight lands
        self._refreshing: anyio.Event | None = None
        self._refreshes = 0  # refreshes started; a load that saw this move reads again
        self.refreshed = 0  # sessions reloaded because another process changed them
        self.activations = 0
        self.passivations = 0
        self.evictions: Counter[str] = Counter()
        self.expired = 0
        # Leases of sessions taken out of memory, to give up (see _give_up_lease): (id, epoch).
        self._leases_to_release: list[tuple[str, int]] = []
        # Who hears of sessions passivated, evicted, expired (and, from the parts above, the rest).
        self.events = SessionEvents()

    def stats(self) -> ResidencyStats:
        sessions = None if self._store is not None else len(self.resident) + len(self.passivated)
        return ResidencyStats(
            resident_actors=len(self.resident),
            passivated_sessions=len(self.passivated),
            sessions=sessions,
            activations=self.activations,
            passivations=self.passivations,
            evictions=dict(self.evictions),
            expired=self.expired,
            refreshed=self.refreshed,
            accounted_bytes=self.accounted,
            rss_bytes=read_rss(),
        )

    def tick(self) -> float:
        """Read the monotonic clock (once per scheduler pass); return it."""
        self.now = now = self.clock.monotonic()
        return now

    def admit(self, actor: SessionActor) -> None:
        """A new session's actor joins the resident ones, as the most recently used."""
        self.resident[actor.id] = actor
        self._most_recent = actor

    def used(self, actor: SessionActor) -> None:
        """The owner called the actor: it becomes the most recently used (sweeps walk from the front)."""
        if actor is not self._most_recent:  # a hot session is already last
            resident = self.resident
            del resident[actor.id]
            resident[actor.id] = actor
            self._most_recent = actor
        actor.used_at(self.now)
        state = actor.state
        if state is not None and state.state_bytes != actor.accounted_basis:
            self.account(actor)

    async def wait_idle(self) -> None:
        """Wait until no load and no housekeeping pass is in flight (closing)."""
        await self._loads_landed()
        if self.housekeeping is not None:
            await self.housekeeping.wait_idle()

    # -- activation, passivation, eviction -----------------------------------

    def activate(self, session_id: str) -> SessionActor:
        """Bring a session that is not resident back: decode it, or start loading it."""
        self._host.check_open()
        if self._snapshots is not None:
            actor = SessionActor(session_id, None, self.now)
            actor.start_loading()
            self.resident[session_id] = actor
            self._most_recent = actor
            self._host.spawn(self._load, actor)
            return actor
        entry = self.passivated.pop(session_id, None)
        if entry is None:
            raise SessionNotFound
        self.accounted -= passivated_bytes(entry.blob)
        # Its last use stays what it was: a call that turns out to be another
        # client's must not make the session look recently used.
        actor = SessionActor(session_id, decode_session(entry.blob), entry.last_used)
        self.resident[session_id] = actor
        self._most_recent = actor
        return actor

    async def _load(self, actor: SessionActor, owner: str | None = None) -> None:
        """Read an actor's snapshot from the store; its messages wait meanwhile. ``owner``: the
        session's client, when known from before (a reload)."""
        store = self._store
        assert store is not None
        session_id = actor.id
        refreshes = self._refreshes
        self._loads_in_flight += 1
        try:
            calling, read_owner = await self._owner_is_calling(store, actor)
            owner = read_owner or owner
            if not calling:
                # Unknown, or only other clients' calls wait: they are refused
                # without the session being read (what a miss costs, whatever
                # the session holds) or made resident.
                if self.resident.get(session_id) is actor and actor.status is ActorStatus.LOADING:
                    self.remove(actor)
                return
            row = await store.load(session_id)
        except StoreError as error:
            # Other clients' calls waiting with the owner's hear "not found", not why the load
            # failed: "served by node N" (or a store error about it) would tell them it exists.
            self.remove(actor, error, owner=owner)
            return
        finally:
            self._loads_in_flight -= 1
            if not self._loads_in_flight and self._no_loads is not None:
                self._no_loads.set()
                self._no_loads = None
        if self.resident.get(session_id) is not actor or actor.status is not ActorStatus.LOADING:
            return
        if self._refreshes != refreshes:
            # Another process committed while this load was reading, and a
            # caller may have seen that commit: what was read may be older.
            self._host.spawn(self._load, actor, owner)
            return
        if row is None or row.ended:
            self.remove(actor)
            return
        try:
            state = decode_session(row.state)
            if state.id != session_id:
                raise SnapshotDecodeError(f"the snapshot belongs to session {state.id}")
        except SnapshotDecodeError as error:
            logger.error("session %s quarantined: its stored snapshot cannot be read: %s", session_id, error)
            self._host.quarantine(
                actor, f"quarantined: its stored snapshot cannot be read ({error})", row.client_id
            )
            return
        # Last use as the store knows it (see activate).
        actor.loaded(
            state, row.version, row.epoch, self.now - max(0.0, self.clock.wall() - state.last_activity)
        )
        self.account(actor)
        if actor.mailbox:
            self._host.schedule(actor)

    @staticmethod
    async def _owner_is_calling(store: Store, actor: SessionActor) -> tuple[bool, str | None]:
        """Whether a call waiting for the actor may see the session: one from its owner, or one
        not scoped to a client; and the owner, if it was read. When every waiting call is scoped
        (a call over authenticated HTTP is), the owner alone is read first, so another client's
        session is never loaded.
        """
        waiting = actor.mailbox
        if not waiting or not all(envelope.client_id is not None for envelope in waiting):
            return True, None  # a reload (nothing waits), or a call that may see any session
        owner = await store.owner_of(actor.id)
        # Calls may have arrived meanwhile: the mailbox is looked at again.
        calling = owner is not None and any(
            envelope.client_id in (None, owner) for envelope in actor.mailbox or ()
        )
        return calling, owner

    async def _loads_landed(self) -> None:
        """Wait until no load is in flight."""
        while self._loads_in_flight:
            if self._no_loads is None:
                self._no_loads = anyio.Event()
            await self._no_loads.wait()

    def roll_back(self, actor: SessionActor) -> None:
        """A commit failed: put the actor back to its last committed state (reload it)."""
        if self.resident.get(actor.id) is not actor or actor.status is ActorStatus.QUARANTINED:
            return
        if actor.version == 0 or actor.status is ActorStatus.ENDED:
            # Never stored, or its end is what failed: drop it; a call reloads the row.
            self.remove(actor, StoreError(f"session {actor.id} was not saved; try again"))
            return
        self.reload(actor)

    def reload(self, actor: SessionActor) -> None:
        """Read the actor's state from the store again; its calls wait meanwhile."""
        owner = actor.state.client_id if actor.state is not None else None
        self.accounted -= actor.accounted
        actor.start_loading()
        self._host.spawn(self._load, actor, owner)

    @property
    def refreshing(self) -> bool:
        """Whether a refresh is in flight: the sessions it will reload may still answer from their
        old state, though the store already counts the change as seen (see :meth:`refresh`)."""
        return self._refreshing is not None

    async def refresh(self) -> None:
        """Reload the resident sessions another process changed (see Store.moved).

        One refresh at a time: a caller arriving meanwhile waits until none is
        in flight (even when the store no longer reports a change: a refresh
        takes it as seen when it reads the store, and its reloads start only
        when it returns), then looks again, because the refresh may have read
        the store before the commit this caller saw. Every session with
        nothing of its own unsaved is looked at, calls waiting in its mailbox
        or not (they wait for the reload). A session with changes of its own
        in flight is left alone: its commit will conflict and replay them on
        the other process's state.
        """
        store = self._store
        assert store is not None
        if self._refreshing is not None:
            # Until no refresh is in flight: one that another waiter started
            # meanwhile may have taken the change as seen without applying it yet.
            while self._refreshing is not None:
                await self._refreshing.wait()
            if not store.maybe_changed():
                return
        self._refreshing = done = anyio.Event()
        self._refreshes += 1  # loads reading meanwhile read again: see _load
        # Detached from the caller: the store takes the change as seen when it
        # is read, so a refresh cut short by a cancelled caller would leave the
        # sessions it found moved unreloaded, answering from their old state.
        await run_detached(self._host.spawn, self._refresh, store, done)

    async def _refresh(self, store: Store, done: anyio.Event) -> None:
        try:
            held = {
                session_id: actor.version
                for session_id, actor in self.resident.items()
                if actor.version and actor.committed
            }
            moved = await store.moved(held)
            for session_id in moved:
                actor = self.resident.get(session_id)
                if actor is not None and actor.committed:
                    self.reload(actor)
                    self.refreshed += 1
        finally:
            self._refreshing = None
            done.set()

    def drop(self, actor: SessionActor, error: Exception) -> None:
        """Take the actor out of memory at once; calls waiting for it get ``error``."""
        self.remove(actor, error)

    def forget_ended(self, actor: SessionActor) -> None:
        """The end of this session is committed: let the actor go."""
        self.remove(actor)

    def activated(self, actor: SessionActor) -> None:
        self.activations += 1
        if actor.state is not None:
            self.account(actor)
        cap = self._max_resident()
        if len(self.resident) > cap:
            self._passivate_lru(len(self.resident) - cap, "cap")
        if self.activations % _RSS_SAMPLE_EVERY == 0:
            self._check_rss()

    def _max_resident(self) -> int:
        squeezed = self._fault_seam.max_resident() if self._fault_seam is not None else None
        return self.config.max_resident if squeezed is None else min(squeezed, self.config.max_resident)

    def account(self, actor: SessionActor) -> None:
        state: Any = actor.state
        basis = state.state_bytes
        size = resident_bytes(basis)
        self.accounted += size - actor.accounted
        actor.accounted_as(size, basis)
        if self.accounted > self._high_bytes:
            self._evict_down_to(self._low_bytes, "memory")

    def remove(
        self, actor: SessionActor, error: Exception | None = None, *, owner: str | None = None
    ) -> None:
        """Take the actor out of memory; calls waiting in its mailbox get ``error`` (those of
        clients other than the session's ``owner``, when known: SessionNotFound)."""
        if self.resident.get(actor.id) is actor:
            del self.resident[actor.id]
            self.accounted -= actor.accounted
            actor.leave()
            if self._most_recent is actor:
                self._most_recent = None
        error = error or SessionNotFound()
        if self._snapshots is not None:
            self._snapshots.forget(actor, error)
        self._host.fail_mailbox(actor, error, owner)

    def passivate(self, actor: SessionActor) -> None:
        """Take an idle actor out of memory, keeping its state.

        With a store the state is already there (idle means nothing unsaved);
        in memory mode it is kept as a compact encoded snapshot.
        """
        if self._snapshots is not None:
            self.remove(actor)
            self._give_up_lease(actor)
            self.passivations += 1
            self.events.emit("passivated", actor.id, _owner(actor))
            return
        state: Any = actor.state
        try:
            blob = encode_session(state)
        except Exception as error:  # inputs are checked; this would be a bug, not a reason to die
            logger.error("session %s cannot be encoded (%r); it stays resident", actor.id, error)
            return
        self.remove(actor)
        self.passivations += 1
        self.passivated[actor.id] = Passivated(state.client_id, state.created_at, blob, actor.last_used)
        self.accounted += passivated_bytes(blob)
        self.events.emit("passivated", actor.id, state.client_id)

    def _give_up_lease(self, actor: SessionActor) -> None:
        """A stored session taken out of memory (passivated, evicted) gives up its lease, so that
        another node sharing the store may claim it at once instead of waiting the lease out.

        Given up in batches, in the background: a store without leases does nothing, and one
        that fails to (the database is down) lets the leases expire. Taken out of memory with
        nothing unsaved, so no write of it is in flight; were it loaded again meanwhile, it was
        claimed under a newer epoch, and the store keeps that lease.
        """
        if self._store is None or not actor.version or self._host.closed:
            return  # never stored (nothing to give up), or closing (the store gives up all at close)
        self._leases_to_release.append((actor.id, actor.epoch))
        if len(self._leases_to_release) == 1:
            self._host.spawn(self._release_leases)

    async def _release_leases(self) -> None:
        store = self._store
        assert store is not None
        batch, self._leases_to_release = self._leases_to_release, []
        try:
            await store.release(batch)
        except StoreError as error:
            logger.debug("%d leases were not given up (they will expire): %s", len(batch), error)

    def _passivate_lru(self, count: int, reason: str) -> None:
        victims: list[SessionActor] = []
        for actor in self.resident.values():
            if len(victims) >= count:
                break
            if actor.idle:
                victims.append(actor)
        for actor in victims:
            self.passivate(actor)
        if victims:
            logger.debug("passivated %d idle sessions (%s)", len(victims), reason)

    def _evict_down_to(self, target_bytes: int, reason: str) -> None:
        """Drop least-recently-used sessions until the accounted bytes reach the target.

        Passivated sessions go first (they are older than any resident one),
        then idle resident actors. In memory mode an evicted session is gone.
        """
        dropped = 0
        passivated = self.passivated
        while self.accounted > target_bytes and passivated:
            session_id = next(iter(passivated))
            entry = passivated.pop(session_id)
            self.accounted -= passivated_bytes(entry.blob)
            dropped += 1
            self.events.emit("evicted", session_id, entry.client_id, reason)
        if self.accounted > target_bytes:
            victims: list[SessionActor] = []
            excess = self.accounted - target_bytes
            for actor in self.resident.values():
                if excess <= 0:
                    break
                if actor.idle:
                    victims.append(actor)
                    excess -= actor.accounted
            for actor in victims:
                # With a store this only passivates: the state is saved already.
                self.remove(actor)
                self._give_up_lease(actor)
                self.events.emit("evicted", actor.id, _owner(actor), reason)
            dropped += len(victims)
        if dropped:
            self.evictions[reason] += dropped
            logger.info(
                "evicted %d sessions (%s): %d bytes accounted, budget %d bytes",
                dropped,
                reason,
                self.accounted,
                self.config.memory_budget_bytes,
            )

    def _check_rss(self) -> None:
        rss = read_rss()
        if rss is None or self._rss_baseline is None:
            return
        growth = rss - self._rss_baseline
        if growth <= self._high_bytes or rss <= self._rss_mark or self.accounted <= 0:
            return
        # RSS seldom shrinks after objects are freed (the allocator keeps the
        # pages for reuse), so act again only when RSS grows past this mark.
        self._rss_mark = rss
        if growth > _RSS_PLAUSIBLE_FACTOR * self.accounted:
            # Far more growth than sessions could explain: the host application
            # grew, not us. Evicting sessions would destroy state for nothing.
            logger.warning(
                "process RSS grew by %d MB, far beyond the %d MB accounted to sessions; "
                "not evicting sessions for it",
                growth // 2**20,
                self.accounted // 2**20,
            )
            return
        # The estimate is low: RSS says sessions cost more than accounted.
        # Scale the target by the observed ratio.
        self._evict_down_to(int(self.accounted * self._low_bytes / growth), "memory")

    # -- maintenance ----------------------------------------------------------

    async def run_maintenance(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        if self.housekeeping is not None:
            # Known from the first call on: the size is cheap to read, and the
            # first housekeeping pass (which counts the live sessions) starts now.
            await self.housekeeping.measure()
            self._host.spawn(self.housekeeping.run_pass)
        task_status.started()
        while True:
            await self.clock.sleep(self.config.maintenance_interval)
            self.sweep()

    def sweep(self) -> None:
        """End expired sessions, passivate idle actors, check RSS."""
        now = self.now = self.clock.monotonic()
        if self._fault_seam is not None and len(self.resident) > self._max_resident():
            self._passivate_lru(len(self.resident) - self._max_resident(), "cap")
        ttl_cutoff = now - self.config.session_ttl
        idle_cutoff = now - self.config.idle_timeout
        expired: list[str] = []
        if self._snapshots is None and now >= self._expiry_due:
            # Passivated sessions can be many; scan them only once per housekeeping interval.
            expired = [sid for sid, entry in self.passivated.items() if entry.last_used <= ttl_cutoff]
            for session_id in expired:
                entry = self.passivated.pop(session_id)
                self.accounted -= passivated_bytes(entry.blob)
                self.events.emit("expired", session_id, entry.client_id)
            self._expiry_due = now + self.config.housekeeping_interval
        stale: list[SessionActor] = []
        idle: list[SessionActor] = []
        # A full scan (about a millisecond per 10,000 actors): an actor brought
        # back by someone else's probe keeps its old last use, so the resident
        # order alone cannot tell which ones are idle.
        for actor in self.resident.values():
            if not actor.idle:
                continue
            if actor.last_used <= ttl_cutoff:
                stale.append(actor)
            elif actor.last_used <= idle_cutoff:
                idle.append(actor)
        for actor in stale:
            self._remember_last_use(actor)
            self.remove(actor)
            self.events.emit("expired", actor.id, _owner(actor))
        for actor in idle:
            self._remember_last_use(actor)
            self.passivate(actor)
        if self._snapshots is not None:
            # With a store, the store ends expired rows (housekeeping below);
            # resident actors idle past the TTL only leave memory here.
            stale = []
            housekeeping = self.housekeeping
            if housekeeping is not None and housekeeping.due(now) and not self._host.closed:
                self._host.spawn(housekeeping.run_pass)
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
        if self.housekeeping is None or actor.state is None:
            return
        wall_last_use = self.clock.wall() - (self.now - actor.last_used)
        if wall_last_use > actor.state.last_activity + 1.0:
            self.housekeeping.note_last_use(actor.id, wall_last_use)


def _owner(actor: SessionActor) -> str | None:
    """The client owning a resident actor's session (None while its state is not loaded)."""
    state = actor.state
    return None if state is None else state.client_id
