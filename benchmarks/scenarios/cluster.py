"""Several actorstate nodes on one PostgreSQL: durable calls/s over HTTP with one, two and three nodes.

One throwaway PostgreSQL cluster (``actorstate.store.postgres_cluster``,
with PostgreSQL's own fsync settings: every commit waits for the disk) per
run, a new database per measurement. 100 clients, each its own principal
(a bearer token) on its own keep-alive connection, are spread over the
nodes (client i on node i mod n); each creates a session on its node, which
then owns it, and sends the HTTP scenario's mix of calls on it, one at a
time. Every reply is durable: actorstate runs in commit mode (a reply after
the group commit holding it), and the baseline, in the article's shape,
commits each call in its own transaction (``baselines/pg_per_call.py``: the
SDK's ``MCPServer`` on its Streamable HTTP server, a pool of psycopg
connections, read, change and write back per call). Checked after every
run, as in the HTTP scenario: each session's increments and recorded actions
are exact; any error reply fails the run (a session answered "moved" too:
each is used from the node that owns it, so the move rate is zero).

With two and three nodes, two moves are timed after the calls, each from an
owner's kill (SIGKILL) until another node serves one of its sessions (with
every acknowledged increment), against the nodes' leases of 2 seconds
(``LEASE``; the target is the lease plus at most one second). ``move``:
node 1 is killed at an arbitrary moment (right after the calls), and client
0's session is called on node 2. ``worst move``: the kill right after the
owner renewed the session's lease, so the whole lease must run out; a read
of client 1's session on node 2 every 10 ms (``READ_EVERY``) makes node 2 renew
its leases in their batch (see ``actorstate.store.postgres_leases``), a
connection of the benchmark's own polls the row's lease expiry (the
database's clock) and kills node 2 as soon as it moves, and the session is
called on node 3 (with two nodes, on a node started for it, after a call of
its own). Killing node 2 needs a live node to move to; that is why the two
moves take two kills. ``lease_left_s`` (kept in the results, not a metric) is
what remained of the lease, by the database's clock, when the kill was sent.
Server CPU is the nodes' (PostgreSQL's own is not counted).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import itertools
import math
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from benchmarks.drivers import run_measurement
from benchmarks.http_client import HttpMcpClient
from benchmarks.scenarios.http import (
    CLIENTS,
    HERE,
    ServerProcess,
    free_port,
    make_tokens,
    run_plan,
)
from benchmarks.stdio_client import plan_workload, structured
from benchmarks.suite import P50, P99, BenchmarkFailure, Case, Metric, Plan, Scenario

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from actorstate.store.postgres_cluster import PostgresCluster
    from benchmarks.stdio_client import Call
    from benchmarks.suite import Figures

NODES = (1, 2, 3)
BASELINE = "commit per call (PostgreSQL)"
# The nodes' leases (serve --lease-duration): short, so a measured move takes seconds.
LEASE = 2.0
# Past this, a session that has not moved is a failure of the run.
MOVE_LIMIT = 60.0
# The worst-case kill: how often the session is read on its owner (each read
# past the renewal's due time brings it), how often its row's lease expiry is
# polled (the kill comes at most about this late after the renewal), and how
# long a renewal may take to show before the run fails.
READ_EVERY = 0.01
POLL_EVERY = 0.002
RENEWAL_LIMIT = 10 * LEASE


def system_name(nodes: int) -> str:
    return f"actorstate, {nodes} node{'s' if nodes > 1 else ''}"


async def drive(
    servers: list[ServerProcess],
    tokens: list[str | None],
    plan: list[Call],
    url: str,
    start_node: Callable[[str], ServerProcess],
) -> Figures:
    """Create the sessions (client i's on node i mod n), run the plan timed, check the counters;
    with several nodes, then time the two moves (see the module's docstring)."""
    clients = [
        HttpMcpClient(server.host, server.port, server.path, token)
        for server, token in zip(itertools.cycle(servers), tokens, strict=False)
    ]
    try:
        for client in clients:
            await client.connect()
        figures, session_ids = await run_plan(clients, servers, plan)
    finally:
        for client in clients:
            await client.close()
    if len(servers) > 1:
        with failing_as("the move after a kill at any moment"):
            figures["move_s"] = await time_move(
                servers[1], tokens[0], session_ids[0], increments_of(plan, 0), kill_now(servers[0])
            )
        with failing_as("the move after a kill right after a renewal"):
            target = servers[2] if len(servers) > 2 else await warmed(start_node("node-spare"), tokens[1])
            renewal = KillAfterRenewal(url, session_ids[1], servers[1], tokens[1])
            figures["move_worst_s"] = await time_move(
                target, tokens[1], session_ids[1], increments_of(plan, 1), renewal.kill
            )
        figures["lease_left_s"] = renewal.lease_left
    return figures


@contextlib.contextmanager
def failing_as(step: str) -> Iterator[None]:
    """A failure inside names ``step``: the calls' and the two moves' failures read alike."""
    try:
        yield
    except BenchmarkFailure as failure:
        raise BenchmarkFailure(f"{step}: {failure}") from failure


def increments_of(plan: list[Call], session: int) -> int:
    return sum(1 for call in plan if call.tool == "increment_counter" and call.session == session)


async def warmed(server: ServerProcess, token: str | None) -> ServerProcess:
    """``server`` after one session created and called on it: a new process's first call pays
    for imports the move should not be timed with."""
    client = HttpMcpClient(server.host, server.port, server.path, token)
    await client.connect()
    try:
        session_id = structured(await client.call("create_session", {}))["sessionId"]
        await client.call("increment_counter", {"sessionId": session_id})
    finally:
        await client.close()
    return server


def kill_now(owner: ServerProcess) -> Callable[[], Awaitable[float]]:
    """A kill of ``owner`` at once (whenever its leases were last renewed); returns its moment."""

    async def kill() -> float:
        owner.process.send_signal(signal.SIGKILL)
        return time.perf_counter()

    return kill


class KillAfterRenewal:
    """Kills the owner of a session right after it renewed the session's lease.

    Reads of the session on its owner (one every ``READ_EVERY``) keep the
    node's batch renewal coming (due a third of a lease after the last); a
    psycopg connection of the benchmark's own polls the row's lease expiry
    every ``POLL_EVERY`` on a thread and sends SIGKILL from there as soon as
    the expiry moved. The reads change nothing, so only a renewal moves it.
    """

    def __init__(self, url: str, session_id: str, owner: ServerProcess, token: str | None) -> None:
        self.url, self.session_id, self.owner, self.token = url, session_id, owner, token
        # What remained of the renewed lease when the kill was sent, by the database's clock.
        self.lease_left = math.nan

    async def kill(self) -> float:
        reader = HttpMcpClient(self.owner.host, self.owner.port, self.owner.path, self.token)
        await reader.connect()
        reads = asyncio.create_task(self._read(reader))
        try:
            killed, self.lease_left = await asyncio.to_thread(
                kill_after_renewal, self.url, self.session_id, self.owner.process.send_signal
            )
        finally:
            reads.cancel()
            # Its call fails once the node is gone; only a failure before the kill matters.
            with contextlib.suppress(BaseException):
                await reads
            with contextlib.suppress(OSError):
                await reader.close()
        return killed

    async def _read(self, reader: HttpMcpClient) -> None:
        while True:
            await reader.call("get_context", {"sessionId": self.session_id, "maxTurns": 1})
            await asyncio.sleep(READ_EVERY)


def kill_after_renewal(
    url: str,
    session_id: str,
    send_signal: Callable[[int], None],
    polled: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Poll the session's lease expiry until it moves, then SIGKILL through ``send_signal`` at once;
    the moment of the kill (``time.perf_counter``) and the seconds of lease then left by the
    database's clock. ``polled`` is called after each poll that found no change.

    Error handling:
        BenchmarkFailure: the expiry did not move within ``RENEWAL_LIMIT``.
    """
    import psycopg

    query = (
        "SELECT lease_expires, extract(epoch FROM lease_expires - clock_timestamp()) "
        "FROM actorstate_sessions WHERE id = %s"
    )
    with psycopg.connect(url, autocommit=True) as db:
        first = db.execute(query, (session_id,)).fetchone()
        if first is None:
            raise BenchmarkFailure(f"session {session_id} is not in the database")
        deadline = time.monotonic() + RENEWAL_LIMIT
        while True:
            if polled is not None:
                polled()
            time.sleep(POLL_EVERY)
            row = db.execute(query, (session_id,)).fetchone()
            if row is not None and row[0] != first[0]:
                send_signal(signal.SIGKILL)
                return time.perf_counter(), float(row[1])
            if time.monotonic() > deadline:
                raise BenchmarkFailure(
                    f"the lease of session {session_id} was not renewed within {RENEWAL_LIMIT:g} s"
                )


async def time_move(
    target: ServerProcess,
    token: str | None,
    session_id: str,
    increments: int,
    kill: Callable[[], Awaitable[float]],
) -> float:
    """Kill the owner of ``session_id`` (``kill`` returns the moment) and call the session on
    ``target`` until it answers; the seconds from the kill to that answer. The answer must count
    every acknowledged increment: ``increments`` before it."""
    other = HttpMcpClient(target.host, target.port, target.path, token)
    await other.connect()
    try:
        killed = await kill()
        while True:
            try:
                result = await other.call("increment_counter", {"sessionId": session_id})
            except BenchmarkFailure as refused:
                if "served by node" not in str(refused):
                    raise
                if time.perf_counter() - killed > MOVE_LIMIT:
                    raise BenchmarkFailure(f"the session did not move within {MOVE_LIMIT:g} s") from None
                await asyncio.sleep(0.005)
                continue
            moved = time.perf_counter() - killed
            break
    finally:
        await other.close()
    if structured(result)["value"] != increments + 1:
        raise BenchmarkFailure(
            f"after the move the counter is {structured(result)['value']}, not {increments + 1}"
        )
    return moved


def measure(
    cluster: PostgresCluster,
    nodes: int | None,
    plan_calls: int,
    workdir: str,
    tokens_file: str,
    tokens: list[str | None],
) -> Callable[[int], Figures]:
    """One measurement of ``nodes`` actorstate nodes (None: the baseline) on a new database."""
    databases = itertools.count(1)

    def one(number: int) -> Figures:
        database = f"bench_{nodes or 0}_{number}_{next(databases)}"
        cluster.create_database(database)
        url = cluster.url(database)
        servers: list[ServerProcess] = []

        def start_node(name: str) -> ServerProcess:
            """An actorstate node on the measurement's database, stopped with the others."""
            command = [
                *(sys.executable, "-m", "actorstate", "serve", "--http", "127.0.0.1:0"),
                *("--tokens-file", tokens_file, "--db", url, "--node-id", name),
                *("--lease-duration", str(LEASE)),
            ]
            servers.append(ServerProcess(command, workdir))
            return servers[-1]

        try:
            if nodes is None:
                port = free_port()
                baseline = os.path.join(HERE, "baselines", "pg_per_call.py")
                servers.append(
                    ServerProcess([sys.executable, baseline, "--http", str(port), "--db", url], workdir, port)
                )
                clients: list[str | None] = [None] * CLIENTS
            else:
                for node in range(1, nodes + 1):
                    start_node(f"node-{node}")
                clients = tokens
            plan = [
                dataclasses.replace(call, session=index % CLIENTS)
                for index, call in enumerate(plan_workload(plan_calls, seed=number, sessions=CLIENTS))
            ]
            what = BASELINE if nodes is None else system_name(nodes)
            # A copy: the nodes started during the run join ``servers`` to be stopped, not measured.
            return run_measurement(
                drive, list(servers), clients, plan, url, start_node, backend="asyncio", what=what
            )
        finally:
            for server in servers:
                server.stop()

    return one


class Cluster(Scenario):
    name = "cluster"
    title = "Nodes on one PostgreSQL: durable calls/s over HTTP, 100 clients"
    about = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
    metrics = (
        Metric("rate", "rate", "calls/s", "higher"),
        P50,
        P99,
        Metric("cpu_us", "nodes' CPU/call", "µs", "lower"),
        Metric("move_s", f"move after a kill at any moment (lease {LEASE:g} s)", "s", "lower"),
        Metric("move_worst_s", f"move after a kill right after a renewal (lease {LEASE:g} s)", "s", "lower"),
    )
    plot_metrics = ("rate", "p99_ms")

    def cases(self, plan: Plan) -> list[Case]:
        from actorstate.store.postgres_cluster import ClusterError, start_cluster

        calls = 600 if plan.quick else 20_000
        # A folder of its own: the HTTP scenario's tokens file, in the run's folder, names the same clients.
        workdir = os.path.join(plan.workdir, "cluster")
        os.makedirs(workdir, exist_ok=True)
        tokens_file, tokens = make_tokens(workdir)
        try:
            cluster = start_cluster(durable=True)
        except ClusterError as error:
            raise BenchmarkFailure(f"PostgreSQL could not be started: {error}") from None
        # Up for every measurement of the run, in whatever order they come; gone when the run ends.
        atexit.register(cluster.destroy)
        systems = {
            system_name(nodes): measure(cluster, nodes, calls, workdir, tokens_file, tokens)
            for nodes in NODES
        }
        systems[BASELINE] = measure(cluster, None, calls, workdir, tokens_file, tokens)
        return [
            Case(
                {"clients": CLIENTS, "sessions": CLIENTS, "calls": calls},
                systems,
                baseline=BASELINE,
                comparisons=[
                    *((system_name(nodes), BASELINE) for nodes in NODES),
                    (system_name(2), system_name(1)),
                    (system_name(3), system_name(1)),
                ],
                ours=[system_name(nodes) for nodes in NODES],
            )
        ]
