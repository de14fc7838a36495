"""A workload run in a child process by the crash tests (not collected by pytest).

python crash_child.py load PATH MODE BACKEND ROUND SESSION_ID...
    Many tasks write forever; each call is logged before it is made
    ("inv") and after it is acknowledged ("ok", with the monotonic time).
    The parent SIGKILLs this process at a random point.

python crash_child.py count PATH BACKEND GO_FILE SESSION_ID N
    Waits for GO_FILE, increments the session's counter N times from 10
    tasks, prints the number of version conflicts it resolved, exits.
"""

from __future__ import annotations

import os
import sys
import time

import anyio

import actorstate
from actorstate import Config

TASKS = 20


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())  # unbuffered: a kill loses nothing printed


async def load(path: str, mode: str, round_number: int, session_ids: list[str]) -> None:
    # "graceful": interval mode that never flushes on its own, stopped by SIGTERM.
    graceful = mode == "graceful"
    config = Config(flush_interval=3600 if graceful else 0.05)
    async with actorstate.open_state(
        path,
        durability="interval" if graceful else mode,  # type: ignore[arg-type]
        config=config,
        stop_on_signals=graceful,
    ) as state:

        async def worker(task: int) -> None:
            session = state.session(session_ids[task % len(session_ids)])
            key = f"r{round_number}t{task}"
            n = 0
            while True:
                n += 1
                emit(f"inv set {key} {n}")
                await session.set_preference(key, n)
                emit(f"ok set {key} {n} {time.monotonic()}")
                emit(f"inv inc {session.id}")
                await session.increment("hits")
                emit(f"ok inc {session.id} 0 {time.monotonic()}")

        emit("ready")
        async with anyio.create_task_group() as tg:
            for task in range(TASKS):
                tg.start_soon(worker, task)
    emit("closed")


async def count(path: str, go_file: str, session_id: str, n: int) -> None:
    async with actorstate.open_state(path) as state:
        session = state.session(session_id)
        await session.context()
        emit("ready")
        while not os.path.exists(go_file):  # noqa: ASYNC110 - a barrier across processes
            await anyio.sleep(0.005)

        async def worker(calls: int) -> None:
            for _ in range(calls):
                await session.increment("hits")

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(worker, n // 10)
        emit(f"conflicts {state.stats()['conflicts']}")


if __name__ == "__main__":
    command, path = sys.argv[1], sys.argv[2]
    if command == "load":
        mode, backend, round_number = sys.argv[3], sys.argv[4], int(sys.argv[5])
        anyio.run(load, path, mode, round_number, sys.argv[6:], backend=backend)
    else:
        backend, go_file, session_id, n = sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
        anyio.run(count, path, go_file, session_id, n, backend=backend)
