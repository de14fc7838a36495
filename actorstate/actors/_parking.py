"""Parking a caller until its reply is ready, at the lowest cost each backend offers.

An ask is one allocation (an :class:`Envelope`). When the actor is idle its
turn runs at once in the caller's task and the reply lands in the envelope's
slots, with no parking at all. Otherwise the caller parks: on trio with
``wait_task_rescheduled``, rescheduled directly by the turn; on asyncio on a
bare future. Both are several times cheaper than an ``anyio.Event`` per call.

A caller cancelled while parked marks its envelope cancelled: a turn that has
not started yet skips it, and a reply that arrives later is dropped.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import outcome
import sniffio
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .messages import Message

__all__ = ["Envelope", "Parking", "ToldEnvelope", "parking_for_current_backend"]


R = TypeVar("R")

# Control-flow exceptions a turn may raise that must not reach its caller as
# they are: each means something to the machinery between the turn and the
# caller (a generator's end or close, a cancellation) that is not true here.
_MISLEADING = (StopIteration, GeneratorExit, asyncio.CancelledError, trio.Cancelled)


class Envelope(Generic[R]):
    """One message in a mailbox, with the slots its reply (of type ``R``) goes to."""

    __slots__ = ("cancelled", "client_id", "done", "error", "message", "result", "waiter")

    def __init__(self, message: Message[R] | None, client_id: str | None) -> None:
        self.message = message
        self.client_id = client_id  # None: the caller acts as the owner (no ownership check)
        self.waiter: Any = None  # trio task or asyncio future, once the caller parked
        self.done = False
        self.cancelled = False
        self.result: Any = None  # an R once resolved
        self.error: BaseException | None = None

    def unwrap(self) -> R:
        """The reply of a resolved envelope: its result, or its error raised."""
        error = self.error
        if error is not None:
            self.error = None  # drop the traceback cycle
            raise error
        result: R = self.result
        return result


class ToldEnvelope(Envelope[Any]):
    """A message sent with ``tell``: nobody waits for its reply."""

    __slots__ = ()


class Parking:
    """How callers park and get woken; one implementation per backend."""

    name = ""
    # ``await parking.checkpoint()`` lets other tasks run and raises if the
    # caller was cancelled. Bound straight to the backend's own function: it
    # runs once per call, and a wrapper coroutine would cost a frame each time.
    checkpoint: Callable[[], Awaitable[None]]

    async def park(self, envelope: Envelope[R]) -> R:
        """Wait until ``envelope`` is resolved; return its result or raise its error."""
        raise NotImplementedError

    def resolve(self, envelope: Envelope[Any], value: Any) -> None:
        if envelope.done or envelope.cancelled:
            return
        envelope.done = True
        if envelope.waiter is None:
            envelope.result = value  # not parked: the caller reads the slot
        else:
            self._wake(envelope, value, None)

    def fail(self, envelope: Envelope[Any], error: BaseException) -> None:
        if envelope.done or envelope.cancelled:
            return
        if isinstance(error, _MISLEADING):
            # A future refuses StopIteration, and a coroutine turns it into
            # RuntimeError anyway. A cancellation raised by the turn's code is
            # not this caller being cancelled, but delivered as it is it would
            # look like one (an asyncio task would end quietly). In each case
            # the caller hears a plain error that names what was raised.
            replacement = RuntimeError(f"the turn raised {type(error).__name__}: {error!r}")
            replacement.__cause__ = error
            error = replacement
        envelope.done = True
        if envelope.waiter is None:
            envelope.error = error
        else:
            self._wake(envelope, None, error)

    def _wake(self, envelope: Envelope[Any], value: Any, error: BaseException | None) -> None:
        raise NotImplementedError

    def abandoned(self, envelope: Envelope[Any]) -> bool:
        """True once the caller stopped waiting (its turn must not run)."""
        return envelope.cancelled

    def threadsafe_scheduler(self) -> Callable[..., None]:
        """A function another thread may call as ``fn(callback, *args)`` to run
        ``callback(*args)`` soon in this event loop. Call it from the loop."""
        raise NotImplementedError


class _TrioParking(Parking):
    name = "trio"
    checkpoint = staticmethod(trio.lowlevel.checkpoint)

    async def park(self, envelope: Envelope[R]) -> R:
        if envelope.done:  # resolved before the caller got to park
            await trio.lowlevel.checkpoint()
            return envelope.unwrap()
        envelope.waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            envelope.cancelled = True
            return trio.lowlevel.Abort.SUCCEEDED

        result: R = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _wake(self, envelope: Envelope[Any], value: Any, error: BaseException | None) -> None:
        result = outcome.Value(value) if error is None else outcome.Error(error)
        trio.lowlevel.reschedule(envelope.waiter, result)

    def threadsafe_scheduler(self) -> Callable[..., None]:
        return trio.lowlevel.current_trio_token().run_sync_soon


class _AsyncioParking(Parking):
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


def parking_for_current_backend() -> Parking:
    library = sniffio.current_async_library()
    if library == "trio":
        return _TrioParking()
    if library == "asyncio":
        return _AsyncioParking()
    raise RuntimeError(f"actorstate runs on trio or asyncio, not {library}")
