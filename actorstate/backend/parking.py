"""Parking a caller until its reply is ready, at the lowest cost each backend offers.

An ask is one allocation (an :class:`Envelope`). When the actor is idle its
turn runs at once in the caller's task and the reply lands in the envelope's
slots, with no parking at all. Otherwise the caller parks: on trio with
``wait_task_rescheduled``, rescheduled directly by the turn; on asyncio on a
bare future (see :mod:`._trio` and :mod:`._asyncio`). Both are several times
cheaper than an ``anyio.Event`` per call.

A caller cancelled while parked marks its envelope cancelled: a turn that has
not started yet skips it, and a reply that arrives later is dropped.

A caller that is no task (a transport answering a call from its reader, see
``Supervisor.try_now``) never parks: it sets the envelope's ``settled``, and
the reply is handed to that function when it comes (a write's, once its
commit is over), on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..model.messages import Message

__all__ = ["Envelope", "Parking", "ToldEnvelope"]

R = TypeVar("R")


class Envelope(Generic[R]):
    """One message in a mailbox, with the slots its reply (of type ``R``) goes to."""

    __slots__ = ("cancelled", "client_id", "done", "error", "message", "result", "settled", "waiter")

    def __init__(self, message: Message[R] | None, client_id: str | None) -> None:
        self.message = message
        self.client_id = client_id  # None: the caller acts as the owner (no ownership check)
        self.waiter: Any = None  # trio task or asyncio future, once the caller parked
        self.done = False
        self.cancelled = False
        self.result: Any = None  # an R once resolved
        self.error: BaseException | None = None
        # For a caller that never parks: called with the envelope once it is
        # resolved or failed (never once cancelled). It must not raise: it runs
        # inside whatever resolved the envelope (a turn, a commit).
        self.settled: Callable[[Envelope[R]], None] | None = None

    def hold_result(self, result: R) -> None:
        """Keep the turn's reply here until it may be released (its state committed)."""
        self.result = result

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
    # Control-flow exceptions a turn may raise that must not reach its caller
    # as they are: each means something to the machinery between the turn and
    # the caller (a generator's end or close, a cancellation) that is not true
    # here. Each backend adds its own cancellation.
    misleading: tuple[type[BaseException], ...] = (StopIteration, GeneratorExit, asyncio.CancelledError)
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
            if envelope.settled is not None:
                envelope.settled(envelope)
        else:
            self._wake(envelope, value, None)

    def fail(self, envelope: Envelope[Any], error: BaseException) -> None:
        if envelope.done or envelope.cancelled:
            return
        if isinstance(error, self.misleading):
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
            if envelope.settled is not None:
                envelope.settled(envelope)
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
