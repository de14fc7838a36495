"""Parking on asyncio: a parked caller waits on a bare future."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, TypeVar

from .parking import Envelope, Parking

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AsyncioParking"]

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
