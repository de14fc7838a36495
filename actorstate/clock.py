"""The one place the runtime reads the time and waits.

Two clocks: ``wall()`` (Unix time: what is stored, what expiry compares
across restarts) and ``monotonic()`` (what residency and restarts measure
intervals with). The default reads the system's wall clock and the event
loop's clock, so trio's ``MockClock`` still drives it. :class:`ManualClock`
moves only when told, on trio and asyncio alike, so tests (and seeded
simulations) step through restarts, idle passivation and expiry without
waiting for real time to pass.

Deadlines a caller sets around a call (``ask_timeout``) are the caller's own
and stay on the event loop's clock.
"""

from __future__ import annotations

import heapq
import itertools
import time

import anyio
import anyio.lowlevel

__all__ = ["Clock", "ManualClock"]


class Clock:
    """The system's time: ``time.time()`` and the event loop's clock."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return anyio.current_time()

    def timer(self) -> float:
        """Seconds for timing how long something took, for figures only (never to decide):
        ``time.perf_counter``, a tenth of the event loop clock's cost per read."""
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class ManualClock(Clock):
    """Time that moves only when :meth:`advance` says so; both clocks move together.

    A sleeper wakes once the clock has advanced past its deadline; a sleep of
    zero or less is a checkpoint. After ``advance``, let the woken tasks run
    (``await anyio.wait_all_tasks_blocked()``) before looking at their effects.
    """

    def __init__(self, wall: float = 1_800_000_000.0, monotonic: float = 0.0) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()  # ties wake in the order they slept

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def timer(self) -> float:
        return self._monotonic

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        heapq.heappush(self._sleepers, (self._monotonic + seconds, next(self._order), wake))
        await wake.wait()

    def advance(self, seconds: float) -> None:
        """Move both clocks forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._wall += seconds
        self._monotonic += seconds
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= self._monotonic:
            heapq.heappop(sleepers)[2].set()
