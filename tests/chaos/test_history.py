"""The history model: recording, pairing invocations with completions, JSON lines both ways."""

from __future__ import annotations

import io

import pytest

from actorstate.chaos import FaultPhase, History, HistoryError, HistoryRecorder, Phase
from actorstate.chaos.history import FaultEvent, Operation, record_from_json

from .scripts import Script


def test_recorder_numbers_records_and_stamps_times() -> None:
    """Every record gets the next index and both clocks' readings."""
    walls = iter([10.0, 11.0, 12.0])
    monos = iter([1.0, 2.0, 3.0])
    recorder = HistoryRecorder(wall_clock=lambda: next(walls), monotonic_clock=lambda: next(monos))
    call = recorder.invoke("p1", "increment_counter", "s1", {"by": 2}, client="alice")
    fault = recorder.fault_start("sigkill", "server-1")
    done = recorder.ok(call, {"value": 2})
    assert [r.index for r in recorder.history()] == [0, 1, 2]
    assert (call.wall_time, call.monotonic_time) == (10.0, 1.0)
    assert (fault.wall_time, done.monotonic_time) == (11.0, 3.0)
    assert done.arguments == {"by": 2}
    assert done.client == "alice"
    assert done.phase is Phase.OK


def test_calls_pair_each_invocation_with_its_own_completion() -> None:
    """Interleaved calls of two processes pair by process; an unanswered call counts as info."""
    script = Script()
    a = script.invoke("p1", "add_context", "s1", key="k", value="a")
    b = script.invoke("p2", "add_context", "s1", key="k", value="b")
    script.ok(b, {"totalEvents": 1})
    c = script.invoke("p2", "get_context", "s1")
    script.fail(c)
    script.ok(a, {"totalEvents": 2})
    script.invoke("p3", "end_session", "s1")
    calls = script.history().calls
    assert [(call.index, call.phase, call.completed_at) for call in calls] == [
        (a.index, Phase.OK, 5),
        (b.index, Phase.OK, 2),
        (c.index, Phase.FAIL, 4),
        (6, Phase.INFO, float("inf")),
    ]
    assert calls[1].precedes(calls[2])
    assert not calls[0].precedes(calls[2])
    assert calls[0].result == {"totalEvents": 2}
    assert calls[2].result is None


def test_info_never_precedes_anything() -> None:
    """A call with an unknown outcome may take effect at any later time, so it precedes nothing."""
    script = Script()
    first = script.add("s1", "a", None)
    script.add("s1", "b", 1)
    calls = script.history().calls
    assert calls[0].index == first
    assert not calls[0].precedes(calls[1])


def test_jsonl_round_trip_keeps_every_field() -> None:
    """A history written as JSON lines reads back equal, faults and unknown outcomes included."""
    script = Script()
    script.create("s1", "alice")
    script.add("s1", "é ✓", 1)
    start = script.recorder.fault_start("sigstop", "server-1", seconds=2.5)
    script.add("s1", "b", None)
    script.recorder.fault_end(start)
    script.read("s1", 1, ["é ✓"])
    history = script.history()
    stream = io.StringIO()
    history.write_jsonl(stream)
    text = stream.getvalue()
    assert text == history.to_jsonl()
    assert text.count("\n") == len(history)
    again = History.read_jsonl(io.StringIO("\n" + text + "\n"))
    assert again == history
    fault = again.records[start.index]
    assert isinstance(fault, FaultEvent)
    assert fault.phase is FaultPhase.START
    assert fault.details == {"seconds": 2.5}
    assert isinstance(again.records[2], Operation)
    assert again.records[2].phase is Phase.INVOKE
    assert again.records[3] == history.records[3]


def test_recorder_sink_sees_each_record_as_made() -> None:
    """The sink gets every record at once, so a runner can stream its history to disk."""
    seen: list[int] = []
    recorder = HistoryRecorder(sink=lambda record: seen.append(record.index))
    call = recorder.invoke("p1", "get_context", "s1")
    assert seen == [0]
    recorder.info(call, "connection lost")
    assert seen == [0, 1]
    assert recorder.outstanding == []


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('{"type": "op", "index": 0}', "line 1: not a op record"),
        ('{"type": "nope"}', "type must be"),
        ("[1]", "not a JSON object"),
        ("{", "not JSON"),
    ],
)
def test_bad_lines_are_refused_with_their_line(text: str, complaint: str) -> None:
    """A line that is not a record is named in the error."""
    with pytest.raises(HistoryError, match=complaint):
        History.from_jsonl(text)


def test_a_process_has_one_call_outstanding() -> None:
    """Invoking twice without completing, or completing twice, breaks the model and is refused."""
    recorder = HistoryRecorder()
    call = recorder.invoke("p1", "get_context", "s1")
    with pytest.raises(HistoryError, match="outstanding"):
        recorder.invoke("p1", "get_context", "s1")
    recorder.ok(call, {})
    with pytest.raises(HistoryError, match="not outstanding"):
        recorder.ok(call, {})


def test_history_refuses_a_completion_without_invocation() -> None:
    """A history read from elsewhere must pair up; indexes must count from 0."""
    done = record_from_json(
        {"type": "op", "index": 0, "phase": "ok", "process": "p1", "tool": "t", "session": None}
    )
    with pytest.raises(HistoryError, match="no outstanding invocation"):
        History([done])
    with pytest.raises(HistoryError, match="indexes must be"):
        History([FaultEvent(3, FaultPhase.START, "sigkill", "server-1")])


def test_faults_around_a_window() -> None:
    """Faults inside the window, faults active when it opens, else the last fault before it."""
    script = Script()
    old_start, old_end = script.fault("sigterm")
    calm = script.add("s1", "calm", None)
    active = script.recorder.fault_start("sigstop", "server-1")
    first = script.add("s1", "a", 1)
    inside, _ = script.fault("disk-full", "db")
    last = script.add("s1", "b", 2)
    script.recorder.fault_end(active)
    history = script.history()
    around = history.faults_around(first, last + 1)
    assert [f.index for f in around] == [active.index, inside.index, inside.index + 1]
    assert history.faults_around(calm, calm + 1) == (old_end,)
    assert old_start not in around
