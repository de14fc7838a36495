"""The chaos runner: a smoke run against a real server with every fault kind, and its seeded plan."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from actorstate.chaos import FaultPhase, History, Operation, Phase
from actorstate.chaos.faults import ALL_FAULT_KINDS, FAULT_KINDS, RECORDED_KIND, plan_faults
from actorstate.chaos.runner import RunOptions, plan_run

if TYPE_CHECKING:
    from pathlib import Path

    from actorstate.chaos.history import Call, FaultEvent

# Generous: a hung run fails the test instead of the suite; nothing here times the run.
_RUN_LIMIT = 300


@dataclasses.dataclass(frozen=True)
class _Run:
    process: subprocess.CompletedProcess[str]
    history: History
    out: Path

    def ends(self, kind: str) -> list[FaultEvent]:
        return [f for f in self.history.faults if f.phase is FaultPhase.END and f.kind == RECORDED_KIND[kind]]

    def starts(self, kind: str) -> list[FaultEvent]:
        return [
            f for f in self.history.faults if f.phase is FaultPhase.START and f.kind == RECORDED_KIND[kind]
        ]

    def errors(self, text: str) -> list[Call]:
        """Calls that completed with an error holding ``text``."""
        return [
            c for c in self.history.calls if c.completion is not None and text in (c.completion.error or "")
        ]

    def write_acknowledged_after(self, index: int) -> bool:
        return any(c.tool in _WRITES and c.phase is Phase.OK and c.index > index for c in self.history.calls)


_WRITES = ("add_context", "record_action", "set_preference", "increment_counter")
# Long enough for one fault of every kind with calm between them (the run goes on until the last ends).
_SMOKE_SECONDS = 20


def _run_chaos(
    out: Path, seed: int, duration: int, faults: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "actorstate", "chaos", "--seed", str(seed), "--duration", str(duration)]
    return subprocess.run(
        [*command, *(["--faults", faults] if faults is not None else []), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=_RUN_LIMIT,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def every_fault(tmp_path_factory: pytest.TempPathFactory) -> _Run:
    """One commit-mode run with the default faults: every kind, at least once each."""
    out = tmp_path_factory.mktemp("chaos") / "run"
    process = _run_chaos(out, 1, _SMOKE_SECONDS)
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    return _Run(process, history, out)


def test_a_run_with_every_fault_kind_passes(every_fault: _Run) -> None:
    """A commit-mode run with the default faults injects every kind, exits 0 with no violation and
    no problem, prints the replay line first and last, has acknowledged calls before every fault
    and after every recovery, and reads back every session it created."""
    run = every_fault.process
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"seed 1; replay: actorstate chaos --seed 1 --duration {_SMOKE_SECONDS} ")
    assert lines[-1] == lines[0]
    assert "violations: 0" in lines
    assert "problem:" not in run.stdout
    history = every_fault.history
    starts = [fault for fault in history.faults if fault.phase is FaultPhase.START]
    ends = [fault for fault in history.faults if fault.phase is FaultPhase.END]
    assert {fault.kind for fault in starts} == {RECORDED_KIND[kind] for kind in FAULT_KINDS}
    assert len(ends) == len(starts)
    acknowledged = [
        record.index for record in history if isinstance(record, Operation) and record.phase is Phase.OK
    ]
    for start, end in zip(starts, ends, strict=True):
        assert end.kind == start.kind
        assert any(index < start.index for index in acknowledged), f"nothing acknowledged before {start}"
        assert any(index > end.index for index in acknowledged), f"nothing acknowledged after {end}"
    created = [c for c in history.calls if c.tool == "create_session" and c.phase is Phase.OK]
    final = {c.session for c in history.calls if c.process == "final" and c.tool == "get_context"}
    assert {c.session for c in created} == final


def test_the_lock_was_held_past_the_busy_timeout_and_writes_resumed(every_fault: _Run) -> None:
    """The runner's own connection held the database's write lock past the server's 5-second busy
    timeout, and the server acknowledged writes again after it was released."""
    [end] = every_fault.ends("lock")
    assert end.details["held"] > 5.0
    assert every_fault.write_acknowledged_after(end.index)


def test_the_second_server_took_calls_on_the_same_sessions_and_exited_cleanly(every_fault: _Run) -> None:
    """Calls went to the second server under its own process names, reads among them were
    acknowledged, and it exited 0 at end of input."""
    [end] = every_fault.ends("second")
    assert end.details["exit_status"] == 0
    through_second = [call for call in every_fault.history.calls if "@second-" in call.process]
    assert any(call.phase is Phase.OK and call.tool == "get_context" for call in through_second)


def test_the_full_disk_refused_writes_with_sqlites_own_error(every_fault: _Run) -> None:
    """The database's own small file system was filled; writes caught by it failed with SQLite's
    "database or disk is full", writes were acknowledged once there was room, and the database was
    copied out next to the history."""
    [start] = every_fault.starts("full")
    [end] = every_fault.ends("full")
    assert start.details["mode"] == "small file system"
    assert end.details["filled_bytes"] > 0
    assert every_fault.errors("database or disk is full"), "no write met the full disk"
    assert every_fault.write_acknowledged_after(end.index)
    assert (every_fault.out / "chaos.db").is_file()


def test_the_fault_seam_failed_and_slowed_commits_and_stormed_evictions(every_fault: _Run) -> None:
    """The server's seam took each command; commits met the injected I/O error; the squeeze made
    the server load more sessions in a second or two than there are (evicted and loaded again)."""
    for kind in ("ioerror", "slow", "evict"):
        [end] = every_fault.ends(kind)
        assert end.details["sent"], kind
    assert every_fault.errors("injected through the fault seam"), "no commit met the injected I/O error"
    [storm] = every_fault.ends("evict")
    assert storm.details["activations"] > 32


def test_bad_input_a_flood_and_dropped_calls_are_in_the_history(every_fault: _Run) -> None:
    """Bad lines were sent (each one answerable got its error, or the run would name a problem);
    every flood call is in the history; dropped calls are unknown outcomes, each followed by a
    retry under the same requestId (unless its session was being ended meanwhile)."""
    [wire] = every_fault.ends("wire")
    assert sum(wire.details["sent"].values()) > 0
    [flood_start] = every_fault.starts("flood")
    calls = every_fault.history.calls
    flood = [call for call in calls if call.process.startswith("flood")]
    assert len(flood) == flood_start.details["calls"]
    assert any(call.phase is Phase.OK for call in flood)
    dropped = every_fault.errors("dropped by its client")
    assert dropped, "no call was dropped"
    ending = {call.session: call.invoked_at for call in calls if call.tool == "end_session"}
    for call in dropped:
        if call.session in ending and ending[call.session] < call.completed_at:
            continue  # its session was being ended: the slot moves on, and the retry would go elsewhere
        key = call.arguments.get("requestId")
        assert any(
            later.index > call.index
            and later.process == call.process
            and later.arguments.get("requestId") == key
            for later in calls
        ), f"dropped call {call.index} was not retried under its requestId"


def test_without_mounting_the_page_limit_stands_in_for_a_full_disk(tmp_path: Path) -> None:
    """Where no small file system can be mounted (here: a ``mount`` that refuses, first on PATH),
    the full-disk fault caps the database's pages through the server's fault seam instead:
    writes fail with SQLite's own "database or disk is full", and the run still passes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    refusing = bin_dir / "mount"
    refusing.write_text('#!/bin/sh\necho "mount: permission denied" >&2\nexit 32\n')
    refusing.chmod(0o755)
    out = tmp_path / "run"
    run = _run_chaos(
        out, 6, 6, "full", env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "page limit stands in" in run.stderr
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    starts = [fault for fault in history.faults if fault.phase is FaultPhase.START]
    assert starts
    assert all(fault.details["mode"] == "page limit" for fault in starts)
    assert any(
        call.completion is not None and "database or disk is full" in (call.completion.error or "")
        for call in history.calls
    ), "no write met the page limit"


def test_fault_kinds_are_recorded_under_distinct_names() -> None:
    """Every fault kind has its own name in the history, so a report tells them apart."""
    assert set(RECORDED_KIND) == set(ALL_FAULT_KINDS)
    assert len(set(RECORDED_KIND.values())) == len(ALL_FAULT_KINDS)


def test_same_seed_same_plan(tmp_path: Path) -> None:
    """The seed alone decides the fault schedule and every worker's calls; another seed changes them."""
    options = RunOptions(seed=42, out=tmp_path, duration=20, clients=4, sessions=8)
    first, again = plan_run(options), plan_run(options)
    assert first.faults == again.faults
    assert first.first_calls(300) == again.first_calls(300)
    other = plan_run(RunOptions(seed=43, out=tmp_path, duration=20, clients=4, sessions=8))
    assert other.faults != first.faults
    assert other.first_calls(300) != first.first_calls(300)


def test_schedule_has_every_selected_kind_within_the_duration() -> None:
    """Whatever the seed, each selected fault kind is due at least once inside the run, stops last
    longer than the clients' timeout, and locks longer than the server's busy timeout."""
    for seed in range(50):
        for kinds in (("kill",), ("stop", "term"), ("lock", "second"), FAULT_KINDS):
            faults = plan_faults(random.Random(seed), kinds, 8.0, timeout=1.0, busy_timeout=5.0)
            assert {fault.kind for fault in faults} == set(kinds)
            assert all(0 < fault.at < 8.0 for fault in faults)
            assert all(fault.hold > 1.0 for fault in faults if fault.kind == "stop")
            assert all(fault.hold > 5.0 for fault in faults if fault.kind == "lock")
            assert all(fault.hold > 0 for fault in faults if fault.kind == "second")
