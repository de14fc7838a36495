"""Idempotency keys: a keyed write applies once per key and session; a retry gets the first outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import actorstate
from actorstate import InvalidInput
from actorstate.config import Config
from actorstate.model.codec import decode_session, encode_session
from actorstate.model.messages import AddContext, Increment, Keyed, RecordAction, SetPreference
from actorstate.model.session_state import SessionState
from actorstate.model.values import encoded_size
from actorstate.transport.tools import ToolContext, ToolError, call_tool

if TYPE_CHECKING:
    from pathlib import Path

SESSION = "e7b3bf69-c346-4a9b-861e-f9ad8ce0fc93"
NOW = 1_780_000_000.0


def test_a_retried_keyed_write_returns_the_first_outcome_and_changes_nothing() -> None:
    """The second application of the same keyed increment returns the first's value, and the
    counter moved once; an unkeyed repeat applies again."""
    config = Config()
    state = SessionState(SESSION, "alice", NOW)
    keyed = Keyed.of("retry-1", Increment("hits", 5))
    assert keyed.apply(state, NOW, config) == 5
    assert Keyed.of("retry-1", Increment("hits", 5)).apply(state, NOW + 1, config) == 5
    assert state.metadata["hits"] == 5
    assert Increment("hits", 5).apply(state, NOW + 2, config) == 10


def test_keyed_appends_record_one_event_and_a_retried_preference_answers_the_metadata_now() -> None:
    """A retried add_context or record_action adds no event and answers the first total; a
    retried set_preference changes nothing and answers the metadata as it is."""
    config = Config()
    state = SessionState(SESSION, "alice", NOW)
    add = Keyed.of("a", AddContext("topic", "billing", 9))
    assert add.apply(state, NOW, config) == 1
    assert RecordAction("search", "q").apply(state, NOW, config) == 2
    assert add.apply(state, NOW, config) == 1
    act = Keyed.of("b", RecordAction("search", "again"))
    assert act.apply(state, NOW, config) == 3
    assert act.apply(state, NOW, config) == 3
    assert state.total_events == 3
    prefer = Keyed.of("c", SetPreference("lang", "fr", 3))
    assert prefer.apply(state, NOW, config) == {"topic": "billing", "lang": "fr"}
    state.set_preference("theme", "dark", 5, NOW, config)
    assert prefer.apply(state, NOW, config) == {"topic": "billing", "lang": "fr", "theme": "dark"}


def test_the_same_object_with_its_keys_in_another_order_is_the_same_call() -> None:
    """A retry whose value spells an object's keys in another order is a retry, not another call."""
    config = Config()
    state = SessionState(SESSION, "alice", NOW)
    first = {"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}}
    again = {"b": {"c": [1, {"e": 3, "d": 2}]}, "a": 1}
    assert Keyed.of("k", AddContext("topic", first, 30)).apply(state, NOW, config) == 1
    assert Keyed.of("k", AddContext("topic", again, 30)).apply(state, NOW, config) == 1
    assert state.total_events == 1


def test_the_same_key_on_another_call_is_refused_and_changes_nothing() -> None:
    """A requestId reused for a different call is refused with a message saying so."""
    config = Config()
    state = SessionState(SESSION, "alice", NOW)
    Keyed.of("k", Increment("hits", 1)).apply(state, NOW, config)
    with pytest.raises(InvalidInput, match="already used for a different call"):
        Keyed.of("k", Increment("hits", 2)).apply(state, NOW, config)
    with pytest.raises(InvalidInput, match="already used for a different call"):
        Keyed.of("k", Increment("misses", 1)).apply(state, NOW, config)
    assert state.metadata == {"hits": 1}


def test_only_the_latest_keys_are_remembered() -> None:
    """Past max_request_ids the oldest key is forgotten: its retry applies again, and its bytes
    leave the session's accounted size."""
    config = Config(max_request_ids=2)
    state = SessionState(SESSION, "alice", NOW)
    for key in ("k1", "k2", "k3"):
        Keyed.of(key, Increment("hits", 1)).apply(state, NOW, config)
    assert list(state.requests) == ["k2", "k3"]
    # Remembered keys count in the session's memory, as encoded: the forgotten one no longer.
    assert state.requests_bytes == sum(encoded_size([key, *seen]) for key, seen in state.requests.items())
    assert state.state_bytes == state.metadata_bytes + state.events_bytes + state.requests_bytes
    assert decode_session(encode_session(state)).requests_bytes == state.requests_bytes
    assert Keyed.of("k3", Increment("hits", 1)).apply(state, NOW, config) == 3
    assert Keyed.of("k1", Increment("hits", 1)).apply(state, NOW, config) == 4


def test_a_keyed_write_that_is_refused_is_not_remembered() -> None:
    """A write refused by its own checks leaves no key behind: a corrected retry is not a repeat."""
    config = Config()
    state = SessionState(SESSION, "alice", NOW)
    state.set_preference("hits", "not a number", 14, NOW, config)
    with pytest.raises(InvalidInput):
        Keyed.of("k", Increment("hits", 1)).apply(state, NOW, config)
    assert state.requests == {}


@pytest.mark.anyio
async def test_keyed_writes_are_remembered_across_a_restart(tmp_path: Path) -> None:
    """Keys are committed with the session: after a restart a retry of each keyed write returns
    the first outcome and changes nothing, and a new key applies."""
    db = tmp_path / "keys.db"
    async with actorstate.open_state(db) as state:
        session = await state.create_session(client_id="alice")
        assert await session.increment("hits", 2, request_id="inc-1") == 2
        assert await session.add_context("topic", "billing", request_id="add-1") == 1
        assert await session.record_action("search", "q", request_id="act-1") == 2
        assert await session.set_preference("lang", "fr", request_id="pref-1") == {
            "hits": 2,
            "topic": "billing",
            "lang": "fr",
        }
        session_id = session.id
    async with actorstate.open_state(db) as state:
        session = state.session(session_id, client_id="alice")
        assert await session.increment("hits", 2, request_id="inc-1") == 2
        assert await session.add_context("topic", "billing", request_id="add-1") == 1
        assert await session.record_action("search", "q", request_id="act-1") == 2
        assert await session.set_preference("lang", "fr", request_id="pref-1") == {
            "hits": 2,
            "topic": "billing",
            "lang": "fr",
        }
        context = await session.context(max_turns=10)
        assert context["totalEvents"] == 2
        assert context["metadata"]["hits"] == 2
        assert await session.increment("hits", 2, request_id="inc-2") == 4


@pytest.mark.anyio
async def test_the_tools_take_a_request_id_and_refuse_a_bad_one() -> None:
    """The write tools accept requestId: a retried increment_counter answers the first value; an
    empty, overlong or non-string requestId is refused naming the argument, and a key reused for
    another call is refused saying so."""
    config = Config()
    async with actorstate.open_state() as state:
        context = ToolContext(state)
        session_id = (await call_tool(context, "create_session", {})).structured["sessionId"]
        arguments = {"sessionId": session_id, "key": "hits", "by": 3, "requestId": "r-1"}
        assert (await call_tool(context, "increment_counter", arguments)).structured["value"] == 3
        assert (await call_tool(context, "increment_counter", arguments)).structured["value"] == 3
        for bad in ("", "x" * (config.max_request_id_length + 1), 7):
            with pytest.raises(ToolError, match="requestId"):
                await call_tool(context, "increment_counter", {**arguments, "requestId": bad})
        with pytest.raises(ToolError, match="already used for a different call"):
            await call_tool(context, "increment_counter", {**arguments, "by": 4})
        read = await call_tool(context, "get_context", {"sessionId": session_id})
        assert read.structured["metadata"] == {"hits": 3}
