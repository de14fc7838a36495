"""The ``stdio`` benchmark scenario runs end to end: every server, the counter check, the ratios.

Each test runs ``python -m benchmarks --quick --reps 1 --scenario stdio``
in a subprocess and reads the results.json it wrote. Nothing here times
anything or compares speeds: a benchmark's numbers are for people to read,
and a loaded CI machine must not fail a test. These tests only check that
the scenario still runs every server through the workload, checks the
counters, fails on a wrong answer, and records what it promised.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.stdio_client import BARE_SDK, COMMIT, COMMIT_CEILING, MEMORY, NODE

REPO = Path(__file__).resolve().parents[2]
PYTHON_SERVERS = (COMMIT, COMMIT_CEILING, MEMORY, BARE_SDK)
METRICS = {"rate", "p50_ms", "p99_ms", "cpu_us", "start_ms"}
QUICK_CALLS = 1_000
ALL_COMPARISONS = [
    [COMMIT, NODE],
    [MEMORY, NODE],
    [COMMIT, BARE_SDK],
    [MEMORY, BARE_SDK],
    [COMMIT, MEMORY],
    [COMMIT_CEILING, NODE],
    [COMMIT, COMMIT_CEILING],
    [COMMIT_CEILING, MEMORY],
]
ARGUMENTS = ["--quick", "--reps", "1", "--scenario", "stdio", "--out"]

# Runs the suite with actorstate's memory mode swapped for a server that
# loses every fifth increment (the planted bugs of actorstate/planted.py
# all need a second process or idempotency keys, which this workload has
# neither of, so none breaks its counters).
MISCOUNTING = f"""
import sys
from benchmarks import cli, stdio_client

real = stdio_client.servers
fake = [sys.executable, {str(Path(__file__).with_name("miscounting_server.py"))!r}]

def servers(workdir):
    return [
        stdio_client.Server(server.name, lambda number: fake) if server.name == stdio_client.MEMORY else server
        for server in real(workdir)
    ]

stdio_client.servers = servers
sys.exit(cli.main(sys.argv[1:]))
"""


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env, check=False
    )


def _suite(out: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The stdio case of one quick run that must succeed, as results.json holds it."""
    done = _run([sys.executable, "-m", "benchmarks", *ARGUMENTS, str(out)], env)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    cases: list[dict[str, Any]] = json.loads((out / "results.json").read_text())["scenarios"]["stdio"][
        "cases"
    ]
    assert len(cases) == 1, cases
    return cases[0]


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run of the scenario with this machine's PATH: its one case from results.json."""
    return _suite(tmp_path_factory.mktemp("stdio"))


def _measured(system: dict[str, Any]) -> bool:
    """Whether ``system`` has one run with every metric, its calls all made and some increments checked."""
    if "runs" not in system or len(system["runs"]) != 1:
        return False
    (run,) = system["runs"]
    return METRICS <= set(run) and run["calls"] == QUICK_CALLS and run["increments"] > 0


@pytest.mark.slow
def test_every_server_is_measured(case: dict[str, Any]) -> None:
    """The four Python servers are measured, each run with the five metrics, its 1,000 calls made
    and its increments checked; Node.js is measured when node and npm are on PATH, else skipped with
    the reason."""
    assert case["params"] == {"in_flight": 32, "sessions": 50, "calls": QUICK_CALLS}
    assert "failure" not in case, case["failure"]
    for server in PYTHON_SERVERS:
        assert _measured(case["systems"][server]), case["systems"][server]
    if shutil.which("node") and shutil.which("npm"):
        assert _measured(case["systems"][NODE]), case["systems"][NODE]
    else:
        assert case["systems"][NODE] == {"skipped": "node and npm not found on PATH"}


@pytest.mark.slow
def test_comparisons(case: dict[str, Any]) -> None:
    """Node.js is the baseline, and the ratios are the old script's: commit and memory mode each
    against Node.js and the bare SDK, and commit against memory; then commit mode on a store costing
    nothing against Node.js, SQLite's commit mode and memory mode (those against Node.js only when
    it ran)."""
    assert case["baseline"] == NODE
    if "runs" in case["systems"][NODE]:
        assert case["comparisons"] == ALL_COMPARISONS
    else:
        assert case["comparisons"] == [pair for pair in ALL_COMPARISONS if NODE not in pair]


@pytest.mark.slow
def test_without_node_only_node_is_skipped(tmp_path: Path) -> None:
    """With neither node nor npm on PATH, Node.js is skipped with that reason, every Python server
    still runs (their commands use this interpreter's full path), and no ratio names Node.js."""
    empty = tmp_path / "bin"
    empty.mkdir()
    case = _suite(tmp_path / "out", {**os.environ, "PATH": str(empty)})
    assert case["systems"][NODE] == {"skipped": "node and npm not found on PATH"}
    for server in PYTHON_SERVERS:
        assert _measured(case["systems"][server]), case["systems"][server]
    assert case["comparisons"] == [pair for pair in ALL_COMPARISONS if NODE not in pair]


@pytest.mark.slow
def test_a_miscounting_server_fails_the_run(tmp_path: Path) -> None:
    """A server that loses increments fails the run: exit status 1, FAILED on stderr naming the
    server and the inexact counters, and the failure recorded in results.json and report.md."""
    out = tmp_path / "out"
    done = _run([sys.executable, "-c", MISCOUNTING, *ARGUMENTS, str(out)])
    assert done.returncode == 1, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    failed = [line for line in done.stderr.splitlines() if line.startswith("FAILED: stdio: ")]
    assert failed, done.stderr
    assert f"{MEMORY}: counters not exact on session" in failed[0], failed
    assert "increment_counter replies are not 1.." in failed[0], failed
    (case,) = json.loads((out / "results.json").read_text())["scenarios"]["stdio"]["cases"]
    assert case["failure"].startswith(f"{MEMORY}: counters not exact on session")
    assert "**Failures**" in (out / "report.md").read_text()
