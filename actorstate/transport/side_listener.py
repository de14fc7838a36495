"""``actorstate serve --metrics HOST:PORT``: the operations endpoints of a stdio server, on HTTP.

A stdio server has no HTTP server of its own, and this one needs no ASGI
stack: it answers ``GET`` (and ``HEAD``) of ``/healthz``, ``/readyz`` and
``/metrics`` (:mod:`.operations`), one request per connection, and closes
it. A request is read up to ``MAX_HEAD_BYTES`` of head within
``READ_TIMEOUT`` seconds; anything else gets the status that says why. No
authentication: it listens on loopback unless the operator allows another
address (``--metrics-remote on``), as ``--http`` without tokens does.
"""

from __future__ import annotations

import http
import logging
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from .addresses import is_loopback
from .operations import Answer
from .requester import Requester

if TYPE_CHECKING:
    from collections.abc import Callable

    from .operations import Operations

__all__ = ["check_side_address", "serve_side_listener"]

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
READ_TIMEOUT = 10.0


def check_side_address(host: str, *, remote: bool) -> None:
    """Refuse a non-loopback address unless ``remote`` allows it.

    Error handling:
        ValueError: naming the flag that allows it.
    """
    if not remote and not is_loopback(host):
        raise ValueError(
            f"refusing to answer /metrics on {host}: the side listener has no authentication, and its "
            "figures cover every session. Listen on 127.0.0.1, or add --metrics-remote on if this "
            "address is reachable only by your monitoring"
        )


async def serve_side_listener(
    operations: Operations,
    host: str,
    port: int,
    *,
    on_listening: Callable[[str], None] | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Answer the operations endpoints on ``host:port`` until cancelled.

    ``on_listening`` gets the listener's base URL (the port it took, for ``:0``).

    Error handling:
        ValueError: the address cannot be listened on.
    """
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port} for --metrics: {error.strerror or error}") from None
    async with listener:
        bound = listener.listeners[0].extra(SocketAttribute.local_port)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound}"
        logger.info("answering /healthz, /readyz and /metrics at %s", url)
        if on_listening is not None:
            on_listening(url)
        task_status.started()
        await listener.serve(lambda stream: _answer_one(operations, stream))


async def _answer_one(operations: Operations, stream: anyio.abc.SocketStream) -> None:
    async with stream:
        try:
            with anyio.fail_after(READ_TIMEOUT):
                head = await _read_head(stream)
        except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return
        try:
            answer, method = await _answer(operations, head)
        except Exception:
            # One request's failure is its own: raised, it would end the listener's task group
            # and the stdio server serving beside it.
            logger.exception("the side listener failed to answer a request")
            answer, method = _text(500, "internal server error"), "GET"
        status = f"HTTP/1.1 {answer.status} {http.HTTPStatus(answer.status).phrase}\r\n"
        headers = [
            ("content-type", answer.content_type),
            ("content-length", str(len(answer.body))),
            ("connection", "close"),
            *answer.headers,
        ]
        reply = (status + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n").encode(
            "latin-1"
        )
        with anyio.move_on_after(READ_TIMEOUT):
            try:
                await stream.send(reply if method == "HEAD" else reply + answer.body)
            except (anyio.BrokenResourceError, OSError):
                pass


async def _read_head(stream: anyio.abc.SocketStream) -> bytes | None:
    """The request's head (up to the blank line), or None past ``MAX_HEAD_BYTES``."""
    received = b""
    while b"\r\n\r\n" not in received:
        if len(received) > MAX_HEAD_BYTES:
            return None
        received += await stream.receive(4096)
    return received.split(b"\r\n\r\n", 1)[0]


def _text(status: int, text: str) -> Answer:
    return Answer(status, "text/plain; charset=utf-8", (text + "\n").encode())


async def _answer(operations: Operations, head: bytes | None) -> tuple[Answer, str]:
    if head is None:
        return _text(431, "request head too large"), "GET"
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _text(400, "not an HTTP/1.x request line"), "GET"
    method, target, _ = parts
    if method not in ("GET", "HEAD"):
        return Answer(
            405, "text/plain; charset=utf-8", b"only GET and HEAD\n", (("allow", "GET, HEAD"),)
        ), "GET"
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    answer = await operations.answer(target.split("?", 1)[0], Requester(), accept)
    if answer is None:
        return _text(404, "not found: this listener answers /healthz, /readyz and /metrics"), method
    return answer, method
