"""actorstate's stdio server in commit mode on a store that costs nothing: the commit path's ceiling.

    python benchmarks/probes/commit_ceiling.py

The stdio scenario runs this beside ``actorstate serve``. It is the same
server doing the same work in commit mode: every reply held until the
group commit holding its state is done, snapshots encoded, the flush loop
and its wake-ups. Only the store differs: the library's ``MemoryStore``,
whose write is one checkpoint on the event loop (no SQLite, no worker
thread, no fsync). A real store answers from elsewhere, later, so this is
about the most any store could give commit mode: the gap between the two
rows is what the SQLite store costs, and this row against memory mode is
what holding replies for their commit costs.
"""

from __future__ import annotations

import gc
import sys

import anyio

from actorstate import open_state
from actorstate.cli import SERVE_SWITCH_INTERVAL
from actorstate.store.memory import MemoryStore
from actorstate.transport.serve import serve_stdio


async def _serve() -> None:
    # As ``actorstate serve`` sets up its process before serving.
    gc.freeze()
    sys.setswitchinterval(SERVE_SWITCH_INTERVAL)
    async with open_state(MemoryStore(), durability="commit") as state:
        await serve_stdio(state)


def main() -> None:
    anyio.run(_serve, backend="asyncio")


if __name__ == "__main__":
    main()
