"""The counter checker on hand-written histories."""

from __future__ import annotations

from actorstate.chaos import check_counters, check_history

from .scripts import Script


def test_final_value_within_acknowledged_and_unknown() -> None:
    """With one unknown increment, the final value may be the acknowledged sum or that plus it."""
    for final in (5, 12):
        script = Script()
        script.increment("s1", 2, 2)
        script.increment("s1", 3, 5)
        script.increment("s1", 7, None)
        script.read("s1", 0, [], {"counter": final})
        assert check_history(script.history()) == [], final


def test_final_value_below_acknowledged() -> None:
    """An acknowledged increment missing from the final value is reported, naming it."""
    script = Script()
    script.increment("s1", 2, 2)
    last = script.increment("s1", 3, 5)
    script.fault("sigkill")
    read = script.read("s1", 0, [], {"counter": 2})
    [violation] = check_counters(script.history())
    assert violation.session == "s1"
    assert violation.operations == (last, read)
    assert violation.faults
    assert violation.faults[0].kind == "sigkill"


def test_final_value_above_everything_sent() -> None:
    """An increment applied twice shows as a final value above every increment sent."""
    script = Script()
    script.increment("s1", 2, 2)
    script.increment("s1", 3, 3, key="visits")
    read = script.read("s1", 0, [], {"counter": 4, "visits": 3})
    violations = check_counters(script.history())
    assert [v.operations[-1] for v in violations] == [read]
    assert "counter 'counter' = 4" in violations[0].message


def test_returned_values_distinct() -> None:
    """Two increments returning the same value: one of them did not count."""
    script = Script()
    a = script.increment("s1", 1, None)
    script.invoke("p2", "increment_counter", "s1", key="counter", by=1)
    script.increment("s1", 1, 1, process="p3")
    script2 = Script()
    first = script2.increment("s1", 1, 1)
    second = script2.increment("s1", 1, 1)
    violations = check_counters(script2.history())
    assert any("both returned 1" in v.message and v.operations == (first, second) for v in violations)
    assert check_counters(script.history()) == []
    assert a == 0


def test_returned_value_out_of_range() -> None:
    """An increment returning more than every increment so far allows is reported."""
    script = Script()
    script.increment("s1", 1, 1)
    bad = script.increment("s1", 1, 5)
    [violation] = check_counters(script.history())
    assert bad in violation.operations
    assert "allow 1..1" in violation.message


def test_concurrent_increments_may_land_either_way() -> None:
    """Increments overlapping a read may or may not be in it."""
    script = Script()
    inc = script.invoke("p2", "increment_counter", "s1", key="counter", by=4)
    script.read("s1", 0, [], {"counter": 0})
    script.read("s1", 0, [], {"counter": 4})
    script.ok(inc, {"value": 4})
    script.read("s1", 0, [], {"counter": 4})
    assert check_counters(script.history()) == []


def test_negative_increments() -> None:
    """Negative amounts widen the bounds downwards."""
    script = Script()
    script.increment("s1", 5, 5)
    script.increment("s1", -2, None)
    script.read("s1", 0, [], {"counter": 3})
    assert check_counters(script.history()) == []
    script.read("s1", 0, [], {"counter": 2})
    assert len(check_counters(script.history())) == 1
