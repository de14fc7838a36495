"""The snapshot codec: a snapshot decodes only into values every reply can render as JSON;
anything else (msgpack bin or ext, NaN, infinity, times no date can show) is refused."""

from __future__ import annotations

import math
import re
import sqlite3
from typing import TYPE_CHECKING, Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import actorstate
from actorstate import InvalidInput, SessionQuarantined
from actorstate.config import Config
from actorstate.model.codec import SnapshotDecodeError, decode_session, encode_session
from actorstate.model.session_state import SessionState
from actorstate.model.values import check_json_like, encoded_size, is_json_like
from actorstate.store.doctor import diagnose

if TYPE_CHECKING:
    from pathlib import Path

SESSION = "e7b3bf69-c346-4a9b-861e-f9ad8ce0fc93"
NOW = 1_780_000_000.0


def _snapshot(
    metadata: Any = None,
    payload: Any = None,
    *,
    created_at: Any = NOW,
    event_time: Any = NOW,
) -> bytes:
    """A snapshot as a writer other than actorstate might have packed it."""
    events = [["context", {"key": "k", "value": "v"} if payload is None else payload, event_time]]
    fields = [SESSION, "alice", created_at, NOW, 1, {} if metadata is None else metadata, events]
    return b"\x01" + msgpack.packb(fields, use_bin_type=True)


@pytest.mark.parametrize(
    ("blob", "complaint"),
    [
        pytest.param(_snapshot({"k": b"raw"}), "metadata: a bytes is not a JSON value", id="bytes"),
        pytest.param(_snapshot({"k": b""}), "metadata: a bytes is not a JSON value", id="empty-bytes"),
        pytest.param(
            _snapshot({"k": [1, {"deep": b"x"}]}), "metadata: a bytes is not a JSON value", id="nested-bytes"
        ),
        pytest.param(
            _snapshot(payload={"key": "k", "value": b"raw"}),
            "event payload: a bytes is not a JSON value",
            id="payload-bytes",
        ),
        pytest.param(
            _snapshot(payload={b"key": "k"}), "event payload: object keys must be strings", id="bytes-key"
        ),
        pytest.param(
            _snapshot({"k": msgpack.ExtType(5, b"x")}), "metadata: a ExtType is not a JSON value", id="ext"
        ),
        pytest.param(
            _snapshot({"k": msgpack.Timestamp(1)}),
            "metadata: a Timestamp is not a JSON value",
            id="timestamp",
        ),
        pytest.param(_snapshot({"k": math.nan}), "metadata: nan is not a finite number", id="nan"),
        pytest.param(
            _snapshot(payload={"key": "k", "value": -math.inf}),
            "event payload: -inf is not a finite number",
            id="payload-inf",
        ),
        pytest.param(_snapshot(event_time=math.nan), "event time nan is not a time", id="nan-time"),
        pytest.param(_snapshot(event_time=math.inf), "event time inf is not a time", id="inf-time"),
        pytest.param(_snapshot(event_time=1e20), "event time 1e+20 is not a time", id="year-3e12"),
        pytest.param(_snapshot(created_at=math.inf), "created_at inf is not a time", id="inf-created"),
        pytest.param(_snapshot({"k": 1})[:-3], "it is cut short", id="cut-short"),
        pytest.param(_snapshot({"k": 1}) + b"\x00", "1 bytes follow it", id="trailing"),
    ],
)
def test_snapshot_with_values_json_cannot_carry_is_refused(blob: bytes, complaint: str) -> None:
    """Each value a JSON reply could not carry makes decoding fail, saying what and where it is."""
    with pytest.raises(SnapshotDecodeError, match="^the snapshot does not decode: " + re.escape(complaint)):
        decode_session(blob)


def test_decoded_session_keeps_its_values_and_sizes() -> None:
    """A session round-trips exactly, with the encoded sizes its limits are accounted in."""
    config = Config()
    state = SessionState(SESSION, "alice", NOW)
    value = {"nested": [1, 2.5, None, True, -(2**63), 2**64 - 1], "é": "ü"}
    state.add_context("topic", value, encoded_size(value), NOW + 1, config)
    state.record_action("search", "q=refund", NOW + 2, config)
    state.increment("counter", 3, NOW + 3, config)
    decoded = decode_session(encode_session(state))
    assert (decoded.metadata, decoded.events) == (state.metadata, state.events)
    assert (decoded.total_events, decoded.last_activity) == (2, NOW + 3)
    assert decoded.metadata_bytes == encoded_size(state.metadata)
    assert decoded.events_bytes == encoded_size(state.events)


def test_snapshot_is_the_seven_fields_packed_as_one_array() -> None:
    """Events kept encoded are joined into exactly the bytes packing the whole session at once gives.

    So snapshots written before events were kept encoded read the same, and
    a snapshot any msgpack writer packs is one this version reads.
    """
    config = Config()
    state = SessionState(SESSION, "alice", NOW)
    for n in range(20):  # past 15 events the array header takes three bytes
        state.record_action("search", f"q={n}", NOW + n, config)
    state.add_context("topic", {"nested": [1, 2.5]}, encoded_size({"nested": [1, 2.5]}), NOW + 30, config)
    fields = [SESSION, "alice", NOW, NOW + 30, 21, state.metadata, [list(event) for event in state.events]]
    whole = bytes((1,)) + msgpack.packb(fields, use_bin_type=True)
    assert encode_session(state) == whole
    assert encode_session(decode_session(whole)) == whole


def test_remembered_keyed_writes_round_trip_in_format_2_and_sessions_without_stay_format_1() -> None:
    """A session that remembers keyed writes is written in format 2 (an eighth field, oldest key
    first) and decodes with them; one that never used a key is still written in format 1."""
    config = Config()
    state = SessionState(SESSION, "alice", NOW)
    state.record_action("search", "q", NOW + 1, config)
    assert encode_session(state)[0] == 1
    state.remember("first", "00112233aabbccdd", 1, config)
    state.remember("second", "8899aabbccddeeff", None, config)
    blob = encode_session(state)
    assert blob[0] == 2
    decoded = decode_session(blob)
    assert list(decoded.requests.items()) == [
        ("first", ("00112233aabbccdd", 1)),
        ("second", ("8899aabbccddeeff", None)),
    ]
    assert decoded.events == state.events
    assert decoded.events_bytes == encoded_size(state.events)
    assert encode_session(decoded) == blob


def test_a_snapshot_in_an_unknown_format_is_refused_naming_the_formats_read() -> None:
    """Format 3 is refused, saying which formats this version reads."""
    blob = bytes((3,)) + encode_session(SessionState(SESSION, "alice", NOW))[1:]
    with pytest.raises(SnapshotDecodeError, match=r"format 3 .* reads formats 1, 2"):
        decode_session(blob)


_JSON_ISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=3)
    | st.binary(max_size=2),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=2) | st.integers(0, 2), children, max_size=3)
    ),
    max_leaves=12,
)


@given(_JSON_ISH)
def test_is_json_like_agrees_with_check_json_like(value: Any) -> None:
    """The fast test used when decoding accepts exactly what check_json_like accepts."""
    try:
        check_json_like(value, "value")
    except InvalidInput:
        accepted = False
    else:
        accepted = True
    assert is_json_like(value) is accepted


def test_is_json_like_refuses_nesting_past_the_limit() -> None:
    """The depth limit of check_json_like holds for the fast test too."""
    deep: Any = "leaf"
    for _ in range(64):
        deep = [deep]
    assert is_json_like(deep)
    assert not is_json_like([deep])
    with pytest.raises(InvalidInput, match="nested deeper"):
        check_json_like([deep], "value")


async def _stored_with(path: str, metadata: dict[str, Any]) -> tuple[str, str]:
    """Two stored sessions; the first one's snapshot is then rewritten to hold ``metadata``."""
    async with actorstate.open_state(path) as state:
        bad = await state.create_session(client_id="alice")
        good = await state.create_session(client_id="alice")
        await good.set_preference("k", "v")
    fields = [bad.id, "alice", NOW, NOW, 0, metadata, []]
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE sessions SET state = ? WHERE id = ?",
            (b"\x01" + msgpack.packb(fields, use_bin_type=True), bad.id),
        )
    return bad.id, good.id


@pytest.mark.anyio
@pytest.mark.parametrize("value", [b"raw", msgpack.ExtType(7, b"x"), math.nan])
async def test_snapshot_holding_bytes_or_nan_quarantines_its_session(tmp_path: Path, value: Any) -> None:
    """Such a snapshot quarantines its session instead of failing each reply; others serve."""
    path = str(tmp_path / "state.db")
    bad, good = await _stored_with(path, {"k": value})
    async with actorstate.open_state(path) as state:
        with pytest.raises(SessionQuarantined, match="stored snapshot cannot be read"):
            await state.session(bad, client_id="alice").context()
        assert (await state.session(good, client_id="alice").context())["metadata"] == {"k": "v"}
    assert any(
        f"session {bad}: the snapshot does not decode" in problem for problem in diagnose(path).problems
    )
