"""Task sets: many short tasks, each started cheaply, all awaited at the end.

anyio's task group on asyncio costs a task handle, a cancel scope and
several look-ups per task started: about a fifth of a fast-path call's CPU
when every request gets a task. On asyncio a :class:`TaskSet` starts native
tasks instead; on trio a nursery is already that cheap, so anyio's task group
(a thin wrapper over it) is used. Either way the block waits for every task
started, and a task's own cancel scopes work as anywhere else. Tasks must
handle their own exceptions: one that escapes is logged, not raised.

Each start gives a handle that cancels that task alone, without a cancel
scope entered per task on asyncio (entering and leaving one costs more than
the rest of a short task's bookkeeping): there the handle cancels the native
task. A cancelled task is stopped at its next checkpoint and ends quietly.
On asyncio that cancellation is not anyio's, so a shielded scope inside the
task does not hold it off: work a cancelled caller must not cut short runs
in a task of its own, through :func:`run_detached`.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import sniffio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

T = TypeVar("T")

__all__ = ["Cancellable", "TaskSet", "open_task_set", "run_detached"]

logger = logging.getLogger("actorstate.tasks")


class Cancellable(Protocol):
    def cancel(self) -> object:
        """Stop the task at its next checkpoint; one not started yet goes no further than its first.

        What it returns means nothing (asyncio's ``Task.cancel`` returns a flag).
        """


class TaskSet(Protocol):
    def start(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> Cancellable:
        """Run ``fn(*args)`` in a task of its own, starting soon; the handle cancels it."""


@asynccontextmanager
async def open_task_set() -> AsyncIterator[TaskSet]:
    """A task set for the block; on exit, wait for every task started in it."""
    if sniffio.current_async_library() == "asyncio":
        from ._asyncio import AsyncioTaskSet

        task_set = AsyncioTaskSet()
        try:
            yield task_set
        finally:
            # Shielded: the tasks are running either way, and leaving them
            # unawaited would orphan them.
            with anyio.CancelScope(shield=True):
                await task_set.wait_all()
        return
    async with anyio.create_task_group() as task_group:
        yield _GroupTaskSet(task_group)


class _GroupTaskSet:
    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group

    def start(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> Cancellable:
        # A cancel scope is cheap on trio; cancelling one not entered yet
        # cancels the task as it starts.
        scope = anyio.CancelScope()
        self._task_group.start_soon(_logged, scope, fn, *args)
        return scope


async def _logged(scope: anyio.CancelScope, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
    try:
        with scope:
            await fn(*args)
    except Exception:
        logger.exception("a task of a task set raised")


async def run_detached(spawn: Callable[..., None], fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` in a task ``spawn`` starts, and return its result (or raise its exception).

    A cancelled caller stops waiting, but the work runs to its end: for work
    that must not be cut in half by whoever asked for it (a shielded scope
    does that only for anyio's own cancellation).
    """
    done = anyio.Event()
    results: list[T] = []
    errors: list[Exception] = []

    async def work() -> None:
        try:
            results.append(await fn(*args))
        except Exception as error:
            errors.append(error)
        finally:
            done.set()

    spawn(work)
    await done.wait()
    if errors:
        raise errors[0]
    if not results:
        raise RuntimeError("the detached task was cancelled before it finished")
    return results[0]
