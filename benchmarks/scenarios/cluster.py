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

With two and three nodes, after the calls node 1 is killed (SIGKILL) and
the time until node 2 serves one of its sessions (with every acknowledged
increment) is measured: ``move``, against the nodes' leases of 2 seconds
(``LEASE``; the target is the lease plus at most one second). Server CPU is the
nodes' (PostgreSQL's own is not counted).
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import itertools
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
    from collections.abc import Callable

    from actorstate.store.postgres_cluster import PostgresCluster
    from benchmarks.stdio_client import Call
    from benchmarks.suite import Figures

NODES = (1, 2, 3)
BASELINE = "commit per call (PostgreSQL)"
# The nodes' leases (serve --lease-duration): short, so a measured move takes seconds.
LEASE = 2.0
# Past this, a session that has not moved is a failure of the run.
MOVE_LIMIT = 60.0


def system_name(nodes: int) -> str:
    return f"actorstate, {nodes} node{'s' if nodes > 1 else ''}"


async def drive(servers: list[ServerProcess], tokens: list[str | None], plan: list[Call]) -> Figures:
    """Create the sessions (client i's on node i mod n), run the plan timed, check the counters;
    with several nodes, then kill node 1 and time one of its sessions' move to node 2."""
    clients = [
        HttpMcpClient(server.host, server.port, server.path, token)
        for server, token in zip(itertools.cycle(servers), tokens, strict=False)
    ]
    try:
        for client in clients:
            await client.connect()
        figures, session_ids = await run_plan(clients, servers, plan)
        if len(servers) > 1:
            increments = sum(1 for call in plan if call.tool == "increment_counter" and call.session == 0)
            figures["move_s"] = await time_move(servers, tokens[0], session_ids[0], increments)
    finally:
        for client in clients:
            await client.close()
    return figures


async def time_move(
    servers: list[ServerProcess], token: str | None, session_id: str, increments: int
) -> float:
    """Kill node 1 (the owner of ``session_id``, client 0's session) and call the session on node 2
    until it answers; the seconds from the kill to that answer. The answer must count every
    acknowledged increment: ``increments`` before it."""
    other = HttpMcpClient(servers[1].host, servers[1].port, servers[1].path, token)
    await other.connect()
    try:
        servers[0].process.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
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
                    command = [
                        *(sys.executable, "-m", "actorstate", "serve", "--http", "127.0.0.1:0"),
                        *("--tokens-file", tokens_file, "--db", url, "--node-id", f"node-{node}"),
                        *("--lease-duration", str(LEASE)),
                    ]
                    servers.append(ServerProcess(command, workdir))
                clients = tokens
            plan = [
                dataclasses.replace(call, session=index % CLIENTS)
                for index, call in enumerate(plan_workload(plan_calls, seed=number, sessions=CLIENTS))
            ]
            what = BASELINE if nodes is None else system_name(nodes)
            return run_measurement(drive, servers, clients, plan, backend="asyncio", what=what)
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
        Metric("move_s", f"move after a kill (lease {LEASE:g} s)", "s", "lower"),
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
