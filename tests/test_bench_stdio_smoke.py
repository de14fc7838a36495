"""benchmarks/bench_stdio.py runs end to end on a few calls: every server, the counter check, --json.

Nothing here times anything or compares speeds: a benchmark's numbers are
for people to read, and a loaded CI machine must not fail a test. These
tests only check that the benchmark still runs every server through the
issue's workload, checks the counters, and reports what it promised.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "bench_stdio.py"
PYTHON_SERVERS = ("actorstate (commit, SQLite)", "actorstate (memory)", "bare Python SDK (memory)")
NODE_SERVER = "Node.js TS SDK (memory)"
# Enough calls to touch every tool on many sessions, few enough to take seconds.
CALLS = "120"
# A number as the table prints it ("1,234", "5.85").
NUMBER = r"[\d,]+(?:\.\d+)?"


def _run_bench(json_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--calls", CALLS, "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )


def _skipped_because(stdout: str, server: str) -> str | None:
    """The reason the table gives for skipping ``server``, or None if it does not skip it."""
    found = re.search(rf"^{re.escape(server)}\s+skipped: (.+)$", stdout, re.MULTILINE)
    return found.group(1) if found else None


def _has_row(stdout: str, server: str) -> bool:
    """Whether the table has a measured row for ``server``: its name and five numbers."""
    return (
        re.search(rf"^{re.escape(server)}\s+{NUMBER}(?:\s+{NUMBER}){{4}}\s*$", stdout, re.MULTILINE)
        is not None
    )


@pytest.fixture(scope="module")
def bench(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One quick run of the benchmark with this machine's PATH, and the JSON it wrote."""
    json_path = tmp_path_factory.mktemp("bench") / "results.json"
    done = _run_bench(json_path)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done, json.loads(json_path.read_text())


@pytest.mark.slow
def test_every_server_gets_a_row(bench: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    """The three Python servers are measured; Node.js is measured when node and npm are on PATH,
    and otherwise its row says it was skipped and why."""
    done, _ = bench
    for server in PYTHON_SERVERS:
        assert _has_row(done.stdout, server), done.stdout
    if shutil.which("node") and shutil.which("npm"):
        assert _has_row(done.stdout, NODE_SERVER), done.stdout + done.stderr
    else:
        reason = _skipped_because(done.stdout, NODE_SERVER)
        assert reason is not None, done.stdout
        assert reason.endswith("not found on PATH")


@pytest.mark.slow
def test_counters_checked_exact(bench: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    """The run ends by saying every server's counters were exact, having checked some increments."""
    done, results = bench
    found = re.search(
        r"^counters exact: every run of all (\d+) servers \(([\d,]+) increments checked",
        done.stdout,
        re.MULTILINE,
    )
    assert found, done.stdout
    measured = sum("median" in server for server in results["servers"].values())
    assert int(found.group(1)) == measured
    assert int(found.group(2).replace(",", "")) > 0
    assert results["counters_exact"] is True


@pytest.mark.slow
def test_machine_line_and_json(bench: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    """The machine line names the cpus, Python and node; the JSON holds every server, each run's
    metrics, and the ratios whose servers ran."""
    done, results = bench
    assert re.search(r"^machine: .*\d+ cpus, Python \d+\.\d+\.\d+, node ", done.stdout, re.MULTILINE)
    assert set(results["servers"]) == {*PYTHON_SERVERS, NODE_SERVER}
    for name in PYTHON_SERVERS:
        (run,) = results["servers"][name]["runs"]
        assert set(run) >= {"rate", "p50_ms", "p99_ms", "cpu_us", "start_ms"}
    assert {"commit_vs_bare_sdk_cpu_per_call", "commit_vs_memory_p99"} <= set(results["ratios"])
    node_ran = "median" in results["servers"][NODE_SERVER]
    assert ("commit_vs_node_calls_per_s" in results["ratios"]) == node_ran
    assert "ratios (medians):" in done.stdout


@pytest.mark.slow
def test_without_node_only_node_is_skipped(tmp_path: Path) -> None:
    """With neither node nor npm on PATH, the Node.js row says so and every other server still runs."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    done = _run_bench(tmp_path / "results.json", env)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert _skipped_because(done.stdout, NODE_SERVER) == "node and npm not found on PATH", done.stdout
    for server in PYTHON_SERVERS:
        assert _has_row(done.stdout, server), done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["servers"][NODE_SERVER] == {"skipped": "node and npm not found on PATH"}
    assert "commit_vs_node_calls_per_s" not in results["ratios"]
