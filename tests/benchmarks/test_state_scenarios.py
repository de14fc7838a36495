"""The memory, activation and recovery scenarios: their quick variants run and check their answers.

Nothing here compares speeds: a loaded machine must not fail a test.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from actorstate.config import Config
from actorstate.model.codec import decode_session, encode_session
from benchmarks import databases
from benchmarks.baselines.lock_dict import LockedSessions
from benchmarks.probes import memory as memory_probe
from benchmarks.scenarios import activation, memory, recovery
from benchmarks.suite import BenchmarkFailure

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("memory", "activation", "recovery")
# Metrics each system reports, by scenario (the dict baseline has no accounted bytes).
EXPECTED = {
    "memory": {
        "actorstate": {"rss_per_session", "accounted_per_session"},
        "dict + lock per session": {"rss_per_session"},
    },
    "activation": {
        activation.ACTORSTATE: {"rate", "p50_ms", "p99_ms", "p999_ms"},
        activation.SELECT: {"rate", "p50_ms", "p99_ms", "p999_ms"},
    },
    "recovery": {
        recovery.ACTORSTATE: {"open_ms", "first_call_ms"},
        recovery.LOAD_ALL: {"open_ms", "first_call_ms"},
    },
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run of the three scenarios on both backends, in one process; its results.json."""
    out = tmp_path_factory.mktemp("state-scenarios") / "run"
    scenario_args = [arg for name in SCENARIOS for arg in ("--scenario", name)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", *scenario_args, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


@pytest.mark.slow
def test_every_system_has_its_figures_on_both_backends(quick_run: dict[str, Any]) -> None:
    """Each scenario has cases on trio and asyncio; in each, every system ran once per repetition,
    every run carries the system's figures as positive numbers, and no case failed."""
    assert list(quick_run["scenarios"]) == list(SCENARIOS)
    reps = quick_run["options"]["reps"]
    for name, scenario in quick_run["scenarios"].items():
        assert {case["params"]["backend"] for case in scenario["cases"]} == {"trio", "asyncio"}, name
        for case in scenario["cases"]:
            assert "failure" not in case, case["failure"]
            assert set(case["systems"]) == set(EXPECTED[name]), name
            for system_name, system in case["systems"].items():
                assert len(system["runs"]) == reps, (name, system_name)
                for run in system["runs"]:
                    assert EXPECTED[name][system_name] <= set(run), (name, system_name, run)
                    assert all(run[key] > 0 for key in EXPECTED[name][system_name]), (name, run)


@pytest.mark.slow
def test_the_quick_sizes_are_measured(quick_run: dict[str, Any]) -> None:
    """Memory measures 1,000 and 10,000 sessions per backend; activation and recovery each
    measure one database per backend, activation with one activation per planned call."""
    scenarios = quick_run["scenarios"]
    memory_sizes = sorted({case["params"]["sessions"] for case in scenarios["memory"]["cases"]})
    assert memory_sizes == [1_000, 10_000]
    assert len(scenarios["memory"]["cases"]) == 4
    for case in scenarios["activation"]["cases"]:
        for system in case["systems"].values():
            assert all(run["calls"] == case["params"]["calls"] for run in system["runs"])
    assert len(scenarios["recovery"]["cases"]) == 2


def tamper(path: str) -> None:
    """Add one to every session's counter in the file, as a system that answered wrongly would."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        rows = db.execute("SELECT id, state FROM sessions").fetchall()
        db.execute("BEGIN")
        for session_id, blob in rows:
            state = decode_session(blob)
            state.metadata["counter"] += 1
            db.execute("UPDATE sessions SET state = ? WHERE id = ?", (encode_session(state), session_id))
        db.execute("COMMIT")
    finally:
        db.close()


SESSIONS, CALLS = 200, 50


@pytest.fixture
def small_database(tmp_path: Path) -> str:
    """A database of 200 sessions built the way the scenarios build theirs."""
    return databases.database(str(tmp_path), SESSIONS)


@pytest.mark.parametrize("system", list(activation.SYSTEMS))
def test_activation_answers_right_on_a_sound_database(small_database: str, system: str) -> None:
    """On the database as built, both systems' answers pass the check (so a failure below is the tampering)."""
    figures = activation.measure_activation(system, small_database, SESSIONS, CALLS, 1, "trio")
    assert figures["calls"] == CALLS


@pytest.mark.parametrize("system", list(activation.SYSTEMS))
def test_activation_fails_when_the_counters_are_wrong(small_database: str, system: str) -> None:
    """With every stored counter off by one, each system's activation run raises BenchmarkFailure."""
    tamper(small_database)
    with pytest.raises(BenchmarkFailure, match="answered counter"):
        activation.measure_activation(system, small_database, SESSIONS, CALLS, 1, "asyncio")


@pytest.mark.parametrize("system", [recovery.ACTORSTATE, recovery.LOAD_ALL])
def test_recovery_fails_when_the_first_answer_is_wrong(small_database: str, system: str) -> None:
    """Sound, the first answer passes; with every stored counter off by one, the recovery run
    of each system raises BenchmarkFailure."""
    assert recovery.measure_recovery(system, small_database, SESSIONS, 2, "trio")["first_call_ms"] > 0
    tamper(small_database)
    with pytest.raises(BenchmarkFailure, match="answered counter"):
        recovery.measure_recovery(system, small_database, SESSIONS, 2, "trio")


def test_recovery_baseline_fails_when_sessions_are_missing(small_database: str) -> None:
    """The load-everything baseline must load every session: a database missing rows fails it."""
    db = sqlite3.connect(small_database, isolation_level=None)
    try:
        db.execute("DELETE FROM sessions WHERE id NOT IN (?)", (databases.session_id(0),))
    finally:
        db.close()
    with pytest.raises(BenchmarkFailure, match="loaded 1 sessions of 200"):
        recovery.measure_recovery(recovery.LOAD_ALL, small_database, SESSIONS, 0, "trio")


def test_memory_probe_reports_sessions_that_are_not_resident(monkeypatch: pytest.MonkeyPatch) -> None:
    """When actorstate may keep only 10 of 100 sessions resident, the probe reports a failure
    instead of figures (a small RSS with sessions passivated would be a wrong answer)."""
    monkeypatch.setattr(memory_probe, "config_for", lambda sessions: Config(max_resident=10))
    found = anyio.run(memory_probe.measure_actorstate, 100, backend="trio")
    assert "sessions resident" in found["failure"]


def test_memory_probe_reports_a_wrong_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the dict baseline's increments do nothing, the probe reports the sampled counter
    that is not 1."""

    async def lost(self: LockedSessions, session_id: str, key: str = "counter", by: int = 1) -> int:
        return 0

    monkeypatch.setattr(LockedSessions, "increment", lost)
    found = anyio.run(memory_probe.measure_locks, 100, backend="trio")
    assert "counter is None" in found["failure"]


def test_memory_scenario_turns_a_failed_probe_into_benchmark_failure() -> None:
    """A probe process that dies (no sessions to divide by) is a BenchmarkFailure naming the system."""
    with pytest.raises(BenchmarkFailure, match="actorstate: the probe exited"):
        memory.probe(memory.ACTORSTATE, 0, "trio")
