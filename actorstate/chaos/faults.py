"""The fault schedule, drawn from the seed before the run.

Faults in this module's kinds, each against the one server process:

- ``kill``: SIGKILL at a random moment, then a restart on the same database;
  every call in flight has an unknown outcome.
- ``term``: SIGTERM; the server answers what it read, commits and exits 0;
  then a restart.
- ``stop``: SIGSTOP for longer than the clients' timeout, then SIGCONT; the
  calls in flight time out (unknown outcome) and may still take effect.
- ``lock``: the runner takes the database's write lock (``BEGIN IMMEDIATE``
  on a connection of its own, another process to the server) and holds it
  past the server's busy timeout; the writes that wait for it time out or
  fail with a store error (unknown outcome), and the server serves again
  once it is released.
- ``second``: a second server process on the same database for a while;
  some of the clients' calls go to it, on the same sessions, then its input
  ends and it must exit 0.
- ``full``: the disk is full: the database's own small file system
  (:mod:`.disk`) is filled for a while; commits fail with SQLite's real
  "database or disk is full", reads go on, and writes succeed again once
  there is room.
- ``ioerror``, ``slow`` and ``evict``, through the server's fault seam
  (:mod:`actorstate.fault_seam`): for a while every commit fails as an I/O
  error would; or holds its transaction (and the write lock) for tens of
  milliseconds before COMMIT; or the server keeps only a few sessions in
  memory, so sessions are evicted and reloaded in storms.
- ``wire``: bad input on the wire for a while, among the clients' calls:
  malformed, oversized and deeply nested messages (:mod:`.bad_input`). Each
  one the server can tell by its id must get an error reply; the server must
  keep serving.
- ``flood``: a burst of concurrent increments on one session, more than its
  mailbox holds (the runner's servers take that many requests in flight);
  callers past the mailbox wait for room; every one is recorded, and the
  counter must come out exact.
- ``revoke`` (HTTP only): one principal's token is rotated: revoked and a
  new one added in the tokens file, the servers told by SIGHUP; the
  principal's clients move to the new token once a server takes it. The
  principal keeps its sessions (its identity is its name, not its token);
  what the old token held open (a protocol session) is closed.
- ``drop``: for a while, clients drop about half their calls after a moment
  (telling the server, as ``notifications/cancelled``; over HTTP, closing
  the call's connection mid-request) and retry them with
  the same idempotency key (``requestId``): a dropped call has an unknown
  outcome and may still take effect, but only once with its retries.

With ``--store postgres`` (several nodes on one PostgreSQL database, see
:mod:`.cluster`) the kinds are the cluster's: ``kill`` (SIGKILL one node,
restart it under its name once its lease is past), ``term``, ``stop`` (SIGSTOP
one node past its lease, then SIGCONT), ``drop`` (as for one server, each
dropped call sent again to the node it was sent to, and requests torn off
mid-send to every node), and:

- ``pgrestart``: PostgreSQL stopped in immediate mode (as a crash) mid-load and
  started again; every node's connection is lost.
- ``terminate``: ``pg_terminate_backend`` of one node's connections.
- ``partition``: one node cut off from PostgreSQL for longer than its lease
  (:data:`NODE_LEASE`) plus a margin. Each node reaches the database
  through a TCP proxy of its own in the runner (:mod:`.proxy`); the fault
  stalls that node's proxy, holding the bytes both ways while the
  connections stay open, then sends them on. Meanwhile the node cannot
  renew its leases, so it stops answering from memory a third of a lease
  after its last renewal, and the other nodes claim its sessions as the
  clients' calls move to them; the statements it sent during the stall
  reach PostgreSQL only after those claims, so its writes match no row of
  their epoch and are fenced: it must drop those sessions and tell the
  callers to retry elsewhere ("now served by another node"), never
  acknowledge them. The report counts the writes fenced.

The schedule spreads the faults over the middle of the run (the first and
last tenths stay calm), one in each of equal stretches of time, at a random
moment within its stretch. The first ones are every selected kind once, in a
random order, so each kind is injected at least once in any run.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

__all__ = [
    "ALL_FAULT_KINDS",
    "CLUSTER_FAULT_KINDS",
    "FAULT_KINDS",
    "HTTP_FAULT_KINDS",
    "NODE_LEASE",
    "RECORDED_KIND",
    "SEAM_KINDS",
    "PlannedFault",
    "plan_faults",
]

FAULT_KINDS = (
    "kill",
    "term",
    "stop",
    "lock",
    "second",
    "full",
    "ioerror",
    "slow",
    "evict",
    "wire",
    "flood",
    "drop",
)
# Over HTTP: every kind but bad lines on a pipe (``drop`` closes the call's connection there),
# and token rotation, which only HTTP has.
HTTP_FAULT_KINDS = (*(kind for kind in FAULT_KINDS if kind != "wire"), "revoke")
# With several nodes on one PostgreSQL database: the nodes' and the database's faults.
CLUSTER_FAULT_KINDS = ("kill", "term", "stop", "pgrestart", "terminate", "partition", "drop")
ALL_FAULT_KINDS = (*FAULT_KINDS, "revoke", "pgrestart", "terminate", "partition")
# The kinds that need the server's fault seam.
SEAM_KINDS = frozenset({"ioerror", "slow", "evict"})
# How a fault kind is named in the history.
RECORDED_KIND = {
    "kill": "sigkill",
    "term": "sigterm",
    "stop": "sigstop",
    "lock": "db-lock",
    "second": "second-server",
    "full": "disk-full",
    "ioerror": "store-io-errors",
    "slow": "slow-commits",
    "evict": "eviction-storm",
    "wire": "bad-input",
    "flood": "call-flood",
    "drop": "dropped-calls",
    "revoke": "token-rotation",
    "pgrestart": "postgres-restart",
    "terminate": "backend-terminated",
    "partition": "db-partition",
}
# A lock is held this many seconds past the server's busy timeout, at most.
LOCK_MARGIN = (0.3, 0.8)
# A second server serves this many seconds (after it has started).
SECOND_HOLD = (1.5, 3.0)
# The disk stays full, bad input is sent, or calls are dropped, for this many seconds.
FULL_HOLD = (1.0, 2.0)
SEAM_HOLD = (1.0, 2.0)
BAD_INPUT_HOLD = (0.5, 1.0)
DROP_HOLD = (1.0, 2.0)
# With several nodes: the nodes' leases, short so that a node killed or paused loses its sessions soon.
NODE_LEASE = 1.0
# A node is cut off from PostgreSQL for its lease and this many seconds more: long enough for
# its clients to time out (a second) and another node to claim its sessions.
PARTITION_MARGIN = (1.0, 2.0)
# A flood is this many concurrent calls on one session.
# (More than a mailbox holds: the runner's servers take up to SERVER_IN_FLIGHT requests at once.)
FLOOD_CALLS = (1500, 2500)
# One fault for about this many seconds of run, beyond one of each kind.
SECONDS_PER_FAULT = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedFault:
    """A fault of ``kind`` due ``at`` seconds into the workload; ``hold``: how long a stop, a lock,
    a second server, bad input or dropped calls last, or how many calls a flood makes."""

    at: float
    kind: str
    hold: float = 0.0


def plan_faults(
    rng: random.Random,
    kinds: Sequence[str],
    duration: float,
    *,
    timeout: float,
    busy_timeout: float = 5.0,
    lease: float | None = None,
) -> tuple[PlannedFault, ...]:
    """The faults of a run of ``duration`` seconds whose clients give up after ``timeout``,
    against servers that wait ``busy_timeout`` seconds for a locked database; with nodes
    holding leases of ``lease`` seconds, a stop or a partition lasts past the lease.

    Error handling:
        Raises ``ValueError`` naming an unknown kind.
    """
    unknown = sorted(set(kinds) - set(ALL_FAULT_KINDS))
    if unknown:
        raise ValueError(
            f"unknown fault kind(s) {', '.join(unknown)}; choose from {', '.join(ALL_FAULT_KINDS)}"
        )
    if not kinds:
        return ()
    chosen = list(dict.fromkeys(kinds))
    rng.shuffle(chosen)
    count = max(len(chosen), round(duration / SECONDS_PER_FAULT))
    chosen += [rng.choice(sorted(set(kinds))) for _ in range(count - len(chosen))]
    first, last = 0.1 * duration, 0.9 * duration
    stretch = (last - first) / count
    faults = []
    for number, kind in enumerate(chosen):
        at = first + stretch * (number + rng.uniform(0.0, 0.5))
        hold = 0.0
        if kind == "stop":
            hold = (lease if lease is not None else timeout) * rng.uniform(1.5, 2.5)
        elif kind == "partition":
            hold = (lease if lease is not None else NODE_LEASE) + rng.uniform(*PARTITION_MARGIN)
        elif kind == "lock":
            hold = busy_timeout + rng.uniform(*LOCK_MARGIN)
        elif kind == "second":
            hold = rng.uniform(*SECOND_HOLD)
        elif kind == "full":
            hold = rng.uniform(*FULL_HOLD)
        elif kind in SEAM_KINDS:
            hold = rng.uniform(*SEAM_HOLD)
        elif kind == "wire":
            hold = rng.uniform(*BAD_INPUT_HOLD)
        elif kind == "drop":
            hold = rng.uniform(*DROP_HOLD)
        elif kind == "flood":
            hold = float(rng.randint(*FLOOD_CALLS))
        faults.append(PlannedFault(round(at, 3), kind, round(hold, 3)))
    return tuple(faults)
