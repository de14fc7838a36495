"""Parking a caller until its reply is ready, at the lowest cost each backend offers.

An ask is one allocation (an :class:`Envelope`) and one park: the caller puts
the envelope in a mailbox and parks; the actor's turn resolves it. On trio the
caller parks with ``wait_task_rescheduled`` and the turn reschedules it
directly; on asyncio it awaits a bare future. Both are several times cheaper
than an ``anyio.Event`` per call, and the hot path runs them once per ask.

A caller cancelled while parked marks its envelope cancelled: a turn that has
not started yet skips it, and a reply that arrives later is dropped.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import outcome
import sniffio
import trio

if TYPE_CHECKING:
    from .messages import Message

__all__ = ["Envelope", "Parking", "parking_for_current_backend"]


class Envelope:
    """One message in a mailbox, with the slot its reply goes to."""

    __slots__ = ("message", "client_id", "waiter", "done", "cancelled")

    def __init__(self, message: Message | None, client_id: str | None) -> None:
        self.message = message
        self.client_id = client_id  # None: a tell from inside (no ownership check)
        self.waiter: Any = None  # trio task or asyncio future, set when parked
        self.done = False
        self.cancelled = False


class Parking:
    """How callers park and get woken; one implementation per backend."""

    name = ""

    async def park(self, envelope: Envelope) -> Any:
        raise NotImplementedError

    def resolve(self, envelope: Envelope, value: Any) -> None:
        raise NotImplementedError

    def fail(self, envelope: Envelope, error: BaseException) -> None:
        raise NotImplementedError


class _TrioParking(Parking):
    name = "trio"

    async def park(self, envelope: Envelope) -> Any:
        if envelope.done:  # resolved before the caller got to park
            await trio.lowlevel.checkpoint()
            return envelope.waiter.unwrap()
        envelope.waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            envelope.cancelled = True
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def resolve(self, envelope: Envelope, value: Any) -> None:
        self._wake(envelope, outcome.Value(value))

    def fail(self, envelope: Envelope, error: BaseException) -> None:
        self._wake(envelope, outcome.Error(error))

    @staticmethod
    def _wake(envelope: Envelope, result: outcome.Outcome[Any]) -> None:
        if envelope.done or envelope.cancelled:
            return
        envelope.done = True
        task = envelope.waiter
        if task is None:
            envelope.waiter = result
        else:
            trio.lowlevel.reschedule(task, result)


class _AsyncioParking(Parking):
    name = "asyncio"

    async def park(self, envelope: Envelope) -> Any:
        future = envelope.waiter
        if future is None:
            future = envelope.waiter = asyncio.get_running_loop().create_future()
        try:
            return await future
        except asyncio.CancelledError:
            envelope.cancelled = True
            raise

    def resolve(self, envelope: Envelope, value: Any) -> None:
        future = self._future(envelope)
        if future is not None:
            future.set_result(value)

    def fail(self, envelope: Envelope, error: BaseException) -> None:
        future = self._future(envelope)
        if future is not None:
            future.set_exception(error)

    @staticmethod
    def _future(envelope: Envelope) -> asyncio.Future[Any] | None:
        if envelope.done or envelope.cancelled:
            return None
        envelope.done = True
        future: asyncio.Future[Any] | None = envelope.waiter
        if future is None:
            future = envelope.waiter = asyncio.get_running_loop().create_future()
        return None if future.done() else future


def parking_for_current_backend() -> Parking:
    library = sniffio.current_async_library()
    if library == "trio":
        return _TrioParking()
    if library == "asyncio":
        return _AsyncioParking()
    raise RuntimeError(f"actorstate runs on trio or asyncio, not {library}")
