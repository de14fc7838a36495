"""The cluster scenario runs end to end on a few calls: one, two and three actorstate nodes on one
PostgreSQL and the commit-per-call baseline, counters checked exact, a session's move after its
owner's kill timed; nothing here compares speeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scenarios.cluster import BASELINE, NODES, system_name

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_system_is_measured_with_its_figures(tmp_path: Path) -> None:
    """One quick repetition: each system has a run with rate, latencies and CPU per call, the
    multi-node systems both move times (a kill at any moment, and one right after a renewal,
    with the lease then left) and the single node none, the case names actorstate's three
    systems as ours, and no case failed."""
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--reps",
            "1",
            "--scenario",
            "cluster",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    results = json.loads((out / "results.json").read_text())
    (case,) = results["scenarios"]["cluster"]["cases"]
    assert "failure" not in case
    ours = [system_name(nodes) for nodes in NODES]
    assert set(case["systems"]) == {*ours, BASELINE}
    for name, system in case["systems"].items():
        (run,) = system["runs"]
        assert {"rate", "p50_ms", "p99_ms", "cpu_us"} <= set(run)
        assert run["rate"] > 0
        moves = {"move_s", "move_worst_s", "lease_left_s"}
        assert (moves <= set(run)) == (name in ours[1:])
        assert not moves & set(run) or name in ours[1:]
        if name in ours[1:]:
            assert run["move_s"] > 0
            assert run["move_worst_s"] > 0
            assert run["lease_left_s"] > 0
    assert case["ours"] == ours
