"""One memory measurement in a fresh process: RSS per resident session.

    python -m benchmarks.probes.memory SYSTEM SESSIONS BACKEND

SYSTEM is ``actorstate`` (sessions created through ``open_state`` in memory,
every one resident) or ``locks`` (``LockedSessions``, a dict of the same
``SessionState`` objects with a lock each). Each session gets one counter
increment. RSS is read from /proc/self/statm after ``gc.collect()`` before
the sessions exist and again with all of them alive; the probe prints one
JSON line: the figures, or ``{"failure": ...}`` when a session is missing or
its counter is not 1.

Only the state keeps the sessions: the probe holds a sample of their ids
(every ``SAMPLE_EVERY``-th, for the check), not a handle per session.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any

import anyio

import actorstate
from actorstate.config import Config
from benchmarks.baselines.lock_dict import LockedSessions

CLIENT = "bench"
SAMPLE_EVERY = 997
# Concurrent creators: the sessions come into being in batches, not one
# await at a time (the probe's cost at a million sessions is the creation).
CREATORS = 64


def rss() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settled_rss() -> int:
    gc.collect()
    return rss()


def config_for(sessions: int) -> Config:
    """Room for every session: the count cap and a budget far above what they take."""
    return Config(max_resident=sessions + 1, memory_budget_mb=max(256.0, sessions * 16 / 1024))


async def measure_actorstate(sessions: int) -> dict[str, Any]:
    async with actorstate.open_state(config=config_for(sessions)) as state:
        before = settled_rss()
        sample: list[str] = []

        async def creator(first: int) -> None:
            for index in range(first, sessions, CREATORS):
                session = await state.create_session(CLIENT)
                await session.increment()
                if index % SAMPLE_EVERY == 0:
                    sample.append(session.id)

        async with anyio.create_task_group() as tg:
            for first in range(min(CREATORS, sessions)):
                tg.start_soon(creator, first)
        after = settled_rss()
        stats = state.stats()
        if (
            stats["resident_actors"] != sessions
            or stats["passivated_sessions"]
            or any(stats["evictions"].values())
        ):
            return {
                "failure": f"{stats['resident_actors']} of {sessions} sessions resident "
                f"({stats['passivated_sessions']} passivated, evictions {stats['evictions']})"
            }
        for session_id in sample:
            context = await state.session(session_id, CLIENT).context()
            if context["metadata"].get("counter") != 1:
                return {"failure": f"session {session_id}'s counter is {context['metadata'].get('counter')}"}
        return {
            "rss_per_session": (after - before) / sessions,
            "accounted_per_session": stats["accounted_bytes"] / sessions,
            "checked": len(sample),
        }


async def measure_locks(sessions: int) -> dict[str, Any]:
    before = settled_rss()
    locked = LockedSessions(sessions)
    for session_id in locked.ids:
        await locked.increment(session_id)
    sample = locked.ids[::SAMPLE_EVERY]
    # The dict keeps the ids as its keys; the list beside it is the baseline's
    # convenience for callers, not part of the design (actorstate's probe
    # keeps no list either).
    locked.ids = []
    after = settled_rss()
    if len(locked.states) != sessions:
        return {"failure": f"{len(locked.states)} of {sessions} sessions held"}
    for session_id in sample:
        context = await locked.context(session_id)
        if context["metadata"].get("counter") != 1:
            return {"failure": f"session {session_id}'s counter is {context['metadata'].get('counter')}"}
    return {"rss_per_session": (after - before) / sessions, "checked": len(sample)}


SYSTEMS = {"actorstate": measure_actorstate, "locks": measure_locks}


def main(argv: list[str]) -> None:
    system, sessions, backend = argv
    print(json.dumps(anyio.run(SYSTEMS[system], int(sessions), backend=backend)))


if __name__ == "__main__":
    main(sys.argv[1:])
