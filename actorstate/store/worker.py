"""One dedicated thread that owns the SQLite connection.

sqlite3 blocks, so every database call runs on this thread; the event loop
only waits for the answer. A call is a job on a queue; the thread runs jobs in
order and hands each result back to the loop with the backend's thread-safe
callback (``call_soon_threadsafe`` on asyncio, the trio token on trio), which
resolves the waiting caller's envelope. One thread means one connection and a
strict order of transactions, with no locking around the connection.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ..backend import Envelope, Parking
from ..errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DatabaseThread"]

T = TypeVar("T")
_STOP = object()


class DatabaseThread:
    """Runs functions on one worker thread; ``await run(fn, *args)`` from the loop."""

    def __init__(self, parking: Parking, name: str) -> None:
        self._parking = parking
        self._call_in_loop = parking.threadsafe_scheduler()
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._stopped = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread; return its result or raise its error.

        A cancelled caller stops waiting, but a job that started runs to its end
        (a transaction is never cut in half).
        """
        if self._stopped:
            raise StoreError("the database is closed")
        envelope: Envelope[T] = Envelope(None, None)
        self._jobs.put((fn, args, envelope))
        result = await self._parking.park(envelope)
        return result

    async def stop(self) -> None:
        """Finish queued jobs, then end the thread."""
        if self._stopped:
            return
        self._stopped = True
        self._jobs.put(_STOP)
        await anyio.to_thread.run_sync(self._thread.join)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, args, envelope = job
            try:
                result = fn(*args)
            except BaseException as error:  # handed to the caller, never lost in the thread
                self._deliver(self._parking.fail, envelope, error)
            else:
                self._deliver(self._parking.resolve, envelope, result)

    def _deliver(
        self, how: Callable[[Envelope[Any], Any], None], envelope: Envelope[Any], value: Any
    ) -> None:
        try:
            self._call_in_loop(how, envelope, value)
        except RuntimeError:
            pass  # the event loop is gone: nobody is waiting any more
