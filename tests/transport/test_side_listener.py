"""The stdio server's side listener (``--metrics``) in process: a request whose answer fails is
answered 500 and the listener goes on serving (it runs in the task group of the stdio server)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actorstate.transport.operations import Answer
from actorstate.transport.side_listener import serve_side_listener

pytestmark = pytest.mark.anyio
# A guard against hanging, never a timing assertion.
HANG_GUARD_SECONDS = 10


class _FailingOnce:
    """Operations whose first answer raises, as a broken metrics collector would."""

    def __init__(self) -> None:
        self.asked = 0

    async def answer(self, path: str, requester: Any, accept: str = "") -> Answer:
        self.asked += 1
        if self.asked == 1:
            raise RuntimeError("a collector failed")
        return Answer(200, "text/plain; charset=utf-8", b"ok\n")


async def _get(port: int, path: str) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        try:
            while True:
                received += await stream.receive()
        except anyio.EndOfStream:
            return received


async def test_a_request_whose_answer_fails_gets_500_and_the_listener_serves_on() -> None:
    """The first /healthz raises inside the operations: it is answered 500 and the listener is
    still there to answer the next one 200."""
    urls: list[str] = []
    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as group:
            await group.start(
                lambda task_status: serve_side_listener(
                    _FailingOnce(),  # type: ignore[arg-type]
                    "127.0.0.1",
                    0,
                    on_listening=urls.append,
                    task_status=task_status,
                )
            )
            port = int(urls[0].rsplit(":", 1)[1])
            assert (await _get(port, "/healthz")).startswith(b"HTTP/1.1 500 ")
            assert (await _get(port, "/healthz")).startswith(b"HTTP/1.1 200 ")
            group.cancel_scope.cancel()
