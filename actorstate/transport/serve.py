"""``actorstate serve``'s MCP on stdio: the transport, the fast paths, and the SDK's server when needed.

The fast paths answer the handshake, ``tools/list``, ``ping`` and the tool
calls; the SDK's server (:mod:`.server`) answers everything else, and is
imported and started only when the first message it must answer arrives
(at once with ``fast_path=False``). A client that only shakes hands, lists
and calls tools never has the SDK imported: it is most of a cold start.
"""

from __future__ import annotations

import contextlib
import gc
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .fast_path import ToolCallFastPath
from .handshake import HandshakeFastPath
from .limits import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_LINE_BYTES, DEFAULT_STOP_GRACE
from .stdio import stdio_transport
from .tools import ToolContext

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcp.server.lowlevel import Server

    from ..state import State
    from .signals import StopSignals

__all__ = ["serve_stdio"]


async def serve_stdio(
    state: State,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    stop_grace: float = DEFAULT_STOP_GRACE,
    signals: StopSignals | None = None,
    fast_path: bool = True,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    context: ToolContext | None = None,
) -> None:
    """Serve MCP on stdin/stdout until end of input, a stop signal, or cancellation.

    Args:
        max_line_bytes, max_in_flight, stop_grace: see :func:`.stdio.stdio_transport`.
        fast_path: answer the handshake, ``tools/list``, ``ping`` and
            ``tools/call`` on the fast paths (see :mod:`.handshake` and
            :mod:`.fast_path`); False sends every message through the SDK.
        signals: what SIGTERM and SIGINT do while this serves (see
            :class:`.signals.StopSignals`); without it they are left alone.
        stdin_fd, stdout_fd: the wire (tests serve files of their own).
        context: the tools' context, when something else reads its figures
            too (``--metrics``); one of its own when None.
    """
    context = context or ToolContext(state)
    tool_calls = ToolCallFastPath(context) if fast_path else None
    handshake = HandshakeFastPath(context.tools, lambda: tool_calls.protocol_version) if tool_calls else None
    async with stdio_transport(
        stdin_fd,
        stdout_fd,
        max_line_bytes=max_line_bytes,
        max_in_flight=max_in_flight,
        stop_grace=stop_grace,
        fast_path=tool_calls,
        handshake=handshake,
    ) as wire:
        with anyio.CancelScope() as serving:
            with signals.serving(wire.stop_intake, serving.cancel) if signals else contextlib.nullcontext():
                streams = await wire.wait_for_sdk()
                if streams is None:
                    return  # intake ended, everything answered on the fast paths
                build_server = await anyio.to_thread.run_sync(_import_build_server)
                server = build_server(state, context)
                # What the SDK's import made (its models and schemas: hundreds of
                # thousands of objects) lives as long as the process: frozen, as
                # the command line freezes what was there before serving, the
                # cyclic collector stops walking it on every full collection.
                gc.freeze()
                await server.run(
                    streams.read_stream, streams.write_stream, server.create_initialization_options()
                )


def _import_build_server() -> Callable[[State, ToolContext], Server[Any]]:
    from .server import build_server

    return build_server
