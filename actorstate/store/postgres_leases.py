"""The leases one PostgreSQL store holds, as this process's own clock sees them.

A session row's lease expires by the *database's* clock: that decides who
may claim it. This node must also know, without asking, when its own leases
may be running out, because its resident sessions answer reads from memory:
once a lease could have expired, another node may have claimed the session
and written it, and a read from memory would be stale.

So each lease is remembered with the moment (this process's monotonic
clock) just *before* the statement that granted or renewed it was sent. The
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


class LeaseBook:
    """Session id -> (owner epoch, monotonic time its lease was last granted or renewed)."""

    def __init__(self, lease_duration: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.lease_duration = lease_duration
        self._monotonic = monotonic
        self._held: dict[str, tuple[int, float]] = {}
        self._renew_at = math.inf

    def now(self) -> float:
        """The clock the book measures by; read it just before sending a statement."""
        return self._monotonic()

    def renewal_due(self) -> bool:
        """Whether some lease held may be a third through (costs one clock read)."""
        return self._monotonic() >= self._renew_at

    def epoch(self, session_id: str) -> int | None:
        """The epoch this node holds the session under, or None if it holds no lease on it."""
        held = self._held.get(session_id)
        return None if held is None else held[0]

    def __len__(self) -> int:
        return len(self._held)

    def held_ids(self) -> list[str]:
        """Every session whose lease this node may still hold."""
        return list(self._held)

    def granted(self, session_id: str, epoch: int, sent_at: float) -> None:
        """A claim or a committed write (sent at ``sent_at``) gave this node the session's lease."""
        self._held[session_id] = (epoch, sent_at)
        self._renew_at = min(self._renew_at, sent_at + self.lease_duration * RENEW_AFTER)

    def lost(self, session_id: str) -> None:
        """The session is no longer this node's (fenced, ended, or found moved)."""
        self._held.pop(session_id, None)

    def renewal_of(self, session_ids: Iterable[str]) -> tuple[list[str], list[int], list[str]]:
        """What to renew of ``session_ids``: (ids held, their epochs, ids not held at all)."""
        ids: list[str] = []
        epochs: list[int] = []
        unknown: list[str] = []
        for session_id in session_ids:
            held = self._held.get(session_id)
            if held is None:
                unknown.append(session_id)
            else:
                ids.append(session_id)
                epochs.append(held[0])
        return ids, epochs, unknown

    def renewed(self, renewed: Iterable[tuple[str, int]], looked_at: Iterable[str], sent_at: float) -> None:
        """A renewal sent at ``sent_at`` renewed ``renewed`` (id, epoch) of the sessions ``looked_at``.

        Those looked at and not renewed are lost. Leases not looked at (a
        session whose write was in flight) stay while they may still hold,
        and are forgotten once they cannot (a session this node let go).
        """
        for session_id in looked_at:
            self._held.pop(session_id, None)
        for session_id, epoch in renewed:
            self._held[session_id] = (epoch, sent_at)
        horizon = sent_at - self.lease_duration
        self._held = {key: value for key, value in self._held.items() if value[1] > horizon}
        oldest = min((granted for _, granted in self._held.values()), default=math.inf)
        self._renew_at = oldest + self.lease_duration * RENEW_AFTER
