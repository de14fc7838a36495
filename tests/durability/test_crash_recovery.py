"""Real crashes: a child process under load is SIGKILLed; nothing acknowledged is lost.

The child logs every call before making it ("inv") and once acknowledged
("ok"), straight to the pipe, so the parent knows exactly what a client of
the dead process was told. After reopening the database:

- commit mode: every acknowledged write is there, and no value appears that
  was never sent;
- interval mode: only writes acknowledged within the flush window before the
  kill may be missing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import anyio
import pytest

import actorstate

CHILD = str(Path(__file__).with_name("crash_child.py"))
SESSIONS = 4


async def _create_sessions(path: str) -> list[str]:
    async with actorstate.open_state(path) as state:
        return [(await state.create_session()).id for _ in range(SESSIONS)]


async def _read_back(path: str, session_ids: list[str]) -> dict[str, dict[str, object]]:
    async with actorstate.open_state(path) as state:
        return {sid: (await state.session(sid).context())["metadata"] for sid in session_ids}


def _run_and_kill(
    path: str,
    mode: str,
    backend: str,
    round_number: int,
    ids: list[str],
    rng: random.Random,
    min_runtime: float = 0.0,
) -> tuple[list[list[str]], float]:
    """Start the load and kill it after a random number of acknowledgements
    (and at least ``min_runtime`` seconds of load); return its log and the kill time."""
    child = subprocess.Popen(
        [sys.executable, CHILD, "load", path, mode, backend, str(round_number), *ids],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    target = rng.randrange(200, 3000)
    acks = 0
    started = None
    lines: list[list[str]] = []
    try:
        for raw in child.stdout:
            fields = raw.decode().split()
            lines.append(fields)
            if fields[0] == "ready":
                started = time.monotonic()
            elif fields[0] == "ok":
                acks += 1
                if acks >= target and started is not None and time.monotonic() - started >= min_runtime:
                    break
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
        # Everything the child printed before dying is still in the pipe.
        lines.extend(raw.decode().split() for raw in child.stdout)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert acks >= target
    return [line for line in lines if line], killed_at


def _check_round(
    log: list[list[str]], stored: dict[str, dict[str, object]], lost_before: float | None
) -> None:
    """Compare what the child was told with what the database holds.

    ``lost_before``: acknowledgements at or before this time must be present
    (interval mode); None means every acknowledgement must be (commit mode).
    """
    invoked: dict[str, int] = {}
    acked: dict[str, int] = {}
    acked_in_time: dict[str, int] = {}
    hits_invoked: dict[str, int] = defaultdict(int)
    hits_acked: dict[str, int] = defaultdict(int)
    for fields in log:
        if fields[0] == "inv" and fields[1] == "set":
            invoked[fields[2]] = int(fields[3])
        elif fields[0] == "ok" and fields[1] == "set":
            acked[fields[2]] = int(fields[3])
            if lost_before is None or float(fields[4]) <= lost_before:
                acked_in_time[fields[2]] = int(fields[3])
        elif fields[0] == "inv" and fields[1] == "inc":
            hits_invoked[fields[2]] += 1
        elif fields[0] == "ok" and fields[1] == "inc":
            if lost_before is None or float(fields[4]) <= lost_before:
                hits_acked[fields[2]] += 1
    assert acked_in_time, "no acknowledgement old enough to judge: the check would be empty"
    everything = {key: value for metadata in stored.values() for key, value in metadata.items()}
    for key, last_invoked in invoked.items():
        value = everything.get(key, 0)
        assert isinstance(value, int)
        assert value >= acked_in_time.get(key, 0), (
            f"{key}: acknowledged {acked_in_time.get(key)} but stored {value}"
        )
        assert value <= last_invoked, f"{key}: stored {value}, but only up to {last_invoked} was ever sent"
    for session_id, metadata in stored.items():
        hits = metadata.get("hits", 0)
        assert isinstance(hits, int)
        assert hits >= hits_acked[session_id]
        assert hits <= hits_invoked[session_id] + metadata.get("hits_before", 0)  # type: ignore[operator]


def _prepare(path: str) -> list[str]:
    return anyio.run(_create_sessions, path)


@pytest.mark.parametrize("seed", [1, 2])
def test_commit_mode_loses_nothing_acknowledged_under_sigkill(tmp_path: Path, seed: int) -> None:
    """Several rounds of load and SIGKILL on one database; every acknowledged write survives."""
    path = str(tmp_path / "crash.db")
    ids = _prepare(path)
    rng = random.Random(seed)
    hits_before: dict[str, int] = dict.fromkeys(ids, 0)
    for round_number, backend in enumerate(["trio", "asyncio", "trio"]):
        log, _ = _run_and_kill(path, "commit", backend, round_number, ids, rng)
        stored = anyio.run(_read_back, path, ids)
        for session_id in ids:
            # Counters carry over between rounds: judge only this round's increments.
            stored[session_id] = dict(stored[session_id], hits_before=hits_before[session_id])
            stored[session_id]["hits"] = stored[session_id].get("hits", 0) - hits_before[session_id]  # type: ignore[operator]
        _check_round(log, stored, lost_before=None)
        for session_id in ids:
            hits_before[session_id] += stored[session_id]["hits"]  # type: ignore[operator]


# The documented loss window of interval mode: flush_interval (50 ms here) plus
# one commit. The margin on top absorbs scheduling delays on a loaded machine.
INTERVAL_WINDOW = 0.05 + 0.5


def test_interval_mode_loses_at_most_the_flush_window(tmp_path: Path) -> None:
    """After SIGKILL in interval mode, only writes acknowledged just before the kill may be gone."""
    path = str(tmp_path / "interval.db")
    ids = _prepare(path)
    log, killed_at = _run_and_kill(path, "interval", "trio", 0, ids, random.Random(3), min_runtime=1.5)
    stored = anyio.run(_read_back, path, ids)
    for session_id in ids:
        stored[session_id] = dict(stored[session_id], hits_before=0)
    _check_round(log, stored, lost_before=killed_at - INTERVAL_WINDOW)


def test_two_processes_incrementing_one_session_lose_nothing(tmp_path: Path) -> None:
    """Two OS processes on one file increment the same counter concurrently; the total is exact."""
    path = str(tmp_path / "shared.db")
    session_id = _prepare(path)[0]
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, CHILD, "count", path, backend, str(go), session_id, "1000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for backend in ("trio", "asyncio")
    ]
    for child in children:  # both have the database open and the session loaded
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    go.write_text("go")
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    stored = anyio.run(_read_back, path, [session_id])
    assert stored[session_id]["hits"] == 2000
    conflicts = sum(int(out.split()[-1]) for out, _ in outputs)
    assert conflicts > 0, "the two processes never overlapped: the test did not exercise conflicts"


@pytest.mark.parametrize(("backend", "signum"), [("trio", signal.SIGTERM), ("asyncio", signal.SIGINT)])
def test_sigterm_and_sigint_flush_everything_before_exit(tmp_path: Path, backend: str, signum: int) -> None:
    """A stop signal drains and flushes: in a mode that never flushed by itself, nothing acknowledged is lost."""
    path = str(tmp_path / "graceful.db")
    ids = _prepare(path)
    child = subprocess.Popen(
        [sys.executable, CHILD, "load", path, "graceful", backend, "0", *ids],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    lines: list[list[str]] = []
    acks = 0
    for raw in child.stdout:
        lines.append(raw.decode().split())
        acks += lines[-1][0] == "ok"
        if acks == 2000:
            break
    child.send_signal(signum)
    lines.extend(raw.decode().split() for raw in child.stdout)
    stderr = child.stderr.read().decode()
    child.stdout.close()
    child.stderr.close()
    assert child.wait(timeout=30) == 0, stderr
    assert lines[-1] == ["closed"]
    assert f"received {signal.Signals(signum).name}" in stderr
    stored = anyio.run(_read_back, path, ids)
    for session_id in ids:
        stored[session_id] = dict(stored[session_id], hits_before=0)
    _check_round([line for line in lines if line], stored, lost_before=None)
