"""The leases one PostgreSQL store holds, as this process's own clock sees them.

A session row's lease expires by the *database's* clock: that decides who
may claim it. This node must also know, without asking, when its own leases
may be running out, because its resident sessions answer reads from memory:
once a lease could have expired, another node may have claimed the session
and written it, and a read from memory would be stale.

So each lease is remembered with the moment (this process's monotonic
clock, one that keeps counting through a suspend) just *before* the
statement that granted or renewed it was sent. The
database set its expiry to its own ``now() + lease`` no earlier than that,
so ``sent + lease`` is a lower bound of the expiry (clocks differ in time,
not much in rate). Renewal is due a third of a lease after the oldest grant:
from then on :meth:`LeaseBook.renewal_due` answers True, the store's
``maybe_changed`` passes that on, and the runtime refreshes (renews every
resident session's lease in one statement, reloading those it lost) before
it answers any call. A read is therefore served from memory only while every
lease it could rely on has at least two thirds of its length left.

The book is written on the store's worker thread and :meth:`renewal_due`
is read from the event loop; it reads one float, which needs no lock.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["LeaseBook"]

# Renew once this fraction of a lease has passed since its oldest grant.
RENEW_AFTER = 1 / 3


def _lease_clock() -> Callable[[], float]:
    """A clock that keeps counting while the machine is suspended (Linux's CLOCK_BOOTTIME).

    ``time.monotonic`` stops during a suspend; a node woken after its leases
    expired would then believe them fresh and answer reads from stale copies.
    """
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic
    return lambda: time.clock_gettime(boottime)


class LeaseBook:
    """Session id -> (owner epoch, monotonic time its lease was last granted or renewed).

    Two kinds of entry: leases *relied on* (granted by a claim or a write,
    or renewed because their session is resident and committed: reads may
    be answered from memory under them, so they decide when renewal is due)
    and leases *set aside* (sessions the last renewal was not asked about:
    passivated, or with a write in flight, whose reads wait for it). Those
    set aside no longer make renewal due; they are still given up at close,
    renewed if asked about again, and forgotten once they cannot hold.
    """

    def __init__(self, lease_duration: float, monotonic: Callable[[], float] | None = None) -> None:
        self.lease_duration = lease_duration
        self._monotonic = monotonic or _lease_clock()
        self._relied_on: dict[str, tuple[int, float]] = {}
        self._set_aside: dict[str, tuple[int, float]] = {}
        self._renew_at = math.inf

    def now(self) -> float:
        """The clock the book measures by; read it just before sending a statement."""
        return self._monotonic()

    def renewal_due(self) -> bool:
        """Whether some lease relied on may be a third through (costs one clock read)."""
        return self._monotonic() >= self._renew_at

    def _entry(self, session_id: str) -> tuple[int, float] | None:
        return self._relied_on.get(session_id) or self._set_aside.get(session_id)

    def epoch(self, session_id: str) -> int | None:
        """The epoch this node holds the session under, or None if it holds no lease on it."""
        entry = self._entry(session_id)
        return None if entry is None else entry[0]

    def held_ids(self) -> list[str]:
        """Every session whose lease this node may still hold."""
        return [*self._relied_on, *self._set_aside]

    def granted(self, session_id: str, epoch: int, sent_at: float) -> None:
        """A claim or a committed write (sent at ``sent_at``) gave this node the session's lease."""
        self._set_aside.pop(session_id, None)
        self._relied_on[session_id] = (epoch, sent_at)
        self._renew_at = min(self._renew_at, sent_at + self.lease_duration * RENEW_AFTER)

    def lost(self, session_id: str) -> None:
        """The session is no longer this node's (fenced, ended, or found moved)."""
        self._relied_on.pop(session_id, None)
        self._set_aside.pop(session_id, None)

    def renewal_of(self, session_ids: Iterable[str]) -> tuple[list[str], list[int], list[str]]:
        """What to renew of ``session_ids``: (ids held, their epochs, ids not held at all)."""
        ids: list[str] = []
        epochs: list[int] = []
        unknown: list[str] = []
        for session_id in session_ids:
            entry = self._entry(session_id)
            if entry is None:
                unknown.append(session_id)
            else:
                ids.append(session_id)
                epochs.append(entry[0])
        return ids, epochs, unknown

    def renewed(self, renewed: Iterable[tuple[str, int]], looked_at: Iterable[str], sent_at: float) -> None:
        """A renewal sent at ``sent_at`` renewed ``renewed`` (id, epoch) of the sessions ``looked_at``.

        Those looked at and not renewed are lost. The renewed ones are what
        is relied on from now; every other lease is set aside, and those set
        aside that cannot hold any more are forgotten.
        """
        for session_id in looked_at:
            self.lost(session_id)
        horizon = sent_at - self.lease_duration
        self._set_aside = {
            key: value
            for key, value in (*self._set_aside.items(), *self._relied_on.items())
            if value[1] > horizon
        }
        self._relied_on = {}
        for session_id, epoch in renewed:
            self._set_aside.pop(session_id, None)
            self._relied_on[session_id] = (epoch, sent_at)
        self._renew_at = sent_at + self.lease_duration * RENEW_AFTER if self._relied_on else math.inf
