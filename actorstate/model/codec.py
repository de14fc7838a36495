"""Session snapshots as bytes: one format version byte, then msgpack.

The version byte lets a later release read what an earlier one wrote (and
refuse, clearly, what it cannot read) without guessing from the payload.

A decoded session holds only JSON-like values (see :mod:`actorstate.model.values`)
and times a date can be made of: a snapshot holding anything else (msgpack
``bin`` or ``ext`` values, NaN or infinity) would decode and then fail every
reply that renders it, so it is refused here and its session quarantined.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .session_state import SessionState
from .values import check_json_like, is_json_like

__all__ = ["FORMAT_VERSION", "SnapshotDecodeError", "decode_session", "encode_session"]

# Format 1: seven fields. Format 2: an eighth, the remembered keyed writes
# (idempotency keys), written only by sessions that have some, so a session
# that never used a key stays readable by releases that read only format 1.
FORMAT_VERSION = 2
_FIELDS = {1: 7, 2: 8}

_packer = msgpack.Packer(use_bin_type=True)
_packb = _packer.pack
_array_header = _packer.pack_array_header
_HEADS = {version: bytes((version,)) + _array_header(count) for version, count in _FIELDS.items()}


class SnapshotDecodeError(ValueError):
    """A stored snapshot could not be decoded; the session must not start empty."""


def encode_session(state: SessionState) -> bytes:
    """The snapshot: the fields as one msgpack array, the events joined already encoded."""
    events = state.encoded_events
    requests = state.requests
    tail = (_packb([[key, *seen] for key, seen in requests.items()]),) if requests else ()
    return b"".join(
        (
            _HEADS[2 if requests else 1],
            _packb(state.id),
            _packb(state.client_id),
            _packb(state.created_at),
            _packb(state.last_activity),
            _packb(state.total_events),
            _packb(state.metadata),
            _array_header(len(events)),
            *events,
            *tail,
        )
    )


def _expect(value: Any, kind: type, what: str) -> None:
    if type(value) is not kind:
        raise TypeError(f"{what} is a {type(value).__name__}, not a {kind.__name__}")


# Times iso_time can render: from year 1 to year 9999. The comparison also
# refuses NaN, which compares false with everything.
_EARLIEST = -62135596800.0
_LATEST = 253402300799.0


def _expect_time(value: Any, what: str) -> None:
    _expect(value, float, what)
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError(f"{what} {value} is not a time that can be rendered")


def _json_like(value: Any, what: str) -> None:
    if not is_json_like(value):
        check_json_like(value, what)  # raises, saying what is wrong
        raise ValueError(f"{what} is not JSON-like")


def _is_array(first_byte: int) -> bool:
    return 0x90 <= first_byte <= 0x9F or first_byte in (0xDC, 0xDD)


def _read(body: bytes, field_count: int) -> tuple[list[Any], list[bytes], int, int]:
    """The seven fields, each event's own bytes, and the encoded bytes of the metadata and of the events.

    The sizes and the events' bytes are read from the offsets, so nothing is
    encoded again: that saves about as much time as checking every value costs.
    """
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(body))
    unpacker.feed(body)
    encoded_events: list[bytes] = []
    try:
        count = unpacker.read_array_header()
        if count != field_count:
            raise ValueError(f"it holds {count} fields, not {field_count}")
        fields = [unpacker.unpack() for _ in range(5)]
        metadata_start = unpacker.tell()
        fields.append(unpacker.unpack())
        events_start = unpacker.tell()
        if events_start < len(body) and _is_array(body[events_start]):
            events = []
            for _ in range(unpacker.read_array_header()):
                event_start = unpacker.tell()
                events.append(unpacker.unpack())
                encoded_events.append(body[event_start : unpacker.tell()])
            fields.append(events)
        else:  # decoded whole, to say what it is instead
            fields.append(unpacker.unpack())
        events_end = unpacker.tell()
        fields.extend(unpacker.unpack() for _ in range(field_count - 7))
    except msgpack.OutOfData:
        raise ValueError("it is cut short") from None
    end = unpacker.tell()
    if end != len(body):
        raise ValueError(f"{len(body) - end} bytes follow it")
    return fields, encoded_events, events_start - metadata_start, events_end - events_start


def decode_session(blob: bytes) -> SessionState:
    """Rebuild a session; raise :class:`SnapshotDecodeError` saying what is wrong."""
    if not blob:
        raise SnapshotDecodeError("the snapshot is empty")
    field_count = _FIELDS.get(blob[0])
    if field_count is None:
        raise SnapshotDecodeError(
            f"snapshot format {blob[0]} is not one this version reads "
            f"(it reads formats {', '.join(map(str, _FIELDS))})"
        )
    try:
        fields, encoded_events, metadata_bytes, events_bytes = _read(blob[1:], field_count)
        session_id, client_id, created_at, last_activity, total, metadata, events = fields[:7]
        requests = _requests(fields[7]) if field_count > 7 else {}
        _expect(session_id, str, "id")
        _expect(client_id, str, "client id")
        _expect_time(created_at, "created_at")
        _expect_time(last_activity, "last_activity")
        _expect(total, int, "totalEvents")
        _expect(metadata, dict, "metadata")
        _expect(events, list, "events")
        _json_like(metadata, "metadata")
        for kind, payload, at in events:
            # One test for the common case; the calls below say what is wrong.
            if not (
                type(kind) is str
                and type(payload) is dict
                and type(at) is float
                and _EARLIEST <= at <= _LATEST
                and is_json_like(payload)
            ):
                _expect(kind, str, "event type")
                _expect(payload, dict, "event payload")
                _expect_time(at, "event time")
                _json_like(payload, "event payload")
    except Exception as error:
        raise SnapshotDecodeError(f"the snapshot does not decode: {error}") from error
    return SessionState.restore(
        session_id,
        client_id,
        created_at,
        last_activity,
        total,
        metadata,
        encoded_events,
        (metadata_bytes, events_bytes),
        requests,
    )


def _requests(stored: Any) -> dict[str, tuple[str, Any]]:
    """The remembered keyed writes: ``[[requestId, fingerprint, outcome], ...]``, oldest first."""
    _expect(stored, list, "requests")
    requests: dict[str, tuple[str, Any]] = {}
    for entry in stored:
        _expect(entry, list, "a remembered request")
        if len(entry) != 3:
            raise ValueError(f"a remembered request holds {len(entry)} values, not 3")
        request_id, fingerprint, outcome = entry
        _expect(request_id, str, "requestId")
        _expect(fingerprint, str, "request fingerprint")
        if outcome is not None:
            _expect(outcome, int, "remembered outcome")
        requests[request_id] = (fingerprint, outcome)
    return requests
