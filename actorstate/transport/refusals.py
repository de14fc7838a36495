"""Refusing an HTTP request before it reaches the MCP app: a JSON-RPC error body with ``Retry-After``.

A refusal is a JSON-RPC error body, so an MCP client shows its text. The
request's body is read (and dropped) first, up to :data:`DRAIN_LIMIT`
bytes, so that the connection can carry the next request; past it, the
reply asks for the connection to close.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import Receive, Send

__all__ = ["DRAIN_LIMIT", "REFUSED", "refuse_request", "send_refusal"]

# JSON-RPC's "server error" range: the request was not taken, try later.
REFUSED = -32000
DRAIN_LIMIT = 1 << 20


async def refuse_request(
    receive: Receive, send: Send, status: int, message: str, *, retry_after: float = 1.0
) -> None:
    """Drain the request's body (up to :data:`DRAIN_LIMIT`), then answer ``status`` with ``message``."""
    drained, more = 0, True
    while more and drained <= DRAIN_LIMIT:
        event = await receive()
        if event["type"] != "http.request":
            break
        drained += len(event.get("body", b""))
        more = event.get("more_body", False)
    await send_refusal(send, status, message, retry_after=retry_after, close=more)


async def send_refusal(
    send: Send, status: int, message: str, *, retry_after: float = 1.0, close: bool = False
) -> None:
    """Answer ``status`` with ``message`` as a JSON-RPC error; ``Retry-After`` in whole seconds (at least 1)."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": REFUSED, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(max(1, math.ceil(retry_after))).encode()),
                *([(b"connection", b"close")] if close else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
