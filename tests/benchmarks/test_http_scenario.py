"""The HTTP scenario runs end to end on a few calls: actorstate (commit and memory) with a token per
client and the bare SDK's HTTP server, counters checked exact; nothing here compares speeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scenarios.http import BARE_SDK, COMMIT, MEMORY

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_server_is_measured_with_its_figures(tmp_path: Path) -> None:
    """One quick repetition: each of the three servers has a run with rate, latencies and CPU per
    call, the case names actorstate's two systems as ours, and no case failed."""
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--reps", "1", "--scenario", "http", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    results = json.loads((out / "results.json").read_text())
    (case,) = results["scenarios"]["http"]["cases"]
    assert "failure" not in case
    assert set(case["systems"]) == {COMMIT, MEMORY, BARE_SDK}
    for system in case["systems"].values():
        (run,) = system["runs"]
        assert {"rate", "p50_ms", "p99_ms", "cpu_us"} <= set(run)
        assert run["rate"] > 0
    assert case["ours"] == [COMMIT, MEMORY]
