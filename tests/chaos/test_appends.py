"""The list-append checker on hand-written histories: what passes, and each way it fails."""

from __future__ import annotations

from actorstate.chaos import check_appends, check_history

from .scripts import Script


def test_sequential_appends_and_reads_pass() -> None:
    """Acknowledged appends at their positions, read back in order, break nothing."""
    script = Script()
    script.create("s1")
    script.add("s1", "a", 1)
    script.add("s1", "b", 2)
    script.read("s1", 2, ["a", "b"])
    script.add("s1", "c", 3)
    script.read("s1", 3, ["a", "b", "c"])
    assert check_history(script.history()) == []


def test_trimmed_events_are_not_lost() -> None:
    """Events the server trimmed (cap of max_events) or a read left out (maxTurns) are not violations."""
    script = Script()
    for n in range(1, 8):
        script.add("s1", f"v{n}", n)
    script.read("s1", 7, ["v5", "v6", "v7"], max_turns=50)  # the server keeps 3
    script.read("s1", 7, ["v7"], max_turns=1)
    assert check_appends(script.history(), max_events=3) == []


def test_unknown_outcomes_may_appear_or_not() -> None:
    """An info append may be present (anywhere after its invocation) or absent."""
    script = Script()
    script.add("s1", "a", None)
    script.add("s1", "b", 1)
    script.add("s1", "c", None)
    script.read("s1", 2, ["b", "a"])  # a took effect late, c never
    assert check_appends(script.history()) == []


def test_acknowledged_append_lost() -> None:
    """An acknowledged append missing after recovery is reported, with the fault before it."""
    script = Script()
    script.add("s1", "a", 1)
    acked = script.add("s1", "b", 2)
    start, _ = script.fault("sigkill")
    read = script.read("s1", 1, ["a"])
    [violation] = check_appends(script.history())
    assert violation.session == "s1"
    assert violation.operations == (acked, read)
    assert "acknowledged as event #2" in violation.message
    assert start in violation.faults


def test_acknowledged_append_replaced() -> None:
    """A read showing another event where an acknowledged append's reply put it is reported."""
    script = Script()
    acked = script.add("s1", "a", 1)
    script.add("s1", "b", None)
    read = script.read("s1", 1, ["b"])
    violations = check_appends(script.history())
    assert violations
    assert all(v.session == "s1" for v in violations)
    assert any(
        "acknowledged append" in v.message and read in v.operations and acked in v.operations
        for v in violations
    )


def test_value_never_sent() -> None:
    """An event nobody appended is reported."""
    script = Script()
    script.add("s1", "a", 1)
    read = script.read("s1", 2, ["a", "ghost"])
    violations = check_appends(script.history())
    assert any("never sent" in v.message and v.operations == (read,) for v in violations)


def test_value_sent_to_another_session() -> None:
    """An event appended to one session showing in another was never sent to it."""
    script = Script()
    script.add("s1", "a", 1)
    script.read("s2", 1, ["a"])
    [violation] = [v for v in check_appends(script.history()) if "never sent" in v.message]
    assert violation.session == "s2"


def test_failed_append_visible() -> None:
    """An append that failed must not be there."""
    script = Script()
    call = script.invoke("p1", "add_context", "s1", key="topic", value="a")
    script.fail(call)
    script.read("s1", 1, ["a"])
    assert any("failed" in v.message for v in check_appends(script.history()))


def test_two_reads_disagree_on_order() -> None:
    """Two reads of the same events in different orders are reported."""
    script = Script()
    script.add("s1", "a", None, process="p1")
    script.add("s1", "b", None, process="p2")
    first = script.read("s1", 2, ["a", "b"])
    second = script.read("s1", 2, ["b", "a"])
    violations = check_appends(script.history())
    assert violations
    assert any("disagree" in v.message and v.operations[-2:] == (first, second) for v in violations)


def test_real_time_order_broken() -> None:
    """If a was acknowledged before b was invoked, b cannot come first."""
    script = Script()
    a = script.add("s1", "a", None)  # outcome unknown to the client...
    b = script.invoke("p2", "add_context", "s1", key="topic", value="b")
    script.ok(b, {"totalEvents": 1})
    c = script.add("s1", "c", 2)
    script.read("s1", 2, ["b", "c"])
    assert check_appends(script.history()) == []  # ...so a may still come later
    script2 = Script()
    a = script2.add("s1", "a", 2)
    b = script2.add("s1", "b", 1)
    [violation] = [v for v in check_appends(script2.history()) if "before" in v.message]
    assert violation.operations == (a, b)
    assert c > 0


def test_real_time_order_of_observed_unknown_append() -> None:
    """An info append seen by a read is held to real-time order too."""
    script = Script()
    late = script.add("s1", "late", None)
    acked = script.add("s1", "acked", 2)
    script.read("s1", 2, ["late", "acked"])
    assert check_appends(script.history()) == []
    script = Script()
    acked = script.add("s1", "acked", 2)
    late = script.add("s1", "late", None)
    script.read("s1", 2, ["late", "acked"])
    violations = [v for v in check_appends(script.history()) if "before" in v.message]
    assert [v.operations[:2] for v in violations] == [(acked, late)]


def test_total_events_going_back() -> None:
    """A read after another never shows fewer events."""
    script = Script()
    script.add("s1", "a", None)
    script.read("s1", 1, ["a"])
    later = script.read("s1", 0, [])
    assert any(
        "after an earlier one" in v.message and later in v.operations for v in check_appends(script.history())
    )


def test_append_applied_twice() -> None:
    """An event at two positions (applied twice) is reported, as are more events than were sent."""
    script = Script()
    script.add("s1", "a", 1)
    script.read("s1", 2, ["a", "a"])
    messages = [v.message for v in check_appends(script.history())]
    assert any("#1" in m and "#2" in m for m in messages)
    assert any("only 1 appends" in m for m in messages)


def test_read_too_short_for_the_cap() -> None:
    """With the cap known, a read missing retained events is reported; with None it is not."""
    script = Script()
    for n in range(1, 5):
        script.add("s1", f"v{n}", n)
    script.read("s1", 4, ["v4"], max_turns=10)
    assert any("should show 3" in v.message for v in check_appends(script.history(), max_events=3))
    assert check_appends(script.history(), max_events=None) == []


def test_record_action_events_count_too() -> None:
    """record_action appends an action event, read back by its action and details."""
    script = Script()
    call = script.invoke("p1", "record_action", "s1", action="search", details="q=1")
    script.ok(call, {"totalEvents": 1})
    read = script.invoke("p1", "get_context", "s1")
    event = {"type": "action", "payload": {"action": "search", "details": "q=1"}, "time": "x"}
    script.ok(read, {"totalEvents": 1, "metadata": {}, "recentEvents": [event]})
    assert check_appends(script.history()) == []
