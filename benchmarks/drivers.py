"""The load drivers the in-process scenarios share, and the guard every in-process measurement runs under.

- ``closed_loop``: callers each making their calls one after the other
  (a caller waits for its reply before the next call);
- ``open_loop``: calls started at a fixed rate whatever the replies do,
  each latency counted from when the call was due;
- ``run_measurement``: a fresh event loop for one measurement, under a
  generous timeout, so a system that deadlocks is a failure, not a hang.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeVar, TypeVarTuple

import anyio

from benchmarks.suite import BenchmarkFailure, Figures, latency_figures

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
Call = TypeVar("Call")

# Far above any measurement's run (the longest take a few seconds): reaching
# it means the system stopped answering.
MEASUREMENT_TIMEOUT = 300.0


def run_measurement(function: Callable[[*Ts], Awaitable[T]], *args: *Ts, backend: str, what: str) -> T:
    """``anyio.run(function, *args)`` under ``MEASUREMENT_TIMEOUT``; past it, BenchmarkFailure.

    The timeout covers the whole run, set-up and close included: a system
    whose close never returns has stopped answering too.
    """
    timeout = MEASUREMENT_TIMEOUT

    async def guarded() -> T:
        with anyio.fail_after(timeout):
            return await function(*args)

    try:
        return anyio.run(guarded, backend=backend)
    except TimeoutError:
        raise BenchmarkFailure(f"{what}: stopped answering (no result within {timeout:g} s)") from None


async def closed_loop(
    plan: Sequence[Sequence[Call]],
    call: Callable[[Call], Awaitable[object]],
    clock: Callable[[], float] = time.perf_counter,
) -> Figures:
    """Every caller's calls, each caller one call after the other, all callers at once.

    Returns the rate (calls per second of the whole run), latency
    percentiles, the calls made and the seconds taken.
    """
    latencies: list[float] = []
    record = latencies.append

    async def caller(calls: Sequence[Call]) -> None:
        for planned in calls:
            started = clock()
            await call(planned)
            record(clock() - started)

    started = clock()
    async with anyio.create_task_group() as tg:
        for calls in plan:
            tg.start_soon(caller, calls)
    elapsed = clock() - started
    return {
        "rate": len(latencies) / elapsed,
        **latency_figures(latencies),
        "calls": len(latencies),
        "seconds": elapsed,
    }


async def open_loop_latencies(
    plan: Sequence[Call],
    rate: float,
    call: Callable[[Call], Awaitable[object]],
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[float], float]:
    """Start call ``i`` at ``i / rate`` seconds whatever came back; each call's latency from
    when it was due, by position in the plan, and the seconds from the start to the last reply.

    A closed-loop client slows down with the server and hides its stalls
    (coordinated omission); here a call delayed by a stall counts the stall.
    """
    latencies = [0.0] * len(plan)

    async def one(index: int, due: float) -> None:
        await call(plan[index])
        latencies[index] = clock() - due

    start = clock()
    async with anyio.create_task_group() as tg:
        index = 0
        while index < len(plan):
            now = clock()
            # Every call already due starts now: a late wake-up must not
            # lower the offered rate.
            while index < len(plan) and start + index / rate <= now:
                tg.start_soon(one, index, start + index / rate)
                index += 1
            if index < len(plan):
                await anyio.sleep(max(0.0, start + index / rate - clock()))
    return latencies, clock() - start


async def open_loop(
    plan: Sequence[Call],
    rate: float,
    call: Callable[[Call], Awaitable[object]],
    clock: Callable[[], float] = time.perf_counter,
) -> Figures:
    """``open_loop_latencies`` as figures: the achieved rate beside the offered one, latency
    percentiles, the calls made. Achieved below ``OVERLOADED`` of offered: the system could not
    keep up, and its latencies grow with the run's length (``report`` marks it)."""
    latencies, elapsed = await open_loop_latencies(plan, rate, call, clock)
    return {
        "rate": len(plan) / elapsed,
        "offered_rate": float(rate),
        **latency_figures(latencies),
        "calls": len(plan),
    }
