"""Bad input for the wire: malformed, oversized and deeply nested messages.

Each :class:`BadMessage` is one line as a careless or hostile client might
write it, and says whether the server can answer it by id: a line that
parses far enough to show its id must get an error reply under that id
(never a result, never silence); one that cannot (not JSON, not valid UTF-8,
too deep to parse, too long to read) gets an error without an id, or none,
and the server must simply keep serving.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from ..transport.limits import DEFAULT_MAX_LINE_BYTES

if TYPE_CHECKING:
    import random

__all__ = ["BadMessage", "bad_message"]

# Deeper than any JSON parser on the path accepts (orjson stops at 1,024 levels).
NESTING = 100_000


@dataclasses.dataclass(frozen=True, slots=True)
class BadMessage:
    """One bad line; ``request_id`` is set when the server can tell which request it was."""

    kind: str
    line: bytes
    request_id: str | None = None


def _line(message: object) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _request(request_id: str, method: str, params: object) -> bytes:
    return _line({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def _call(request_id: str, tool: object, arguments: object) -> bytes:
    return _request(request_id, "tools/call", {"name": tool, "arguments": arguments})


def bad_message(rng: random.Random, request_id: str, session_id: str | None) -> BadMessage:
    """A bad message drawn by ``rng``; those the server can answer carry ``request_id``.

    ``session_id`` (a live session) makes the bad arguments bad for their
    values, not because the session is unknown. The oversized line is drawn
    rarely: it is megabytes on a shared pipe.
    """
    session = session_id or "no-such-session"
    answerable = [
        ("params-not-object", _request(request_id, "tools/call", "nope")),
        ("unknown-method", _request(request_id, "tools/frobnicate", {})),
        ("unknown-tool", _call(request_id, "drop_all_tables", {"sessionId": session})),
        ("tool-name-not-string", _call(request_id, 42, {})),
        ("arguments-not-object", _call(request_id, "get_context", ["sessionId", session])),
        ("wrong-type", _call(request_id, "increment_counter", {"sessionId": session, "by": "many"})),
        ("missing-argument", _call(request_id, "add_context", {"sessionId": session, "key": "k"})),
        ("extra-argument", _call(request_id, "get_context", {"sessionId": session, "sudo": True})),
        ("huge-number", _call(request_id, "increment_counter", {"sessionId": session, "by": 10**400})),
        ("bool-as-integer", _call(request_id, "get_context", {"sessionId": session, "maxTurns": True})),
        (
            "nested-argument",
            _call(request_id, "set_preference", {"sessionId": session, "key": "k", "value": _deep(200)}),
        ),
    ]
    unanswerable = [
        ("not-json", b"this is not JSON at all\n"),
        ("truncated-json", _request(request_id, "ping", {})[:20] + b"\n"),
        ("not-an-object", b"[1, 2, 3]\n"),
        ("invalid-utf8", b'{"jsonrpc":"2.0","id":"x\xff\xfe","method":"ping"}\n'),
        ("id-is-object", _line({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"})),
        (
            "too-deep",
            b'{"jsonrpc":"2.0","id":"deep","method":"ping","params":'
            + b"[" * NESTING
            + b"]" * NESTING
            + b"}\n",
        ),
        ("empty-line", b"\n"),
    ]
    if rng.random() < 0.02:
        filler = b"x" * (DEFAULT_MAX_LINE_BYTES + 1024)
        return BadMessage(
            "oversized", b'{"jsonrpc":"2.0","id":"big","method":"ping","params":{"x":"' + filler + b'"}}\n'
        )
    if rng.random() < 0.6:
        kind, line = rng.choice(answerable)
        return BadMessage(kind, line, request_id)
    kind, line = rng.choice(unanswerable)
    return BadMessage(kind, line)


def _deep(levels: int) -> object:
    value: object = "bottom"
    for _ in range(levels):
        value = [value]
    return value
