"""Interval mode's loss window, measured: SIGKILL a server under load, see what was lost.

A child process (tests/durability/crash_child.py) runs 20 writers against 4
sessions in interval mode (flush_interval 50 ms) and logs each write when it
is acknowledged, with its time. After a random number of acknowledgements
the child is SIGKILLed; the database is reopened, and every acknowledged
write that is missing is reported with how long before the kill it was
acknowledged.

    python benchmarks/measure_loss_window.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time

import anyio

import actorstate

CHILD = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "durability", "crash_child.py"
)


async def _sessions(path: str) -> list[str]:
    async with actorstate.open_state(path) as state:
        return [(await state.create_session()).id for _ in range(4)]


async def _stored(path: str, ids: list[str]) -> dict[str, object]:
    async with actorstate.open_state(path) as state:
        merged: dict[str, object] = {}
        for session_id in ids:
            merged.update((await state.session(session_id).context())["metadata"])
        return merged


def one_round(seed: int, workdir: str) -> tuple[int, int, float]:
    path = os.path.join(workdir, f"loss{seed}.db")
    ids = anyio.run(_sessions, path)
    child = subprocess.Popen(
        [sys.executable, CHILD, "load", path, "interval", "trio", "0", *ids],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    rng = random.Random(seed)
    run_for = rng.uniform(1.0, 2.0)
    started = None
    acks: list[tuple[str, int, float]] = []
    for raw in child.stdout:
        fields = raw.decode().split()
        if fields[0] == "ready":
            started = time.monotonic()
        elif fields[:2] == ["ok", "set"]:
            acks.append((fields[2], int(fields[3]), float(fields[4])))
            if started is not None and time.monotonic() - started > run_for:
                break
    killed_at = time.monotonic()
    os.kill(child.pid, signal.SIGKILL)
    for raw in child.stdout:
        fields = raw.decode().split()
        if fields[:2] == ["ok", "set"]:
            acks.append((fields[2], int(fields[3]), float(fields[4])))
    child.wait()
    child.stdout.close()
    stored = anyio.run(_stored, path, ids)
    lost = [killed_at - at for key, value, at in acks if int(stored.get(key, 0)) < value]  # type: ignore[call-overload]
    return len(acks), len(lost), max(lost, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}")
    print("interval mode, flush_interval 50 ms, 20 writers, SIGKILL after 1-2 s of load\n")
    worst = 0.0
    with tempfile.TemporaryDirectory() as workdir:
        for seed in range(args.rounds):
            acks, lost, oldest = one_round(seed, workdir)
            worst = max(worst, oldest)
            print(
                f"round {seed}: {acks:,} writes acknowledged, {lost:,} lost, "
                f"oldest lost acknowledged {oldest * 1000:.0f} ms before the kill"
            )
    print(f"\nworst: {worst * 1000:.0f} ms")


if __name__ == "__main__":
    main()
