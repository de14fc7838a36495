"""The chaos runner: a smoke run against a real server with every fault kind, and its seeded plan."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import TYPE_CHECKING

from actorstate.chaos import FaultPhase, History, Operation, Phase
from actorstate.chaos.faults import FAULT_KINDS, RECORDED_KIND, plan_faults
from actorstate.chaos.runner import RunOptions, plan_run

if TYPE_CHECKING:
    from pathlib import Path

# Generous: a hung run fails the test instead of the suite; nothing here times the run.
_RUN_LIMIT = 300


def test_smoke_run_with_every_fault_passes(tmp_path: Path) -> None:
    """An 8-second commit-mode run under kill, term and stop exits 0, injects each kind, and
    writes a history with acknowledged calls before every fault and after every recovery."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "actorstate", "chaos", "--seed", "1", "--duration", "8"]
    run = subprocess.run(
        [*command, "--faults", "kill,term,stop", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=_RUN_LIMIT,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    replay = "seed 1; replay: actorstate chaos --seed 1 --duration 8 "
    assert lines[0].startswith(replay)
    assert lines[-1] == lines[0]
    assert "violations: 0" in lines

    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    starts = [fault for fault in history.faults if fault.phase is FaultPhase.START]
    ends = [fault for fault in history.faults if fault.phase is FaultPhase.END]
    assert {fault.kind for fault in starts} == {RECORDED_KIND[kind] for kind in ("kill", "term", "stop")}
    assert len(ends) == len(starts)
    acknowledged = [
        record.index for record in history if isinstance(record, Operation) and record.phase is Phase.OK
    ]
    for start, end in zip(starts, ends, strict=True):
        assert end.kind == start.kind
        assert any(index < start.index for index in acknowledged), f"nothing acknowledged before {start}"
        assert any(index > end.index for index in acknowledged), f"nothing acknowledged after {end}"
    # Every session created was read back at the end, by the final reader.
    created = [c for c in history.calls if c.tool == "create_session" and c.phase is Phase.OK]
    final = {c.session for c in history.calls if c.process == "final" and c.tool == "get_context"}
    assert {c.session for c in created} == final


def _run_chaos(out: Path, seed: int, duration: int, faults: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "actorstate", "chaos", "--seed", str(seed), "--duration", str(duration)]
    return subprocess.run(
        [*command, "--faults", faults, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=_RUN_LIMIT,
        check=False,
    )


def test_smoke_run_with_a_locked_database_passes(tmp_path: Path) -> None:
    """A commit-mode run with the database's write lock held by the runner past the server's busy
    timeout exits 0 with no violation: the lock is taken and released, writes caught by it are
    recorded as unknown outcomes, and the server acknowledges writes again after it."""
    out = tmp_path / "run"
    run = _run_chaos(out, 2, 6, "lock")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "violations: 0" in run.stdout.splitlines()
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    starts = [fault for fault in history.faults if fault.phase is FaultPhase.START]
    ends = [fault for fault in history.faults if fault.phase is FaultPhase.END]
    assert starts
    assert {fault.kind for fault in starts} == {RECORDED_KIND["lock"]}
    assert len(ends) == len(starts)
    for end in ends:
        assert end.details["held"] > 5.0  # past the default busy timeout
    writes = ("add_context", "record_action", "set_preference", "increment_counter")
    last_end = ends[-1].index
    assert any(
        call.tool in writes and call.phase is Phase.OK and call.index > last_end for call in history.calls
    ), "no write acknowledged after the lock was released"


def test_smoke_run_with_a_second_server_passes(tmp_path: Path) -> None:
    """A commit-mode run with a second server on the same database, taking every other call of
    each worker on the same sessions, records those calls under its own process names, sees the
    second server exit 0 at end of input, and finds no violation."""
    out = tmp_path / "run"
    run = _run_chaos(out, 3, 6, "second")
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    ends = [fault for fault in history.faults if fault.phase is FaultPhase.END]
    assert ends
    assert {fault.kind for fault in ends} == {RECORDED_KIND["second"]}
    assert all(fault.details["exit_status"] == 0 for fault in ends)
    through_second = [call for call in history.calls if "@second-" in call.process]
    assert any(call.phase is Phase.OK and call.tool == "get_context" for call in through_second)
    assert "problem:" not in run.stdout
    assert run.returncode == 0, run.stdout + run.stderr
    assert "violations: 0" in run.stdout.splitlines()


def test_smoke_run_with_a_full_disk_passes(tmp_path: Path) -> None:
    """A commit-mode run whose database's own small file system is filled up exits 0 with no
    violation: writes caught by the full disk fail with SQLite's real "disk is full" and are
    recorded as unknown outcomes, and writes are acknowledged again once there is room. The
    database is kept next to the history after the file system is gone."""
    out = tmp_path / "run"
    run = _run_chaos(out, 6, 6, "full")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "violations: 0" in run.stdout.splitlines()
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    ends = [fault for fault in history.faults if fault.phase is FaultPhase.END]
    assert ends
    assert {fault.kind for fault in ends} == {RECORDED_KIND["full"]}
    assert all(fault.details["filled_bytes"] > 0 for fault in ends)
    full = [
        call
        for call in history.calls
        if call.completion is not None and "disk is full" in (call.completion.error or "")
    ]
    assert full, "no write met the full disk"
    writes = ("add_context", "record_action", "set_preference", "increment_counter")
    assert any(
        call.tool in writes and call.phase is Phase.OK and call.index > ends[-1].index
        for call in history.calls
    ), "no write acknowledged after the disk had room again"
    assert (out / "chaos.db").is_file()


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
    command = [sys.executable, "-m", "actorstate", "chaos", "--seed", "6", "--duration", "6"]
    run = subprocess.run(
        [*command, "--faults", "full", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=_RUN_LIMIT,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
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


def test_smoke_run_with_store_io_errors_slow_commits_and_an_eviction_storm_passes(tmp_path: Path) -> None:
    """A commit-mode run whose server's fault seam fails commits, slows them and squeezes the
    resident sessions exits 0 with no violation: commits caught by the I/O errors fail with the
    injected error, the squeeze makes the server load sessions again and again, and writes are
    acknowledged after every fault."""
    out = tmp_path / "run"
    run = _run_chaos(out, 4, 8, "ioerror,slow,evict")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "problem:" not in run.stdout
    assert "violations: 0" in run.stdout.splitlines()
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    ends = {fault.kind: fault for fault in history.faults if fault.phase is FaultPhase.END}
    assert set(ends) == {RECORDED_KIND[kind] for kind in ("ioerror", "slow", "evict")}
    assert all(fault.details["sent"] for fault in ends.values())
    # More loads in a second or two than there are sessions: evicted and loaded again, repeatedly.
    assert ends[RECORDED_KIND["evict"]].details["activations"] > 32
    injected = [
        call
        for call in history.calls
        if call.completion is not None and "injected through the fault seam" in (call.completion.error or "")
    ]
    assert injected, "no commit met the injected I/O error"
    writes = ("add_context", "record_action", "set_preference", "increment_counter")
    last_end = max(fault.index for fault in ends.values())
    assert any(
        call.tool in writes and call.phase is Phase.OK and call.index > last_end for call in history.calls
    ), "no write acknowledged after the faults"


def test_smoke_run_with_bad_input_a_flood_and_dropped_calls_passes(tmp_path: Path) -> None:
    """A commit-mode run with bad input on the wire, a flood of calls on one session and calls
    dropped by their clients exits 0 with no violation and no problem: every bad line the server
    could tell by its id got an error, every flood call is in the history, and dropped calls are
    recorded as unknown outcomes, each followed by its retry."""
    out = tmp_path / "run"
    run = _run_chaos(out, 5, 6, "wire,flood,drop")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "problem:" not in run.stdout
    assert "violations: 0" in run.stdout.splitlines()
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    ends = {fault.kind: fault for fault in history.faults if fault.phase is FaultPhase.END}
    starts = {fault.kind: fault for fault in history.faults if fault.phase is FaultPhase.START}
    assert set(ends) == {RECORDED_KIND[kind] for kind in ("wire", "flood", "drop")}
    sent = ends[RECORDED_KIND["wire"]].details["sent"]
    assert sum(sent.values()) > 0
    flood = [call for call in history.calls if call.process.startswith("flood")]
    assert len(flood) == starts[RECORDED_KIND["flood"]].details["calls"]
    assert any(call.phase is Phase.OK for call in flood)
    dropped = [
        call
        for call in history.calls
        if call.completion is not None and "dropped by its client" in (call.completion.error or "")
    ]
    assert dropped, "no call was dropped"
    for call in dropped:
        retries = [
            later
            for later in history.calls
            if later.process == call.process and later.index > call.index and later.tool == call.tool
        ]
        assert retries, f"dropped call {call.index} was not retried"


def test_fault_kinds_are_recorded_under_distinct_names() -> None:
    """Every fault kind has its own name in the history, so a report tells them apart."""
    assert set(RECORDED_KIND) == set(FAULT_KINDS)
    assert len(set(RECORDED_KIND.values())) == len(FAULT_KINDS)


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
