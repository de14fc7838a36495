"""Listing 300,000 sessions of one client: what a page costs, and how long other calls wait meanwhile.

    python benchmarks/measure_listing.py [--db PATH]   # without --db: memory mode

Creates 300,000 sessions for one client (as every ``create_session``
without a clientId lands in "anonymous"), then, while another task keeps
incrementing a counter in a session of its own, times the first page of the
``list_sessions`` tool, a 1,000-row page, and reading every id with
``State.list_sessions``; prints the longest wait the increments saw and the
peak RSS. Not a test: numbers vary with the machine.
"""

from __future__ import annotations

import argparse
import resource
import time

import anyio

import actorstate
from actorstate import Config, Durability
from actorstate.transport.tools import ToolContext, call_tool

SESSIONS = 300_000


async def main(path: str | None) -> None:
    config = Config(max_resident=10_000, memory_budget_mb=2048)
    durability: Durability = "interval" if path else "memory"
    async with actorstate.open_state(path, durability=durability, config=config) as state:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:

            async def make(count: int) -> None:
                for _ in range(count):
                    await state.create_session()

            for _ in range(100):
                tg.start_soon(make, SESSIONS // 100)
        print(f"created {SESSIONS:,} sessions in {time.perf_counter() - started:.1f} s ({durability})")
        hot = await state.create_session("other")
        context = ToolContext(state)
        waits: list[float] = []

        async def increment_meanwhile() -> None:
            while True:
                asked = time.perf_counter()
                await hot.increment()
                waits.append(time.perf_counter() - asked)
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(increment_meanwhile)
            started = time.perf_counter()
            first = await call_tool(context, "list_sessions", {})
            print(
                f"first page: {len(first.structured['sessions'])} rows, {len(first.text):,} bytes, "
                f"{(time.perf_counter() - started) * 1000:.1f} ms"
            )
            started = time.perf_counter()
            await call_tool(
                context, "list_sessions", {"limit": 1000, "cursor": first.structured["nextCursor"]}
            )
            print(f"1,000-row page: {(time.perf_counter() - started) * 1000:.1f} ms")
            started = time.perf_counter()
            ids = await state.list_sessions()
            print(f"every id ({len(ids):,}) page by page: {time.perf_counter() - started:.2f} s")
            tg.cancel_scope.cancel()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"longest wait of a concurrent increment: {max(waits) * 1000:.1f} ms; peak RSS {peak} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="an SQLite file (created); memory mode without it")
    anyio.run(main, parser.parse_args().db, backend="trio")
