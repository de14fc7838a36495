"""The chaos runner against a cluster: a short run of three HTTP nodes on a throwaway PostgreSQL
(SIGKILL and SIGSTOP of a node past its lease, SIGTERM, PostgreSQL crashed and restarted, a node's
connections terminated, a node cut off from PostgreSQL, dropped calls), a run of partitions alone
whose late writes are fenced, a run of dropped calls and cross-principal probes across the nodes,
the one-owner-per-epoch checker on hand-written histories, and the
options. (The planted claim-keeps-epoch bug is caught in test_planted_bugs.)"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from typing import TYPE_CHECKING, NoReturn

import anyio
import pytest

from actorstate.chaos import FaultPhase, History, Phase
from actorstate.chaos.checkers.owners import OwnerObservation, check_single_owner
from actorstate.chaos.faults import CLUSTER_FAULT_KINDS, NODE_LEASE, plan_faults
from actorstate.chaos.runner import RunOptions, replay_command, run_chaos
from actorstate.errors import StoreUnavailable
from actorstate.store import postgres_cluster
from actorstate.store.postgres_cluster import ClusterError

from .scripts import Script

if TYPE_CHECKING:
    from pathlib import Path

# Generous: a hung run fails the test instead of the suite; nothing here times the run.
_RUN_LIMIT = 300


def _run_cluster_chaos(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``actorstate chaos`` against three nodes on a PostgreSQL of its own, writing to ``out``."""
    command = [sys.executable, "-m", "actorstate", "chaos", "--store", "postgres", "--nodes", "3"]
    return subprocess.run(
        [*command, *options, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=_RUN_LIMIT,
        check=False,
    )


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One 8-second commit-mode run of three nodes with every cluster fault kind."""
    out = tmp_path_factory.mktemp("chaos-cluster") / "run"
    process = _run_cluster_chaos(out, "--seed", "7", "--duration", "8")
    return process, out


def test_a_cluster_run_with_every_cluster_fault_passes(
    cluster_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The run exits 0 with no violation (nothing acknowledged lost across nodes, one owner per
    epoch); every cluster fault ran: the killed node was restarted under its name after its lease,
    the SIGTERMed one exited 0, PostgreSQL was restarted, a node's connections were terminated, a
    node's way to PostgreSQL was stalled and its bytes held; every node answered calls; the owners were read throughout, and the final database too."""
    process, out = cluster_run
    assert process.returncode == 0, process.stdout + process.stderr
    assert "violations: 0" in process.stdout
    assert "--store postgres --nodes 3" in process.stdout.splitlines()[-1]
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    ends = {fault.kind: fault for fault in history.faults if fault.phase is FaultPhase.END}
    assert set(ends) == {
        "sigkill",
        "sigterm",
        "sigstop",
        "postgres-restart",
        "backend-terminated",
        "db-partition",
        "dropped-calls",
    }
    assert ends["db-partition"].details["held_chunks"] > 0
    kill = ends["sigkill"]
    assert (
        kill.details["restarted"].split(".")[0]
        == next(fault.target for fault in history.faults if fault.kind == "sigkill").split(".")[0]
    )
    assert ends["sigterm"].details["exit_status"] == 0
    answered_by = {call.process.split("@")[1] for call in history.calls if call.phase is Phase.OK}
    assert answered_by == {"node-1", "node-2", "node-3"}
    acknowledged_after_restart = [
        call
        for call in history.calls
        if call.phase is Phase.OK
        and call.tool == "increment_counter"
        and call.index > ends["postgres-restart"].index
    ]
    assert acknowledged_after_restart
    observations = [
        OwnerObservation.from_json(line)
        for line in (out / "owners.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(observations) > 20
    final = observations[-1]
    assert final.sent > max(call.last_index for call in history.calls if call.process.startswith("final"))


def test_a_moved_call_is_recorded_failed_and_sent_to_the_owner(
    cluster_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """A call a node answers "served by node N" is recorded as fail (nothing of it was kept), and
    the same call (same idempotency key) is sent next to node N, which acknowledges it (or, while
    N is down, to the next node running)."""
    process, out = cluster_run
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    calls = list(history.calls)
    moved = [
        call
        for call in calls
        if call.completion is not None
        and call.completion.error is not None
        and "is served by node" in call.completion.error
    ]
    assert moved
    assert all(call.phase is Phase.FAIL for call in moved)
    followed = 0
    for call in moved:
        worker = call.process.split("@")[0]
        key = call.arguments.get("requestId")
        owner = call.completion.error.split("served by node ")[1].split(",")[0]  # type: ignore[union-attr]
        retry = next(
            (c for c in calls if c.index > call.index and c.process.split("@")[0] == worker),
            None,
        )
        if retry is not None and key is not None and retry.arguments.get("requestId") == key:
            # Sent to the owner named (unless it was down then: to the next node running).
            followed += retry.process == f"{worker}@{owner}" and retry.phase is Phase.OK
    assert followed > 0
    assert "moved answers:" in process.stdout


def test_a_node_cut_off_from_postgresql_has_its_late_writes_fenced(tmp_path: Path) -> None:
    """A 6-second run whose only fault is a partition between one node and PostgreSQL past the
    lease passes (nothing acknowledged lost, one owner per epoch), and some of that node's writes,
    sent before other nodes claimed its sessions and landing after, were fenced by the database:
    the report and the nodes' logs count them. (No other fault fences a write: a node woken from
    SIGSTOP learns from its own lease clock that its leases are past, and renews before writing.)"""
    out = tmp_path / "run"
    process = _run_cluster_chaos(out, "--seed", "2", "--duration", "6", "--faults", "partition")
    assert process.returncode == 0, process.stdout + process.stderr
    assert "violations: 0" in process.stdout
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    [partition] = [fault for fault in history.faults if fault.phase is FaultPhase.START]
    assert partition.kind == "db-partition"
    assert partition.details["hold"] > NODE_LEASE
    fenced = re.search(r"writes fenced by a newer owner: (\d+)", process.stdout)
    assert fenced is not None, process.stdout
    assert int(fenced.group(1)) > 0
    cut_off = partition.target.split(".")[0]
    logs = "".join(path.read_text(encoding="utf-8") for path in out.glob(f"{cut_off}.*.log"))
    assert "moved to a newer owner" in logs


@pytest.fixture(scope="module")
def drop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One 6-second run of three nodes whose only fault is dropped calls (and, as in every
    cluster run, cross-principal probes throughout)."""
    out = tmp_path_factory.mktemp("chaos-cluster-drop") / "run"
    process = _run_cluster_chaos(out, "--seed", "3", "--duration", "6", "--faults", "drop")
    return process, out


def test_dropped_calls_on_a_cluster_are_sent_again_to_their_node_and_applied_once(
    drop_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """With calls dropped by their clients (and requests torn off mid-send to every node) the run
    passes: nothing acknowledged lost, every counter exact though dropped increments may have
    applied (each retry carries the same requestId). A dropped call is recorded as an unknown
    outcome and sent again, under the same key, to the node it was dropped on."""
    process, out = drop_run
    assert process.returncode == 0, process.stdout + process.stderr
    assert "violations: 0" in process.stdout
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    [end] = [fault for fault in history.faults if fault.phase is FaultPhase.END]
    assert end.kind == "dropped-calls"
    assert end.details["torn_requests"] > 0
    calls = list(history.calls)
    dropped = [
        call
        for call in calls
        if call.completion is not None and (call.completion.error or "").startswith("dropped by its client")
    ]
    assert dropped
    assert all(call.phase is Phase.INFO for call in dropped)
    followed = 0
    for call in dropped:
        worker = call.process.split("@")[0]
        retry = next(c for c in calls if c.index > call.index and c.process.split("@")[0] == worker)
        if (retry.tool, retry.session) != (call.tool, call.session):
            continue  # the session's slot was replaced meanwhile: the retry would go nowhere
        assert retry.process == call.process
        assert retry.arguments == call.arguments  # the same requestId
        followed += retry.phase is Phase.OK
    assert followed > 0


def test_cross_principal_probes_go_to_every_node_and_are_answered_like_unknown_ids(
    drop_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Throughout a cluster run, principals probe other principals' sessions (tools, the
    session resource, another's protocol session) on every node, each probe and its unknown-id
    control on one node: none is answered ok or otherwise than its control (the run passes),
    and listings of a principal's sessions are answered by the nodes too."""
    process, out = drop_run
    assert process.returncode == 0, process.stdout + process.stderr
    found = re.search(r"^cross-principal probes: (\d+) \((\d+) answered\)", process.stdout, re.M)
    assert found is not None, process.stdout
    assert int(found.group(2)) > 0
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    probes = [call for call in history.calls if call.process.startswith("probe")]
    assert {call.process.split("@")[1] for call in probes} == {"node-1", "node-2", "node-3"}
    by_process: dict[str, list[str | None]] = {}
    for call in probes:
        by_process.setdefault(call.process, []).append(call.session)
    assert any(sessions[0] is not None and sessions[-1] is None for sessions in by_process.values())
    assert not [call for call in probes if call.phase is Phase.OK and call.session is not None]
    listings = [call for call in history.calls if call.tool == "list_sessions" and call.phase is Phase.OK]
    assert listings
    assert all("@node-" in call.process for call in listings)


def _observed(script: Script, owners: dict[str, tuple[str | None, int]]) -> OwnerObservation:
    """A read of the owners between the script's records so far and the next."""
    at = len(script.history())
    return OwnerObservation(at, at, owners)


def test_one_owner_per_epoch_fails_on_two_owners_of_one_epoch() -> None:
    """Epoch 4 of s1 seen held by node-1, then by node-2 (a claim that did not bump the epoch):
    a violation naming both; a release (no owner) at the same epoch is none."""
    script = Script()
    script.create("s1")
    first = _observed(script, {"s1": ("node-1", 4)})
    script.increment("s1", 1, 1, process="w0@node-1")
    released = _observed(script, {"s1": (None, 4)})
    assert check_single_owner(script.history(), [first, released]) == []
    second = _observed(script, {"s1": ("node-2", 4)})
    violations = check_single_owner(script.history(), [first, released, second])
    assert [v.checker for v in violations] == ["one-owner-per-epoch"]
    assert violations[0].session == "s1"
    assert "epoch 4 was held by node-1 and then by node-2" in violations[0].message


def test_one_owner_per_epoch_fails_on_an_epoch_going_back() -> None:
    """s1 seen at epoch 5, then at epoch 3: a violation."""
    script = Script()
    script.create("s1")
    history = script.history()
    violations = check_single_owner(
        history,
        [OwnerObservation(1, 1, {"s1": ("node-1", 5)}), OwnerObservation(2, 2, {"s1": ("node-2", 3)})],
    )
    assert len(violations) == 1
    assert "went back from 5 to 3" in violations[0].message


def test_only_the_owner_answers_within_one_tenure() -> None:
    """An ok reply from node-2 to a call bracketed by two reads that both saw node-1 at epoch 3 is
    a violation; the same reply when the reads saw different epochs (a claim in between), or when
    the reply came from node-1, is none."""
    script = Script()
    script.create("s1")
    before = _observed(script, {"s1": ("node-1", 3)})
    stale = script.increment("s1", 1, 1, process="w0@node-2")
    fine = script.increment("s1", 1, 2, process="w1@node-1")
    after_same = _observed(script, {"s1": ("node-1", 3)})
    after_claimed = _observed(script, {"s1": ("node-2", 4)})
    history = script.history()
    violations = check_single_owner(history, [before, after_same])
    assert [v.operations for v in violations] == [(stale,)]
    assert "from node-2 while node-1 held the session under epoch 3" in violations[0].message
    assert fine not in violations[0].operations
    assert check_single_owner(history, [before, after_claimed]) == []


def test_cluster_options_are_checked_and_replayed(tmp_path: Path) -> None:
    """--store postgres needs HTTP and takes only the cluster's faults; --nodes needs postgres; the
    replay line names the store and the nodes."""
    options = RunOptions(
        seed=3, out=tmp_path, transport="http", store="postgres", nodes=3, faults=CLUSTER_FAULT_KINDS
    )
    assert replay_command(options).endswith("--store postgres --nodes 3")
    with pytest.raises(ValueError, match="give --transport http"):
        RunOptions(seed=3, out=tmp_path, store="postgres", nodes=2, faults=("kill",))
    with pytest.raises(ValueError, match="lock is not a cluster fault"):
        RunOptions(seed=3, out=tmp_path, transport="http", store="postgres", nodes=2, faults=("lock",))
    with pytest.raises(ValueError, match="--nodes 2 needs --store postgres"):
        RunOptions(seed=3, out=tmp_path, nodes=2)
    with pytest.raises(ValueError, match="pgrestart is for --store postgres"):
        RunOptions(seed=3, out=tmp_path, faults=("pgrestart",))


def test_a_cluster_schedule_pauses_nodes_past_their_lease() -> None:
    """Whatever the seed, a cluster schedule has every cluster kind, and each stop and partition
    outlasts the nodes' lease (so the paused or cut-off node's sessions can move), however short
    the clients' timeout."""
    for seed in range(50):
        faults = plan_faults(
            random.Random(seed), CLUSTER_FAULT_KINDS, 8.0, timeout=0.1, busy_timeout=5.0, lease=NODE_LEASE
        )
        assert {fault.kind for fault in faults} == set(CLUSTER_FAULT_KINDS)
        assert all(fault.hold > NODE_LEASE for fault in faults if fault.kind in ("stop", "partition"))


def test_a_cluster_run_without_postgresql_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the run's PostgreSQL cannot be started, the run stops before starting any node with
    an error (the command prints it in one line) that carries the reason."""

    def no_postgres(*args: object, **kwargs: object) -> NoReturn:
        raise ClusterError("no initdb found (install PostgreSQL's server binaries)")

    monkeypatch.setattr(postgres_cluster, "start_cluster", no_postgres)
    options = RunOptions(
        seed=1, out=tmp_path, duration=1, transport="http", store="postgres", nodes=2, faults=()
    )
    with pytest.raises(StoreUnavailable, match="could not be started: no initdb found"):
        anyio.run(run_chaos, options)
    assert not list(tmp_path.glob("node-*.log"))
