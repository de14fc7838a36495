"""What SIGTERM and SIGINT do to ``actorstate serve``."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import TYPE_CHECKING

import anyio
import anyio.abc

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["StopSignals"]

logger = logging.getLogger(__name__)


class StopSignals:
    """SIGTERM and SIGINT for a process serving MCP on stdio.

    The first signal stops intake: no more input is read, every request
    already read is answered (as at end of input), and serving ends; the
    caller then closes the state, which commits everything. A second signal
    stops serving at once: requests still running are answered "Connection
    closed", and the state still closes and commits what they did.

    Signals are received from :meth:`receive` until it is cancelled, so one
    that comes before serving starts stops it as soon as it does, and one
    that comes while the state closes is logged and ignored: the close is
    what commits everything (SIGKILL still stops the process).
    """

    def __init__(self) -> None:
        self._received = 0
        self._closing = False
        self._stop_intake: Callable[[], None] | None = None
        self._stop_at_once: Callable[[], None] | None = None

    async def receive(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive SIGTERM and SIGINT until cancelled (main thread only)."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            task_status.started()
            # Every signal is taken as it comes: trio redelivers, with the
            # default action, any still pending when the receiver closes.
            async for signum in received:
                self._on_signal(signal.Signals(signum).name)

    @contextlib.contextmanager
    def serving(self, stop_intake: Callable[[], None], stop_at_once: Callable[[], None]) -> Iterator[None]:
        """While the block runs, signals stop serving; once it exits, the state is closing."""
        self._stop_intake, self._stop_at_once = stop_intake, stop_at_once
        try:
            if self._received:
                stop_intake()
            if self._received > 1:
                stop_at_once()
            yield
        finally:
            self._stop_intake = self._stop_at_once = None
            self._closing = True

    def _on_signal(self, name: str) -> None:
        self._received += 1
        if self._closing:
            logger.warning("received %s while closing: the close commits everything first", name)
        elif self._received == 1:
            logger.warning("received %s: stopping intake; every request already read will be answered", name)
            if self._stop_intake is not None:
                self._stop_intake()
        else:
            logger.warning("received %s, a second stop signal: stopping at once", name)
            if self._stop_at_once is not None:
                self._stop_at_once()
