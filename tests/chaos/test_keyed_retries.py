"""Checkers and idempotency keys: attempts sharing a requestId are one write, in effect at most once."""

from __future__ import annotations

from actorstate.chaos import check_history

from .scripts import Script


def _checkers(script: Script) -> set[str]:
    return {violation.checker for violation in check_history(script.history())}


def test_a_keyed_increment_retried_after_its_reply_was_lost_counts_once() -> None:
    """A dropped keyed increment and its retry answering the remembered value are one increment:
    the final count of 1 is exact, and the equal values are no violation."""
    script = Script()
    script.create("s1")
    script.increment("s1", 1, None, request_id="r1")  # dropped: outcome unknown
    script.increment("s1", 1, 1, request_id="r1")  # the retry: the first outcome
    script.read("s1", 0, [], {"counter": 1})
    assert _checkers(script) == set()


def test_a_keyed_increment_applied_twice_is_caught() -> None:
    """The same keyed increment showing twice in the counter breaks the exact bound."""
    script = Script()
    script.create("s1")
    script.increment("s1", 1, 1, request_id="r1")
    script.increment("s1", 1, 2, request_id="r1")  # a server that applied the retry again
    script.read("s1", 0, [], {"counter": 2})
    assert "counter" in _checkers(script)


def test_unkeyed_attempts_are_separate_increments() -> None:
    """Without a key, two acknowledged increments both returning 1 is a violation, as before."""
    script = Script()
    script.create("s1")
    script.increment("s1", 1, 1)
    script.increment("s1", 1, 1)
    assert "counter" in _checkers(script)


def test_a_keyed_append_retried_after_its_reply_was_lost_is_one_event() -> None:
    """A dropped keyed append and its retry sending the same event are one append: one event, at
    the position the retry's reply gives."""
    script = Script()
    script.create("s1")
    script.add("s1", "v1", None, request_id="r1")
    script.add("s1", "v1", 1, request_id="r1")
    script.read("s1", 1, ["v1"])
    assert _checkers(script) == set()


def test_a_keyed_append_applied_twice_is_caught() -> None:
    """The same keyed event read back twice is an event applied twice."""
    script = Script()
    script.create("s1")
    script.add("s1", "v1", 1, request_id="r1")
    script.add("s1", "v1", 2, request_id="r1")
    script.read("s1", 2, ["v1", "v1"])
    assert "list-append" in _checkers(script)


def test_a_failed_retry_leaves_the_unknown_first_attempt_standing() -> None:
    """A keyed append dropped (unknown) and retried into a refusal is one write that may have taken
    effect: its event read back is no violation, and the same event is not counted as sent twice."""
    script = Script()
    script.create("s1")
    script.add("s1", "v1", None, request_id="r1")
    retry = script.invoke("p1", "add_context", "s1", key="topic", value="v1", requestId="r1")
    script.fail(retry)
    script.read("s1", 1, ["v1"])
    assert _checkers(script) == set()
