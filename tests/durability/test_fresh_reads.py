"""Fresh reads across processes: a session resident here reloads when another process commits to it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

import actorstate

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

# Another process: add to the counter of one session, and exit once that is acknowledged.
_WRITER = textwrap.dedent(
    """
    import sys, anyio, actorstate
    async def main(path, session_id, by):
        async with actorstate.open_state(path) as state:
            print(await state.session(session_id, "alice").increment(by=int(by)))
    anyio.run(main, *sys.argv[1:])
    """
)


def _write_elsewhere(path: Path, session_id: str, by: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path), session_id, str(by)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


async def test_a_read_sees_a_write_another_process_acknowledged(tmp_path: Path) -> None:
    """The session is resident here (read and written); another process adds 10 and exits;
    the next read here returns its write, and a write here goes on from it."""
    path = tmp_path / "shared.db"
    async with actorstate.open_state(path) as state:
        session = await state.create_session("alice")
        assert await session.increment() == 1
        assert (await session.context())["metadata"] == {"counter": 1}
        assert _write_elsewhere(path, session.id, 10) == 11
        assert (await session.context())["metadata"] == {"counter": 11}
        assert await session.increment() == 12
        assert state.stats()["refreshed"] == 1
        assert state.stats()["conflicts"] == 0  # reloaded before it answered, not found out at commit


async def test_own_commits_never_look_like_another_process(tmp_path: Path) -> None:
    """Alone on its file, a process reloads nothing, however much it writes and reads."""
    async with actorstate.open_state(tmp_path / "alone.db") as state:
        sessions = [await state.create_session() for _ in range(20)]
        for _ in range(10):
            for session in sessions:
                await session.increment()
                await session.context()
        await state.housekeeping()  # its commits and checkpoint are this process's too
        await sessions[0].context()
        assert state.stats()["refreshed"] == 0
