"""Replies leave while the reader still has lines to serve.

Calls the fast path answers from the reader need no other task, so the
writer runs only when the reader pauses. With many calls read at once, the
reader pauses every few lines (``stdio._LINES_PER_TURN``) so the replies
already answered go out meanwhile, and a client with many calls in flight is
not left idle until every line read is served.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any

import anyio
import pytest

from actorstate import open_state
from actorstate.transport import stdio
from actorstate.transport.serve import serve_stdio
from actorstate.transport.tools import ToolContext

from .raw_client import INITIALIZE_PARAMS

CALLS = 4 * stdio._LINES_PER_TURN


def _line(request_id: int | None, method: str, params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_replies_are_written_while_the_reader_still_has_lines(backend: str) -> None:
    """Every call read in one chunk is served, and while the last ones are, the replies to the
    first ones are already on the wire (a bare reader would have written none yet)."""
    written_when_served: list[int] = []  # replies readable when each call is served
    replies = bytearray()
    out_read, out_write = os.pipe()
    os.set_blocking(out_read, False)

    def drain() -> None:
        while True:
            try:
                chunk = os.read(out_read, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            replies.extend(chunk)

    def served(session_id: str) -> None:  # told of each write call, inside the reader
        drain()
        written_when_served.append(replies.count(b'"Counter: '))

    async def main() -> None:
        async with open_state(None, durability="memory") as state:
            session = await state.create_session()
            context = ToolContext(state)
            context.add_change_listener(served)
            lines = [
                _line(0, "initialize", INITIALIZE_PARAMS),
                _line(None, "notifications/initialized"),
                *(
                    _line(
                        number,
                        "tools/call",
                        {"name": "increment_counter", "arguments": {"sessionId": session.id}},
                    )
                    for number in range(1, CALLS + 1)
                ),
            ]
            with tempfile.TemporaryFile() as stdin:  # a file: read whole, in one chunk
                stdin.write(b"".join(lines))
                stdin.seek(0)
                await serve_stdio(state, stdin_fd=stdin.fileno(), stdout_fd=out_write, context=context)

    try:
        anyio.run(main, backend=backend)
        drain()
    finally:
        os.close(out_read)
        with contextlib.suppress(OSError):  # the server may have closed it
            os.close(out_write)
    assert replies.count(b'"Counter: ') == CALLS
    assert len(written_when_served) == CALLS
    # The reader paused at least every _LINES_PER_TURN lines: by the last call, all but the
    # last turn's replies were out.
    assert written_when_served[-1] >= CALLS - 2 * stdio._LINES_PER_TURN
    assert written_when_served == sorted(written_when_served)
