"""The in-process scenarios' own checks fail when they should: a lost or extra increment, an
acknowledged write not yet committed (actorstate's planted ack-before-commit bug), no churn where
churn is the point, a system that stops answering; and the drivers give every system the same
work and count latency from when a write was due. Nothing here compares speeds."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.testing

from actorstate.model.codec import decode_session, encode_session
from benchmarks import databases, drivers, stdio_client
from benchmarks.baselines.lock_dict import LockedSessions
from benchmarks.scenarios import contention, durable, eviction
from benchmarks.suite import BenchmarkFailure, Plan

REPO = Path(__file__).resolve().parents[2]


def tamper(path: str) -> None:
    """Add one to every session's counter in the file (0 when it has none), as a system that
    counted wrongly would have left it."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        rows = db.execute("SELECT id, state FROM sessions").fetchall()
        db.execute("BEGIN")
        for session_id, blob in rows:
            state = decode_session(blob)
            state.metadata["counter"] = state.metadata.get("counter", 0) + 1
            db.execute("UPDATE sessions SET state = ? WHERE id = ?", (encode_session(state), session_id))
        db.execute("COMMIT")
    finally:
        db.close()


def _plan(tmp_path: Path) -> Plan:
    return Plan(reps=1, warmup=0, quick=True, workdir=str(tmp_path))


# -- contention and spread ---------------------------------------------------------------


@pytest.mark.parametrize("sessions", [1, 20])  # contention: one hot session; spread: many
@pytest.mark.parametrize("system", list(contention.SYSTEMS))
def test_contention_fails_when_the_counters_are_off(
    monkeypatch: pytest.MonkeyPatch, sessions: int, system: str
) -> None:
    """Both systems pass as they are; when the planned increments are counted one too many on a
    session, each system's run (one hot session, or spread over many) raises BenchmarkFailure."""
    params = {"backend": "trio", "mix": "write-heavy", "sessions": sessions}
    case = contention.case("trio", "write-heavy", 10, sessions, 200, params)
    assert case.systems[system](0)["calls"] == 200
    real = contention.expected_counters

    def one_too_many(plan: list[list[contention.Call]], count: int) -> list[int]:
        counts = real(plan, count)
        counts[-1] += 1
        return counts

    monkeypatch.setattr(contention, "expected_counters", one_too_many)
    with pytest.raises(BenchmarkFailure, match=f"session {sessions - 1}'s counter"):
        case.systems[system](0)


def test_contention_fails_when_the_baseline_loses_increments(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dict baseline whose increments do nothing fails its run."""

    async def lost(self: LockedSessions, session_id: str, key: str = "counter", by: int = 1) -> int:
        return 0

    monkeypatch.setattr(LockedSessions, "increment", lost)
    case = contention.case("asyncio", "write-heavy", 10, 5, 100, {"sessions": 5})
    with pytest.raises(BenchmarkFailure, match="dict \\+ lock per session: session"):
        case.systems[contention.LOCKS](0)


# -- durable writes: the file is checked before the close -------------------------------------

PLANTED = """
import os
import re
import sys
from benchmarks.drivers import closed_loop
from benchmarks.scenarios import durable, eviction
from benchmarks.suite import BenchmarkFailure, Plan

os.makedirs(sys.argv[1])
plan = Plan(reps=1, warmup=0, quick=True, workdir=sys.argv[1])


def workload(number):
    writes = [index % 20 for index in range(40)]
    return writes, lambda write: closed_loop([writes[:20], writes[20:]], write)


source, ids = durable.template(plan, "eviction", 50)
runs = {
    "durable": durable.measure(plan, "trio", durable.GROUP, 50, workload),
    "eviction": eviction.Eviction._measure(
        plan, "trio", source, ids, 200, eviction.RESIDENT, eviction.run_actorstate, 2.0**30
    ),
}
for name, one in runs.items():
    try:
        one(0)
    except BenchmarkFailure as failure:
        print(name, "FAILED", failure)
    else:
        print(name, "PASSED")
"""


def _planted_run(tmp_path: Path, bug: str | None) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "ACTORSTATE_PLANTED_BUG"}
    if bug:
        environment["ACTORSTATE_PLANTED_BUG"] = bug
    done = subprocess.run(
        [sys.executable, "-c", PLANTED, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environment,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_an_acknowledged_write_not_yet_committed_fails_durable_and_eviction(tmp_path: Path) -> None:
    """With actorstate's planted ack-before-commit bug on (ACTORSTATE_PLANTED_BUG, read at import,
    so in a process of its own; it applies in process through open_state: replies go out at once
    and commits lag half a second), the durable and eviction runs fail: their check reads the file
    through a read-only connection after the writes and before the close, which would flush them.
    Without the bug, the same runs pass."""
    sound = _planted_run(tmp_path / "sound", None)
    assert "durable PASSED" in sound
    assert "eviction PASSED" in sound
    planted = _planted_run(tmp_path / "planted", "ack-before-commit")
    assert "durable FAILED group commit (actorstate): session" in planted, planted
    assert "eviction FAILED actorstate, all resident: session" in planted, planted
    assert "acknowledged increments" in planted


def test_durable_fails_when_the_file_holds_other_counters(tmp_path: Path) -> None:
    """Every stored counter one above what was written (a tampered template): each durable system
    fails its run, naming a session."""
    plan = _plan(tmp_path)
    source, _ = databases.template(plan, "durable", 20)
    tamper(source)

    def workload(number: int) -> tuple[list[int], durable.Drive]:
        writes = list(range(20))
        return writes, lambda write: drivers.closed_loop([writes], write)

    for name in durable.SYSTEMS:
        with pytest.raises(
            BenchmarkFailure, match=re.escape(name) + ": session .* holds counter 2 in the database after 1 "
        ):
            durable.measure(plan, "asyncio", name, 20, workload)(0)


def test_both_durable_systems_get_the_same_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the closed-loop durable scenario every system of a repetition makes the very same
    writes (same sessions, same count), so rates and percentiles rest on the same work."""
    made: dict[str, list[int]] = {}

    def recorder(name: str) -> Any:
        async def system(path: str, ids: list[str], drive: durable.Drive, check: durable.Check) -> Any:
            writes: list[int] = made.setdefault(name, [])

            async def write(index: int) -> None:
                writes.append(index)

            return await drive(write)

        return system

    monkeypatch.setattr(durable, "SYSTEMS", {name: recorder(name) for name in durable.SYSTEMS})
    (case,) = durable.Durable(backends=("trio",)).cases(_plan(tmp_path))
    for name in case.systems:
        case.systems[name](3)
    assert set(made) == {durable.GROUP, durable.SINGLE}
    assert sorted(made[durable.GROUP]) == sorted(made[durable.SINGLE])
    assert len(made[durable.GROUP]) == durable.CALLERS * durable.QUICK_EACH


# -- eviction -----------------------------------------------------------------------------


@pytest.fixture
def eviction_template(tmp_path: Path) -> tuple[Plan, str, list[str]]:
    plan = _plan(tmp_path)
    source, ids = databases.template(plan, "eviction", 40, 100)
    return plan, source, ids


def test_eviction_fails_when_the_file_holds_other_counters(
    eviction_template: tuple[Plan, str, list[str]],
) -> None:
    """A tampered template (every counter one up) fails each eviction system's run."""
    plan, source, ids = eviction_template
    tamper(source)
    for name, run in (
        (eviction.RESIDENT, eviction.run_actorstate),
        (eviction.NO_CACHE, eviction.run_no_cache),
    ):
        one = eviction.Eviction._measure(plan, "trio", source, ids, 200, name, run, 2.0**30)
        with pytest.raises(BenchmarkFailure, match=re.escape(name) + ": session .* holds counter"):
            one(0)


def test_eviction_fails_without_churn_where_churn_is_the_point(
    eviction_template: tuple[Plan, str, list[str]],
) -> None:
    """The over-budget system run with a budget that holds everything activates nothing during the
    run: a failure, not a result; the all-resident system passes with none, reporting 0 per call,
    and the no-cache design reports one activation per call."""
    plan, source, ids = eviction_template
    roomy = 2.0**30
    churn = eviction.Eviction._measure(
        plan, "trio", source, ids, 200, eviction.CHURN, eviction.run_actorstate, roomy
    )
    with pytest.raises(BenchmarkFailure, match="no session activated"):
        churn(0)
    resident = eviction.Eviction._measure(
        plan, "trio", source, ids, 200, eviction.RESIDENT, eviction.run_actorstate, roomy
    )
    assert resident(0)["activations_per_call"] == 0
    with pytest.raises(BenchmarkFailure, match="sessions activated during the run"):
        eviction.check_churn(eviction.RESIDENT, {"activations": 3.0})
    eviction.check_churn(eviction.CHURN, {"activations": 3.0})
    no_cache = eviction.Eviction._measure(
        plan, "trio", source, ids, 200, eviction.NO_CACHE, eviction.run_no_cache, 0
    )
    assert no_cache(0)["activations_per_call"] == 1.0


# -- the drivers ------------------------------------------------------------------------------


def test_a_system_that_stops_answering_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A measurement that never returns is stopped at the timeout and reported as a
    BenchmarkFailure saying the system stopped answering (the timeout shortened here)."""
    monkeypatch.setattr(drivers, "MEASUREMENT_TIMEOUT", 0.05)
    for backend in ("trio", "asyncio"):
        with pytest.raises(BenchmarkFailure, match="deadlocked: stopped answering"):
            drivers.run_measurement(anyio.sleep_forever, backend=backend, what="deadlocked")


def test_open_loop_latency_counts_from_when_each_write_was_due() -> None:
    """On a virtual clock (trio's MockClock: no wall-clock time involved), 400 writes offered at
    1,000/s, each answered at once, except write 10 (due at 10 ms), which stalls the whole loop
    for 0.2 s (time jumps while the loop is blocked). Write 10 records the 0.2 s; the writes due
    during the stall, started late, record the time since they were due (write 11: 0.199 s,
    write 50: 0.16 s), not the moment they were sent; those due after it record nothing."""
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def write(index: int) -> None:
        if index == 10:
            clock.jump(0.2)  # the loop blocked: nothing else runs meanwhile

    async def main() -> tuple[list[float], float]:
        return await drivers.open_loop_latencies(list(range(400)), 1_000.0, write, clock=trio.current_time)

    latencies, elapsed = trio.run(main, clock=clock)
    assert latencies[10] == pytest.approx(0.2)
    assert latencies[11] == pytest.approx(0.199)
    assert latencies[50] == pytest.approx(0.16)
    assert latencies[:10] == [0.0] * 10
    assert latencies[211:] == pytest.approx([0.0] * 189, abs=1e-9)
    assert elapsed == pytest.approx(0.399, abs=1e-6)


# -- stdio ----------------------------------------------------------------------------------


class FakeWire:
    """Answers every request line it is sent, a notification before each batch of replies."""

    def __init__(self) -> None:
        self.pending: list[int] = []

    def write(self, data: bytes) -> None:
        import json

        for line in data.splitlines():
            self.pending.append(json.loads(line)["id"])

    def read(self) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = [{"jsonrpc": "2.0", "method": "notifications/message", "params": {}}]
        for identifier in self.pending:
            replies.append({"jsonrpc": "2.0", "id": identifier, "result": {"content": []}})
        self.pending = []
        return replies

    def checked_result(self, reply: dict[str, Any], tool: str) -> dict[str, Any]:
        result: dict[str, Any] = reply["result"]
        return result


def test_stdio_drive_skips_notifications() -> None:
    """A server's notification (no id) among the replies is skipped, not a KeyError: every call
    gets its one reply and latency."""
    plan = [stdio_client.Call("set_preference", index % 3) for index in range(10)]
    lines = stdio_client.encode_requests(plan, ["a", "b", "c"], first_id=5)
    latencies, outcomes = stdio_client.drive(FakeWire(), plan, lines, 5, in_flight=3)  # type: ignore[arg-type]
    assert len(latencies) == 10
    assert outcomes == [None] * 10
