"""The report: a history's counts, and the window of history around a violation."""

from __future__ import annotations

import json

from actorstate.chaos import check_history, summarize, violation_window, window_jsonl
from actorstate.chaos.history import FaultEvent, Operation

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
