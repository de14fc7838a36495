"""The report: a history's counts, and the window of history around a violation."""

from __future__ import annotations

import json

from actorstate.chaos import check_history, summarize, violation_window, window_jsonl
from actorstate.chaos.history import FaultEvent, FaultPhase, History, Operation, Phase
from actorstate.chaos.report import fault_timings, percentile

from .scripts import Script


def test_summary_counts_calls_by_tool_and_outcome_and_faults_by_kind() -> None:
    """Calls are counted per tool and outcome, faults once per start."""
    script = Script()
    script.create("s1")
    script.add("s1", "a", 1)
    script.add("s1", "b", None)
    script.fault("sigkill")
    script.fault("sigkill")
    script.fault("disk-full", "db")
    script.invoke("p2", "get_context", "s1")  # never answered: info
    summary = summarize(script.history())
    assert summary.calls == {
        "add_context": {"ok": 1, "info": 1},
        "create_session": {"ok": 1},
        "get_context": {"info": 1},
    }
    assert summary.outcomes == {"ok": 2, "info": 2}
    assert summary.total_calls == 4
    assert summary.faults == {"disk-full": 1, "sigkill": 2}


def test_window_holds_the_session_between_the_calls_and_the_faults() -> None:
    """The window is the violation's session from its first call to its last, plus faults around it."""
    script = Script()
    script.add("s1", "a", 1)
    acked = script.add("s1", "b", 2)
    script.add("s2", "other", 1, process="p2")
    start, end = script.fault("sigkill")
    script.read("s1", 1, ["a"])
    history = script.history()
    [violation] = [v for v in check_history(history) if v.checker == "list-append"]
    window = violation_window(history, violation)
    assert window[0].index == acked  # the first append, before the window, is left out
    assert {r.session for r in window if isinstance(r, Operation)} == {"s1"}
    assert [r for r in window if isinstance(r, FaultEvent)] == [start, end]
    assert window[-1].index == violation.last
    lines = window_jsonl(history, violation).splitlines()
    head = json.loads(lines[0])
    assert head["type"] == "violation"
    assert head["session"] == "s1"
    assert head["operations"] == list(violation.operations)
    assert [json.loads(line)["index"] for line in lines[1:]] == [r.index for r in window]


def _timed_history(events: list[tuple[float, str, str]]) -> History:
    """Records at the given monotonic times: ("invoke"|"ok", process) calls, ("start"|"end", kind) faults."""
    records: list[Operation | FaultEvent] = []
    for index, (at, phase, name) in enumerate(events):
        if phase in ("start", "end"):
            records.append(FaultEvent(index, FaultPhase(phase), name, "server-1", monotonic_time=at))
        else:
            records.append(Operation(index, Phase(phase), name, "get_context", "s1", monotonic_time=at))
    return History(records)


def test_fault_timings_give_outage_and_recovery_and_split_latencies() -> None:
    """A fault's outage runs from its start to its end, its recovery to the first call acknowledged
    after its end; calls invoked from a fault's start to its recovery count as during the fault,
    the rest as calm, and a fault no call outlived has no recovery."""
    history = _timed_history(
        [
            (0.0, "invoke", "p1"),
            (0.010, "ok", "p1"),  # calm: 10 ms
            (1.0, "start", "sigkill"),
            (1.1, "invoke", "p1"),
            (2.0, "end", "sigkill"),
            (2.5, "ok", "p1"),  # during: 1.4 s, and the recovery 0.5 s after the end
            (3.0, "invoke", "p1"),
            (3.002, "ok", "p1"),  # calm again: 2 ms
            (4.0, "start", "sigstop"),
            (4.5, "end", "sigstop"),
        ]
    )
    kill, stop = fault_timings(history)
    assert (kill.kind, kill.outage, kill.recovery) == ("sigkill", 1.0, 0.5)
    assert (stop.kind, stop.recovery) == ("sigstop", None)
    latencies = summarize(history).latencies
    assert sorted(round(value, 3) for value in latencies.calm) == [0.002, 0.01]
    assert [round(value, 3) for value in latencies.during_faults] == [1.4]


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..4 is 2, p99 of 1..100 is 99, and one value is every percentile."""
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0
    assert percentile([7.0], 0.01) == percentile([7.0], 0.99) == 7.0


def test_calls_in_overlapping_fault_windows_count_as_during_faults() -> None:
    """A call invoked in the later part of two overlapping fault windows is during faults, and so
    is one invoked before the later fault's recovery; one invoked after both recovered is calm."""
    history = _timed_history(
        [
            (1.0, "start", "sigstop"),
            (2.0, "start", "db-lock"),
            (3.0, "end", "sigstop"),
            (4.0, "invoke", "p1"),
            (4.1, "ok", "p1"),  # after the stop's window, inside the lock's: during
            (5.0, "end", "db-lock"),
            (6.0, "invoke", "p1"),
            (6.2, "ok", "p1"),  # the lock's recovery: the first acknowledgement after its end
            (7.0, "invoke", "p1"),
            (7.3, "ok", "p1"),  # both ended and recovered: calm
        ]
    )
    latencies = summarize(history).latencies
    assert [round(value, 3) for value in latencies.during_faults] == [0.1, 0.2]
    assert [round(value, 3) for value in latencies.calm] == [0.3]
