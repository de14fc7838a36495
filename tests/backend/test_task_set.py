"""Task sets: each task's handle cancels that task alone, and the set waits for the rest."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from actorstate.backend import open_task_set

pytestmark = pytest.mark.anyio


async def test_a_handle_cancels_its_own_task_and_no_other() -> None:
    """The cancelled task stops at its checkpoint and ends quietly; its sibling runs on to the end."""
    started = anyio.Event()
    release = anyio.Event()
    finished: list[str] = []
    stopped: list[str] = []

    async def wait(name: str) -> None:
        try:
            started.set()
            await release.wait()
            finished.append(name)
        except anyio.get_cancelled_exc_class():
            stopped.append(name)
            raise

    async with open_task_set() as tasks:
        doomed = tasks.start(wait, "doomed")
        tasks.start(wait, "kept")
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        doomed.cancel()
        await anyio.wait_all_tasks_blocked()
        assert stopped == ["doomed"]
        release.set()
    assert finished == ["kept"]


async def test_a_task_cancelled_before_it_starts_gets_no_further_than_its_first_checkpoint() -> None:
    """Cancelling at once, before the task first runs, stops it at its first checkpoint at the latest."""
    ran: list[str] = []

    async def record() -> None:
        ran.append("before")
        await anyio.lowlevel.checkpoint()
        ran.append("after")

    async with open_task_set() as tasks:
        tasks.start(record).cancel()
    assert "after" not in ran
