"""Concurrent calls serialize per session: results match a sequential model."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actorstate
from actorstate import Config, InvalidInput, SessionNotFound
from actorstate.model import messages


@pytest.mark.anyio
async def test_thousand_tasks_increment_exactly() -> None:
    """1,000 tasks incrementing a handful of sessions lose no update."""
    async with actorstate.open_state() as state:
        sessions = [await state.create_session() for _ in range(5)]
        rng = random.Random(7)
        plan = [(rng.randrange(5), rng.randrange(1, 4)) for _ in range(1000)]

        async def worker(index: int, by: int) -> None:
            for _ in range(3):
                await sessions[index].increment("hits", by=by)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for index, by in plan:
                tg.start_soon(worker, index, by)

        expected = Counter()
        for index, by in plan:
            expected[index] += 3 * by
        for index, session in enumerate(sessions):
            assert (await session.context())["metadata"] == {"hits": expected[index]}


# -- the sequential model ------------------------------------------------------------


class SequentialModel:
    """An independent, obviously-sequential implementation of the session operations."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self.sessions: dict[str, dict[str, Any]] = {}

    def create(self, session_id: str, client_id: str) -> None:
        self.sessions[session_id] = {"client": client_id, "metadata": {}, "events": [], "total": 0}

    def apply(self, session_id: str, client_id: str | None, message: messages.Message) -> Any:
        session = self.sessions[session_id]
        if client_id != session["client"]:
            return SessionNotFound
        meta, events = session["metadata"], session["events"]
        if isinstance(message, messages.Increment):
            current = meta.get(message.key, 0)
            if type(current) is not int:
                return InvalidInput
            meta[message.key] = current + message.by
            return meta[message.key]
        if isinstance(message, messages.SetPreference):
            meta[message.key] = message.value
            return dict(meta)
        if isinstance(message, messages.AddContext | messages.RecordAction):
            if isinstance(message, messages.AddContext):
                meta[message.key] = message.value
                events.append(("context", {"key": message.key, "value": message.value}))
            else:
                events.append(("action", {"action": message.action, "details": message.details}))
            del events[: -self.max_events]
            session["total"] += 1
            return session["total"]
        if isinstance(message, messages.GetContext):
            return {
                "sessionId": session_id,
                "totalEvents": session["total"],
                "metadata": dict(meta),
                "recentEvents": [{"type": t, "payload": p} for t, p in events[-message.max_turns :]],
            }
        raise AssertionError(f"model has no rule for {message!r}")


def _comparable(result: Any) -> Any:
    """Results as hashable text; event times are wall-clock and left out."""
    if isinstance(result, type):
        return result.__name__
    if isinstance(result, dict) and "recentEvents" in result:
        result = dict(
            result,
            recentEvents=[{"type": e["type"], "payload": e["payload"]} for e in result["recentEvents"]],
        )
    return repr(result)


KEYS = st.sampled_from(["counter", "a", "b"])
VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.lists(st.integers(0, 3), max_size=2))
OPERATION = st.one_of(
    st.tuples(st.just("increment"), KEYS, st.integers(-3, 3)),
    st.tuples(st.just("set_preference"), KEYS, VALUES),
    st.tuples(st.just("add_context"), KEYS, VALUES),
    st.tuples(st.just("record_action"), st.sampled_from(["go", "stop"]), st.none()),
    st.tuples(st.just("context"), st.integers(1, 4), st.none()),
)
TASK = st.lists(
    st.tuples(st.integers(0, 3), st.booleans(), OPERATION, st.booleans()), min_size=1, max_size=12
)


async def _run_program(tasks: list[list[Any]]) -> None:
    turn_log: list[tuple[str, str | None, messages.Message]] = []

    def record_turn(session_id: str, client_id: str | None, message: messages.Message) -> None:
        turn_log.append((session_id, client_id, message))

    config = Config(max_events=3)
    model = SequentialModel(config.max_events)
    actual: dict[tuple[str, str, str], list[str]] = {}
    async with actorstate.open_state(config=config, fault_hook=record_turn) as state:
        sessions = [await state.create_session(client_id=f"client{i % 2}") for i in range(4)]
        for session in sessions:
            model.create(session.id, session.client_id)

        async def run_task(ops: list[Any]) -> None:
            for index, intruder, (name, arg1, arg2), yield_after in ops:
                session = sessions[index]
                client = "intruder" if intruder else session.client_id
                handle = state.session(session.id, client_id=client)
                message = _message_for(name, arg1, arg2)
                try:
                    result = await getattr(handle, name)(
                        *[a for a in (arg1, arg2) if a is not None or name == "set_preference"]
                    )
                except (SessionNotFound, InvalidInput) as error:
                    result = type(error)
                actual.setdefault((session.id, client, repr(message)), []).append(_comparable(result))
                if yield_after:
                    await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for ops in tasks:
                tg.start_soon(run_task, ops)
        turns_run = len(turn_log)
        final = {s.id: await s.context(max_turns=50) for s in sessions}

    # Replay the turns in the order the actors ran them, through the model.
    expected: dict[tuple[str, str, str], list[str]] = {}
    ops_seen = 0
    intruder_messages = {key for key in actual if key[1] == "intruder"}
    for session_id, client_id, message in turn_log[:turns_run]:
        if isinstance(message, messages.CreateSession):
            continue
        assert client_id is not None
        key = (session_id, client_id, repr(message))
        assert key in actual, f"a turn ran that no caller asked for: {message!r}"
        result = model.apply(session_id, key[1], message)
        expected.setdefault(key, []).append(_comparable(result))
        ops_seen += 1
    assert intruder_messages <= set(expected)
    assert ops_seen == sum(len(ops) for ops in tasks)
    for key, results in actual.items():
        assert sorted(results) == sorted(expected[key]), key[2]
    for session in sessions:
        model_view = model.apply(session.id, session.client_id, messages.GetContext(50))
        assert _comparable(final[session.id]) == _comparable(model_view)


def _message_for(name: str, arg1: Any, arg2: Any) -> messages.Message:
    from actorstate.model.values import encoded_size

    if name == "increment":
        return messages.Increment(arg1, arg2)
    if name == "set_preference":
        return messages.SetPreference(arg1, arg2, encoded_size(arg2))
    if name == "add_context":
        return messages.AddContext(arg1, arg2, encoded_size(arg2))
    if name == "record_action":
        return messages.RecordAction(arg1, "")
    return messages.GetContext(arg1)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=st.lists(TASK, min_size=2, max_size=8))
def test_concurrent_operations_match_a_sequential_model(backend: str, tasks: list[list[Any]]) -> None:
    """Random operations from many tasks give the results and final state of
    the sequential model replayed in the order the turns ran."""
    anyio.run(_run_program, tasks, backend=backend)
