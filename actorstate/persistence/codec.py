"""Session snapshots as bytes: one format version byte, then msgpack.

The version byte lets a later release read what an earlier one wrote (and
refuse, clearly, what it cannot read) without guessing from the payload.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..session_state import SessionState
from ..values import encoded_size

__all__ = ["FORMAT_VERSION", "SnapshotDecodeError", "decode_session", "encode_session"]

FORMAT_VERSION = 1

_packb = msgpack.Packer(use_bin_type=True).pack


class SnapshotDecodeError(ValueError):
    """A stored snapshot could not be decoded; the session must not start empty."""


def encode_session(state: SessionState) -> bytes:
    body: bytes = _packb(
        [
            state.id,
            state.client_id,
            state.created_at,
            state.last_activity,
            state.total_events,
            state.metadata,
            state.events,
        ]
    )
    return bytes((FORMAT_VERSION,)) + body


def _expect(value: Any, kind: type, what: str) -> None:
    if type(value) is not kind:
        raise TypeError(f"{what} is a {type(value).__name__}, not a {kind.__name__}")


def decode_session(blob: bytes) -> SessionState:
    """Rebuild a session; raise :class:`SnapshotDecodeError` saying what is wrong."""
    if not blob:
        raise SnapshotDecodeError("the snapshot is empty")
    if blob[0] != FORMAT_VERSION:
        raise SnapshotDecodeError(
            f"snapshot format {blob[0]} is not one this version reads (it reads format {FORMAT_VERSION})"
        )
    try:
        fields: Any = msgpack.unpackb(blob[1:], raw=False)
        session_id, client_id, created_at, last_activity, total, metadata, events = fields
        _expect(session_id, str, "id")
        _expect(client_id, str, "client id")
        _expect(created_at, float, "created_at")
        _expect(last_activity, float, "last_activity")
        _expect(total, int, "totalEvents")
        _expect(metadata, dict, "metadata")
        _expect(events, list, "events")
        state = SessionState(session_id, client_id, created_at)
        state.last_activity = last_activity
        state.total_events = total
        state.metadata = metadata
        state.events = []
        for kind, payload, at in events:
            _expect(kind, str, "event type")
            _expect(payload, dict, "event payload")
            _expect(at, float, "event time")
            state.events.append((kind, payload, at))
    except Exception as error:
        raise SnapshotDecodeError(f"the snapshot does not decode: {error}") from error
    state.metadata_bytes = encoded_size(metadata)
    state.events_bytes = encoded_size(state.events)
    return state
