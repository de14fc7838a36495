"""The error replies the stdio transport writes itself, and the JSON-RPC codes they carry.

Free of the MCP SDK: the transport refuses a duplicate id or an overlong
line before (or without) the SDK being loaded. The codes are JSON-RPC's, the
same as the SDK's ``mcp.types`` constants.
"""

from __future__ import annotations

import json

from .quoting import clipped_repr

__all__ = ["INVALID_PARAMS", "INVALID_REQUEST", "PARSE_ERROR", "duplicate_id", "error_line", "too_long"]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602


def error_line(code: int, message: str, request_id: object = None) -> bytes:
    """A JSON-RPC error reply line; ``request_id`` is left out (null) unless it is an integer or a string."""
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    return (
        json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}},
            separators=(",", ":"),
        ).encode()
        + b"\n"
    )


def duplicate_id(request_id: int | str) -> bytes:
    """The refusal of a request whose id is already in flight."""
    return error_line(
        INVALID_REQUEST,
        f"Invalid Request: request id {clipped_repr(request_id)} is already in flight; "
        "wait for its reply or use another id",
        request_id,
    )


def too_long(size: int, limit: int, *, whole: bool) -> bytes:
    """The refusal of a line over the limit (dropped, so its id is unknown); ``whole``: ``size``
    is the line's, else only what had come of it."""
    length = f"{size} bytes" if whole else f"at least {size} bytes"
    return error_line(
        INVALID_REQUEST,
        f"Invalid Request: a line of {length} is over the {limit}-byte limit and was dropped",
    )
