"""The bad input the chaos runner sends: each line is bad in the way it is named, and a line
that is meant to be answered by id carries that id."""

from __future__ import annotations

import json
import random

from actorstate.chaos.bad_input import bad_message
from actorstate.transport.limits import DEFAULT_MAX_LINE_BYTES


def test_answerable_lines_carry_their_id_and_the_rest_cannot_be_answered_by_id() -> None:
    """Lines with a request id parse as JSON-RPC requests with that id; lines without one are not
    JSON objects with a usable id, or are too long or too deep for the server to read."""
    rng = random.Random(7)
    kinds = set()
    for number in range(2000):
        bad = bad_message(rng, f"bad-{number}", "0b9a8c3e-1b7e-4a59-9d0e-6f3c1e2a4b5c")
        kinds.add(bad.kind)
        assert bad.line.endswith(b"\n")
        assert b"\n" not in bad.line[:-1]
        if bad.request_id is not None:
            message = json.loads(bad.line)
            assert message["id"] == bad.request_id
            assert message["jsonrpc"] == "2.0"
            continue
        if bad.kind == "oversized":
            assert len(bad.line) > DEFAULT_MAX_LINE_BYTES
            continue
        try:
            message = json.loads(bad.line)
        except (ValueError, RecursionError):
            continue
        assert not isinstance(message, dict) or not isinstance(message.get("id"), int | str), bad.kind
    assert {"not-json", "too-deep", "unknown-tool", "wrong-type", "oversized"} <= kinds
