"""The cluster scenario's worst-case move kills the owner right after it renewed the session's
lease: the kill waits for the node's batch renewal to move the row's lease expiry."""

from __future__ import annotations

import signal
import threading

from actorstate.store.interface import SnapshotWrite
from actorstate.store.postgres import PostgresStore
from benchmarks.scenarios.cluster import LEASE, kill_after_renewal

# The throwaway PostgreSQL cluster and a new database per test, as the store's tests have them.
from tests.store.conftest import postgres_cluster, postgres_url  # noqa: F401

NOW = 1_700_000_000.0
# Fails a test whose waits would otherwise hang; nothing is timed against it.
HANG_GUARD = 30


def test_the_kill_comes_after_the_renewal_and_not_before(postgres_url: str) -> None:  # noqa: F811
    """While the owner only holds its lease, polls find the expiry unchanged and no signal is sent;
    once the owner renews its leases in their batch (PostgresStore.moved, as a node does before
    a call), SIGKILL is sent once, with a lease left by the database's clock."""
    owner = PostgresStore(postgres_url, node_id="owner", lease_duration=LEASE)
    try:
        (written,) = owner.write([SnapshotWrite("s1", "alice", 0, b"snapshot", NOW, NOW, False)], NOW)
        assert written.name == "COMMITTED"
        signals: list[int] = []
        polls = 0
        two_polls = threading.Event()

        def polled() -> None:
            nonlocal polls
            polls += 1
            if polls >= 2:
                two_polls.set()

        outcome: list[tuple[float, float]] = []
        poller = threading.Thread(
            target=lambda: outcome.append(kill_after_renewal(postgres_url, "s1", signals.append, polled))
        )
        poller.start()
        assert two_polls.wait(HANG_GUARD)
        assert signals == []  # polled without a renewal: no kill yet
        assert owner.moved({"s1": 1}) == []  # the batch renewal renewed s1
        poller.join(HANG_GUARD)
        assert not poller.is_alive()
        assert signals == [signal.SIGKILL]
        ((_, lease_left),) = outcome
        assert 0 < lease_left <= LEASE
    finally:
        owner.close()
