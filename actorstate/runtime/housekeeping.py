"""Housekeeping: the store's periodic pass.

Every ``Config.housekeeping_interval`` (and on :meth:`State.housekeeping`),
one pass: write down when sessions that were only read were last used, end
stored sessions idle past ``session_ttl`` (in chunks, so commits slip in
between), purge ended ones past ``ended_retention``, let the store maintain
itself (SQLite checkpoints its WAL), and measure the database. The pass
counts the live sessions as it scans, so ``stats()`` never counts a million
rows on demand. Failures are logged and retried next time.

Residency decides when a pass is due (its maintenance sweep) and tells this
part when a resident session was last used; nothing here looks upward.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import anyio

from ..errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from ..clock import Clock
    from ..config import Config
    from ..store.interface import Store

__all__ = ["Housekeeping", "HousekeepingStats"]

logger = logging.getLogger("actorstate.housekeeping")

# Rows per expiry scan step (a few milliseconds of database time).
_EXPIRY_CHUNK = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class HousekeepingStats:
    """What housekeeping counts; None until it is known (the first pass has not ended)."""

    stored_sessions: int | None  # live sessions the last pass counted
    expired: int  # stored sessions ended for idling past the TTL
    db_bytes: int | None


class Housekeeping:
    """The store's periodic pass; see the module docstring."""

    def __init__(
        self, config: Config, clock: Clock, store: Store, resident_ids: Callable[[], Collection[str]]
    ) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        # Sessions in memory: expiry leaves them alone (memory knows their last use better).
        self._resident_ids = resident_ids
        self._running = anyio.Lock()
        self._due = 0.0  # monotonic
        # Last uses later than the rows say (sessions that were only read), by id.
        self._touched: dict[str, float] = {}
        self.stored_sessions: int | None = None
        self.expired = 0
        self.db_bytes: int | None = None

    def stats(self) -> HousekeepingStats:
        return HousekeepingStats(self.stored_sessions, self.expired, self.db_bytes)

    def due(self, now: float) -> bool:
        """Whether a pass should start at ``now`` (monotonic): its interval passed, none running."""
        return now >= self._due and not self._running.locked()

    def note_last_use(self, session_id: str, wall: float) -> None:
        """The session was last used at ``wall``, later than its row says; the next pass writes it."""
        self._touched[session_id] = wall

    async def measure(self) -> None:
        """Read the database's size (cheap; the pass does it too)."""
        try:
            self.db_bytes = await self._store.size_bytes()
        except StoreError as error:
            logger.warning("cannot measure the database: %s", error)

    async def wait_idle(self) -> None:
        """Wait until no pass is running."""
        async with self._running:
            pass

    async def run_pass(self) -> None:
        """Run one pass now; a pass already running is waited for first."""
        async with self._running:
            try:
                await self._pass()
            except StoreError as error:
                logger.warning("housekeeping failed, will retry: %s", error)
            except Exception:  # a bug must not take the whole state down with it
                logger.exception("housekeeping failed unexpectedly, will retry")
            finally:
                self._due = self._clock.monotonic() + self._config.housekeeping_interval

    async def _pass(self) -> None:
        store = self._store
        config = self._config
        wall = self._clock.wall()
        touched, self._touched = self._touched, {}
        if touched:
            try:
                await store.touch(list(touched.items()))
            except BaseException:
                self._touched = touched | self._touched  # try again next time
                raise
        expired = live = 0
        after_id = ""
        resident = frozenset(self._resident_ids())
        while True:  # one chunk per job: commits slip in between
            step = await store.expire(after_id, _EXPIRY_CHUNK, wall - config.session_ttl, wall, resident)
            expired += step.ended
            live += step.live
            after_id = step.next_after
            if not after_id:
                break
        self.stored_sessions = live
        purged = await store.purge(wall - config.ended_retention)
        await store.maintain()
        self.db_bytes = await store.size_bytes()
        self.expired += expired
        if expired or purged:
            logger.info(
                "ended %d sessions idle longer than %g s; purged %d ended sessions",
                expired,
                config.session_ttl,
                purged,
            )
