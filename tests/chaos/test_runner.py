"""The chaos runner: a smoke run against a real server with every fault kind, and its seeded plan."""

from __future__ import annotations

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
    assert {fault.kind for fault in starts} == {RECORDED_KIND[kind] for kind in FAULT_KINDS}
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
    """Whatever the seed, each selected fault kind is due at least once inside the run, and stops
    last longer than the clients' timeout."""
    for seed in range(50):
        for kinds in (("kill",), ("stop", "term"), FAULT_KINDS):
            faults = plan_faults(random.Random(seed), kinds, 8.0, timeout=1.0)
            assert {fault.kind for fault in faults} == set(kinds)
            assert all(0 < fault.at < 8.0 for fault in faults)
            assert all(fault.hold > 1.0 for fault in faults if fault.kind == "stop")
