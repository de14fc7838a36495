"""A TCP proxy in front of PostgreSQL that can cut one node off from it: the ``partition`` fault.

The cluster runner (:mod:`.cluster`) gives each node a :class:`StallingProxy`
of its own and starts the node with ``--db`` pointing at it. The proxy
forwards bytes both ways between the node's connections and PostgreSQL's
port. :meth:`StallingProxy.stall` holds every byte in both directions
while the connections stay open (as a network that drops packets and
retransmits later: neither end sees an error, both just wait);
:meth:`StallingProxy.release` sends what was held on, in order.

So a statement the node sent during the stall reaches PostgreSQL only
after the release: if another node claimed the session meanwhile (the
stalled node could not renew its lease), the write matches no row of its
epoch and the database answers FENCED.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
import anyio.abc

if TYPE_CHECKING:
    from anyio.abc import ByteStream, SocketStream

__all__ = ["StallingProxy"]

# Bytes read at once from either side.
_CHUNK = 65536


class StallingProxy:
    """Forwards connections on a loopback port of its own to ``host``:``port``; run :meth:`serve`
    in a task group (``await task_group.start(proxy.serve)``), which sets :attr:`port`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.upstream_port = port
        self.port = 0
        # Set while stalled: every chunk waits for it before it is sent on.
        self._gate: anyio.Event | None = None
        # How many chunks the current stall holds (or held, until the next stall).
        self.held = 0
        self._first_held: anyio.Event = anyio.Event()

    @property
    def stalled(self) -> bool:
        return self._gate is not None

    def stall(self) -> None:
        """Hold every byte from now on, both ways, until :meth:`release`."""
        if self._gate is None:
            self._gate = anyio.Event()
            self.held = 0
            self._first_held = anyio.Event()

    def release(self) -> None:
        """Send what the stall held on, and forward freely again."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def wait_held(self) -> None:
        """Wait until the current stall holds some bytes (a statement, or its answer, caught)."""
        await self._first_held.wait()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept and forward connections until cancelled."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self._forward)

    async def _forward(self, client: SocketStream) -> None:
        async with client:
            try:
                server = await anyio.connect_tcp(self.host, self.upstream_port)
            except OSError:
                return  # PostgreSQL is down: the node sees its connection close, as it would
            async with server, anyio.create_task_group() as pumps:
                pumps.start_soon(self._pump, client, server, pumps.cancel_scope)
                pumps.start_soon(self._pump, server, client, pumps.cancel_scope)

    async def _pump(self, source: ByteStream, sink: ByteStream, both: anyio.CancelScope) -> None:
        """Copy ``source`` to ``sink`` chunk by chunk, each waiting out a stall; when either side
        ends, both directions end (the other end sees its connection close)."""
        with contextlib.suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
        ):
            while True:
                chunk = await source.receive(_CHUNK)
                gate = self._gate
                if gate is not None:
                    self.held += 1
                    self._first_held.set()
                    await gate.wait()
                await sink.send(chunk)
        both.cancel()
