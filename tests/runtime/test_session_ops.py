"""The session operations of the embedding API, their limits and their errors."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import pytest

import actorstate
from actorstate import Config, InvalidInput, SessionNotFound

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_operations_return_what_the_api_promises() -> None:
    """Each operation returns its documented value and context shows the history."""
    async with actorstate.open_state() as state:
        session = await state.create_session(client_id="alice")
        assert uuid.UUID(session.id).version == 4
        assert session.client_id == "alice"
        assert await session.add_context("topic", "billing") == 1
        assert await session.record_action("search", details="q=refund") == 2
        assert await session.record_action("close") == 3
        assert await session.set_preference("lang", "fr") == {"topic": "billing", "lang": "fr"}
        assert await session.increment() == 1
        assert await session.increment("visits", by=5) == 5
        assert await session.increment("visits", by=-2) == 3

        context = await session.context(max_turns=2)
        assert context["sessionId"] == session.id
        assert context["totalEvents"] == 3
        assert context["metadata"] == {"topic": "billing", "lang": "fr", "counter": 1, "visits": 3}
        assert [(e["type"], e["payload"]) for e in context["recentEvents"]] == [
            ("action", {"action": "search", "details": "q=refund"}),
            ("action", {"action": "close", "details": ""}),
        ]
        assert all(e["time"].endswith("Z") for e in context["recentEvents"])


async def test_history_is_capped_but_total_keeps_counting() -> None:
    """Past max_events the oldest events drop; totalEvents counts them all."""
    async with actorstate.open_state(config=Config(max_events=5)) as state:
        session = await state.create_session()
        for index in range(12):
            await session.record_action(f"step {index}")
        context = await session.context(max_turns=50)
        assert context["totalEvents"] == 12
        assert [e["payload"]["action"] for e in context["recentEvents"]] == [
            f"step {i}" for i in range(7, 12)
        ]


async def test_replies_are_copies_not_live_state() -> None:
    """Mutating a reply does not change the session."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        metadata = await session.set_preference("tags", ["a"])
        metadata["tags"].append("b")
        context = await session.context()
        context["metadata"]["tags"].append("c")
        assert (await session.context())["metadata"] == {"tags": ["a"]}


async def test_update_runs_inside_the_turn_and_returns_its_result() -> None:
    """update(fn) applies fn's changes and returns what fn returned."""
    async with actorstate.open_state() as state:
        session = await state.create_session()

        def move(metadata: dict[str, object]) -> str:
            metadata["cart"] = ["book"]
            metadata["step"] = "checkout"
            return "moved"

        assert await session.update(move) == "moved"
        assert (await session.context())["metadata"] == {"cart": ["book"], "step": "checkout"}


async def test_other_clients_and_unknown_ids_get_the_same_error() -> None:
    """Another client's session is indistinguishable from one that never existed."""
    async with actorstate.open_state() as state:
        mine = await state.create_session(client_id="alice")
        await mine.set_preference("secret", "42")
        intruder = state.session(mine.id, client_id="mallory")
        unknown = state.session(str(uuid.uuid4()), client_id="mallory")
        errors = []
        for handle in (intruder, unknown):
            with pytest.raises(SessionNotFound) as info:
                await handle.context()
            errors.append(str(info.value))
        with pytest.raises(SessionNotFound):
            await intruder.set_preference("secret", "0")
        with pytest.raises(SessionNotFound):
            await intruder.end()
        assert errors == ["Session not found or expired"] * 2
        assert (await mine.context())["metadata"] == {"secret": "42"}
        assert await state.list_sessions("alice") == [mine.id]
        assert await state.list_sessions("mallory") == []


async def test_ended_session_is_gone() -> None:
    """After end() every call, including a second end(), gets SessionNotFound."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        await session.end()
        with pytest.raises(SessionNotFound):
            await session.increment()
        with pytest.raises(SessionNotFound):
            await session.end()
        assert state.stats()["sessions"] == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.add_context("k" * 257, "v"), "key is 257 characters long; the limit is 256"),
        (lambda s: s.add_context("", "v"), "key must not be empty"),
        (lambda s: s.set_preference(7, "v"), "key must be a string, not int"),
        (
            lambda s: s.set_preference("k", "x" * 70_000),
            "value takes 70005 bytes encoded; the limit is 65536",
        ),
        (lambda s: s.set_preference("k", {1: "a"}), "object keys must be strings"),
        (lambda s: s.set_preference("k", float("nan")), "not a finite number"),
        (lambda s: s.set_preference("k", b"raw"), "a bytes is not a JSON value"),
        (lambda s: s.set_preference("k", 2**70), "does not fit in 64 bits"),
        (lambda s: s.increment(by=1.5), "by must be an integer"),
        (lambda s: s.context(max_turns=0), "maxTurns must be an integer from 1 to 50"),
        (lambda s: s.context(max_turns=51), "maxTurns must be an integer from 1 to 50"),
        (lambda s: s.record_action(None), "action must be a string"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_changes_nothing(call, message) -> None:  # type: ignore[no-untyped-def]
    """Each limit is enforced with a message naming it; the session is untouched."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        await session.set_preference("kept", 1)
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
            await call(session)
        context = await session.context()
        assert context["metadata"] == {"kept": 1}
        assert context["totalEvents"] == 0


async def test_increment_refuses_a_non_integer_counter() -> None:
    """Incrementing a key that holds text fails and leaves the text."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        await session.set_preference("counter", "ten")
        with pytest.raises(InvalidInput, match="holds a str, not an integer counter"):
            await session.increment()
        assert (await session.context())["metadata"] == {"counter": "ten"}


async def test_session_size_limit() -> None:
    """A write that would push the encoded session past the limit is refused."""
    config = Config(max_session_bytes=200_000)
    async with actorstate.open_state(config=config) as state:
        session = await state.create_session()
        await session.set_preference("a", "x" * 60_000)
        await session.set_preference("b", "x" * 60_000)
        await session.set_preference("c", "x" * 60_000)
        with pytest.raises(InvalidInput, match="the limit is 200000 bytes"):
            await session.set_preference("d", "x" * 60_000)
        # Replacing a value with a smaller one is always allowed.
        assert set(await session.set_preference("a", "small")) == {"a", "b", "c"}


async def test_a_session_full_of_large_events_drops_the_oldest_to_record_more() -> None:
    """Events fill the size limit: the next event, even a small one, drops the oldest instead of failing."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        big = "x" * 40_000
        for _ in range(25):
            await session.record_action("upload", details=big)
        for _ in range(3):
            await session.record_action("upload", details=big)  # the size limit, not max_events, drops
        assert await session.record_action("x") == 29
        await session.add_context("topic", "billing")
        context = await session.context(max_turns=50)
        events = context["recentEvents"]
        assert context["totalEvents"] == 30
        kept_big = sum(1 for event in events if event["payload"].get("details") == big)
        assert kept_big <= 1024 * 1024 // 40_000 < 28  # the oldest dropped for room, not for max_events
        assert events[-2]["payload"] == {"action": "x", "details": ""}
        assert events[-1]["payload"] == {"key": "topic", "value": "billing"}
        assert context["metadata"] == {"topic": "billing"}


async def test_an_event_that_cannot_fit_even_alone_is_refused_and_changes_nothing() -> None:
    """Only an event too large for the session with every older event dropped is refused, saying so."""
    config = Config(max_session_bytes=100_000)
    async with actorstate.open_state(config=config) as state:
        session = await state.create_session()
        await session.record_action("kept", details="y" * 30_000)
        with pytest.raises(InvalidInput, match="even with every older event dropped it would not fit"):
            await session.record_action("a" * 50_000, details="z" * 55_000)
        await session.set_preference("big", "m" * 60_000)
        with pytest.raises(InvalidInput, match="remove metadata keys"):
            await session.add_context("other", "c" * 30_000)
        context = await session.context()
        assert context["totalEvents"] == 1
        assert [event["payload"]["action"] for event in context["recentEvents"]] == ["kept"]
        assert set(context["metadata"]) == {"big"}


async def test_malformed_session_id_is_invalid_input() -> None:
    async with actorstate.open_state() as state:
        with pytest.raises(InvalidInput, match="session id must be a UUID"):
            state.session("not-a-uuid")


async def test_calls_after_close_are_refused() -> None:
    """A handle used after open_state exits gets StateClosed, not a hang."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
    with pytest.raises(actorstate.StateClosed):
        await session.increment()


@pytest.mark.parametrize("stored", [False, True], ids=["memory", "database"])
async def test_listing_after_close_is_refused_like_every_call(tmp_path: Path, stored: bool) -> None:
    """list_sessions and describe_sessions after open_state exits raise StateClosed, with or without a database."""
    async with actorstate.open_state(tmp_path / "closed.db" if stored else None) as state:
        await state.create_session("alice")
    with pytest.raises(actorstate.StateClosed):
        await state.list_sessions("alice")
    with pytest.raises(actorstate.StateClosed):
        await state.describe_sessions("alice")


async def test_caller_keeps_its_object_and_the_session_keeps_its_state() -> None:
    """Changing an object after passing it in does not reach into the session."""
    async with actorstate.open_state() as state:
        session = await state.create_session()
        tags = ["a"]
        await session.set_preference("tags", tags)
        await session.add_context("more", tags)
        tags.append({1, 2})  # not even JSON: must not reach the session
        context = await session.context()
        assert context["metadata"] == {"tags": ["a"], "more": ["a"]}
        assert context["recentEvents"][0]["payload"] == {"key": "more", "value": ["a"]}


@pytest.mark.parametrize("bad", ["\ud800", "ok\udfff"])
async def test_text_that_is_not_unicode_is_invalid_input(bad: str) -> None:
    """Lone surrogates (from broken JSON) are refused everywhere text goes in."""
    async with actorstate.open_state() as state:
        with pytest.raises(InvalidInput, match="not valid Unicode"):
            await state.create_session(client_id=bad)
        session = await state.create_session()
        with pytest.raises(InvalidInput, match="not valid Unicode"):
            await session.set_preference("k", bad)
        with pytest.raises(InvalidInput, match="not valid Unicode"):
            await session.set_preference(bad, "v")
        with pytest.raises(InvalidInput, match="not valid Unicode"):
            await session.record_action(bad)
        with pytest.raises(InvalidInput, match="not valid Unicode"):
            await session.update(lambda metadata: metadata.update(k=[bad]))
        assert (await session.context())["metadata"] == {}


async def test_owner_handle_acts_for_whoever_owns_the_session() -> None:
    """session_as_owner (for single-principal transports) reaches any client's session."""
    async with actorstate.open_state() as state:
        session = await state.create_session(client_id="alice")
        owner = state.session_as_owner(session.id)
        assert await owner.increment() == 1
        assert await session.increment() == 2
        await owner.end()
        with pytest.raises(SessionNotFound):
            await session.context()


async def test_tell_runs_the_message_without_waiting() -> None:
    """A told message gets its turn; its failure is logged, not raised."""
    from actorstate.model.messages import Increment
    from actorstate.state import open_runtime

    async with open_runtime() as supervisor:
        state = actorstate.State(supervisor)
        session = await state.create_session()
        await session.set_preference("text", "x")
        for _ in range(5):
            await supervisor.tell(session.id, Increment("counter", 2))
        await supervisor.tell(session.id, Increment("text", 1))  # fails inside its turn
        assert (await session.context())["metadata"] == {"text": "x", "counter": 10}


def test_an_empty_session_id_is_refused_in_a_fresh_process() -> None:
    """The first id a process checks may be the empty string: it is refused as not a UUID (the
    check's cache of the last id starts empty-handed, not holding the interned "")."""
    code = (
        "from actorstate import InvalidInput\n"
        "from actorstate.state import canonical_session_id\n"
        "try:\n    canonical_session_id('')\nexcept InvalidInput as error:\n    print(error)\n"
        "else:\n    raise SystemExit('accepted')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "session id must be a UUID, not ''"
