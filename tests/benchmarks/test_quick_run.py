"""``python -m benchmarks --quick`` on the in-process and SQLite scenarios: it runs, checks the
answers, and writes what it promises (results.json, report.md, plots); --compare reads two runs.

Nothing here compares speeds: a loaded machine must not fail a test. The
scenarios themselves raise when a counter is not exact, and the run's exit
status says so.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from benchmarks.databases import check_stored, make_sessions
from benchmarks.suite import BenchmarkFailure

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("contention", "spread", "durable", "ack-latency", "eviction")


def run_suite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One quick run of the scenarios, on both backends: its folder, results.json and stdout."""
    out = tmp_path_factory.mktemp("bench") / "run"
    scenario_args = [arg for name in SCENARIOS for arg in ("--scenario", name)]
    done = run_suite("--quick", *scenario_args, "--out", str(out))
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    return out, json.loads((out / "results.json").read_text()), done.stdout


@pytest.mark.slow
def test_every_case_measures_every_system_on_both_backends(
    quick_run: tuple[Path, dict[str, Any], str],
) -> None:
    """Each scenario has cases on trio and on asyncio; in each, every system has one run per
    repetition carrying every metric the scenario declares, and no case failed."""
    _, results, _ = quick_run
    assert list(results["scenarios"]) == list(SCENARIOS)
    reps = results["options"]["reps"]
    for name, scenario in results["scenarios"].items():
        assert {case["params"]["backend"] for case in scenario["cases"]} == {"trio", "asyncio"}, name
        keys = [metric["key"] for metric in scenario["metrics"]]
        for case in scenario["cases"]:
            assert "failure" not in case, case["failure"]
            assert case["comparisons"], name
            for system_name, system in case["systems"].items():
                assert len(system["runs"]) == reps, (name, system_name)
                for run in system["runs"]:
                    assert set(keys) <= set(run), (name, system_name, run)


@pytest.mark.slow
def test_results_keep_the_machine_and_the_report_and_plots_are_written(
    quick_run: tuple[Path, dict[str, Any], str],
) -> None:
    """results.json names the CPU, cores, Python, the git commit and the work folder's filesystem
    (named on the report's machine line too); report.md has a section per scenario with its
    table and its plot, and each plot is a PNG file."""
    out, results, stdout = quick_run
    machine = results["machine"]
    text = (out / "report.md").read_text()
    assert machine["cores"] >= 1
    assert machine["cpu"]
    assert machine["python"].count(".") == 2
    assert machine["packages"]["actorstate"]
    # The commit measured: 40 hex digits, +dirty when actorstate/ or benchmarks/ differ from it.
    assert machine["git_commit"]
    assert len(machine["git_commit"].removesuffix("+dirty")) == 40
    assert machine["workdir_fs"]
    assert f"work folder on {machine['workdir_fs']}" in text
    assert text in stdout  # the run prints its report
    for name in SCENARIOS:
        assert f"(`{name}`)" in text
        assert f"![{name}]({name}.png)" in text
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compare_flags_a_regression_between_two_result_folders(
    quick_run: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    """--compare OLD NEW on a run and itself flags nothing and exits 0; against a copy in which
    actorstate's contention throughput is a tenth, it flags the regression and exits 1."""
    out, results, _ = quick_run
    same = run_suite("--compare", str(out), str(out))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "REGRESSION" not in same.stdout
    slower = copy.deepcopy(results)
    for case in slower["scenarios"]["contention"]["cases"]:
        for run in case["systems"]["actorstate"]["runs"]:
            run["rate"] /= 10
    (tmp_path / "results.json").write_text(json.dumps(slower))
    worse = run_suite("--compare", str(out), str(tmp_path))
    assert worse.returncode == 1, worse.stdout + worse.stderr
    flagged = [line for line in worse.stdout.splitlines() if "REGRESSION" in line]
    assert flagged
    assert all("actorstate" in line and "rate" in line for line in flagged), flagged


def test_a_write_acknowledged_but_missing_from_the_file_fails_the_check(tmp_path: Path) -> None:
    """The durable scenarios read the counters back from the database file: a write counted as
    acknowledged that the file does not hold is a BenchmarkFailure naming the session."""
    path = str(tmp_path / "sessions.db")
    ids = make_sessions(path, 3)
    check_stored(path, ids, [0, 0, 0], "system")  # nothing written, nothing expected: passes

    async def increment_first() -> None:
        import actorstate

        async with actorstate.open_state(path) as state:
            await state.session(ids[0], "bench").increment()

    anyio.run(increment_first)
    check_stored(path, ids, [1, 0, 0], "system")
    with pytest.raises(BenchmarkFailure, match=f"session {ids[1]} holds counter 0 in the database after 1"):
        check_stored(path, ids, [1, 1, 0], "system")
