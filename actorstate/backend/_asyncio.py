"""Parking on asyncio: a parked caller waits on a bare future."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .parking import Envelope, Parking

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["AsyncioParking", "AsyncioTaskSet"]

logger = logging.getLogger("actorstate.tasks")

R = TypeVar("R")


class AsyncioParking(Parking):
    name = "asyncio"
    checkpoint = staticmethod(functools.partial(asyncio.sleep, 0))

    def abandoned(self, envelope: Envelope[Any]) -> bool:
        # Cancelling a task cancels the future it awaits at once, before the
        # task itself runs again to mark its envelope: look at both.
        waiter = envelope.waiter
        return envelope.cancelled or (waiter is not None and waiter.cancelled())

    async def park(self, envelope: Envelope[R]) -> R:
        if envelope.done:
            await asyncio.sleep(0)
            return envelope.unwrap()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        envelope.waiter = future
        try:
            return await future
        except asyncio.CancelledError:
            envelope.cancelled = True
            raise

    def _wake(self, envelope: Envelope[Any], value: Any, error: BaseException | None) -> None:
        future: asyncio.Future[Any] = envelope.waiter
        if future.done():
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    def threadsafe_scheduler(self) -> Callable[..., None]:
        loop = asyncio.get_running_loop()

        def call_soon(callback: Callable[..., None], *args: Any) -> None:
            loop.call_soon_threadsafe(callback, *args)

        return call_soon


class AsyncioTaskSet:
    """Native asyncio tasks, tracked until they end (see :mod:`.tasks`)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running: set[asyncio.Task[None]] = set()
        self._all_done: anyio.Event | None = None

    def start(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> asyncio.Task[None]:
        task = self._loop.create_task(fn(*args))
        self._running.add(task)  # also keeps the task alive: the loop holds tasks weakly
        task.add_done_callback(self._ended)
        return task  # its cancel() is the handle's

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a task of a task set raised", exc_info=task.exception())
        if not self._running and self._all_done is not None:
            self._all_done.set()

    async def wait_all(self) -> None:
        while self._running:
            self._all_done = anyio.Event()
            await self._all_done.wait()
