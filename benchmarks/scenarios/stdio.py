"""MCP over stdio: actorstate's server against a bare Python SDK server and Node.js.

Each measurement starts one server process and drives it with the raw
JSON-RPC client of ``benchmarks/stdio_client.py``: 32 requests in flight
over 50 sessions, the issue's mixed workload, every session's counters
checked exact at the end. The servers: ``actorstate serve`` in commit mode
(a fresh SQLite file per measurement); actorstate in commit mode on a store
that costs nothing (``probes/commit_ceiling.py``: about the most any store
could give it);
``actorstate serve`` in memory mode; the bare Python SDK server
(``baselines/sdk_server.py``) and the Node.js TypeScript SDK server
(``baselines/node/``; skipped, with the reason, without node and npm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks import stdio_client
from benchmarks.stdio_client import BARE_SDK, COMMIT, COMMIT_CEILING, IN_FLIGHT, MEMORY, NODE, SESSIONS
from benchmarks.suite import P50, P99, Case, Metric, Plan, Scenario

if TYPE_CHECKING:
    from collections.abc import Callable

    from benchmarks.stdio_client import Server
    from benchmarks.suite import Figures

FULL_CALLS, QUICK_CALLS = 10_000, 1_000


def measure(server: Server, calls: int, workdir: str) -> Callable[[int], Figures]:
    """One run of ``server``: a fresh process, the seeded calls timed, its counters checked."""
    command = server.command
    assert command is not None

    def one(number: int) -> Figures:
        # ``number`` is the repetition's: every server of a repetition gets
        # the very same calls (and commit mode a fresh database file).
        plan = stdio_client.plan_workload(calls, seed=number, sessions=SESSIONS)
        return stdio_client.run_once(command(number), plan, workdir, sessions=SESSIONS, in_flight=IN_FLIGHT)

    return one


class Stdio(Scenario):
    name = "stdio"
    title = "MCP over stdio: actorstate against a bare Python SDK server and Node.js"
    about = (
        "One client on raw pipes keeps 32 requests in flight over 50 sessions: `increment_counter` 40 %, "
        "`record_action` with 64-byte details 20 %, `set_preference` 20 %, `get_context` 20 %, the same "
        "seeded calls for every server of a repetition. Servers: `actorstate serve` in commit mode (a "
        "fresh SQLite file per run), in commit mode on a store that costs nothing (the library's in-memory store, "
        "written on the event loop: no SQLite, no thread, no fsync: about the most any store could give commit mode) and "
        "in memory mode; the Python SDK's bare `MCPServer` with a dict and "
        "a lock per session; the Node.js TypeScript SDK server actorstate replaces (a `Map` and a "
        "promise-chain lock per session); the baselines persist nothing. Each run starts a fresh process. "
        "Server CPU is its user + system time per call over the timed calls (from /proc, in 10 ms ticks); "
        "start is process start to the first `tools/list` reply. The client shares the machine. Checked "
        "after every run: each session's `increment_counter` replies are exactly 1..n, its "
        "`record_action` replies 1..m, and `get_context` reports n and m."
    )
    metrics = (
        Metric("rate", "rate", "calls/s", "higher"),
        P50,
        P99,
        Metric("cpu_us", "server CPU/call", "µs", "lower", resolution="cpu_tick_us"),
        Metric("start_ms", "start to tools/list", "ms", "lower"),
    )
    plot_metrics = ("rate", "p99_ms", "cpu_us", "start_ms")

    def cases(self, plan: Plan) -> list[Case]:
        calls = QUICK_CALLS if plan.quick else FULL_CALLS
        servers = stdio_client.servers(plan.workdir)
        return [
            Case(
                {"in_flight": IN_FLIGHT, "sessions": SESSIONS, "calls": calls},
                {s.name: measure(s, calls, plan.workdir) for s in servers if s.command is not None},
                baseline=NODE,
                skipped={s.name: s.skipped for s in servers if s.skipped is not None},
                comparisons=[
                    (COMMIT, NODE),
                    (MEMORY, NODE),
                    (COMMIT, BARE_SDK),
                    (MEMORY, BARE_SDK),
                    (COMMIT, MEMORY),
                    (COMMIT_CEILING, NODE),
                    (COMMIT, COMMIT_CEILING),
                    (COMMIT_CEILING, MEMORY),
                ],
                ours=[COMMIT, MEMORY, COMMIT_CEILING],
                # Every run starts a fresh process, so a warm-up warms no
                # server; it warms the machine: the page cache holding the
                # interpreters, modules and node_modules, and the .pyc files
                # a first import after an edit (or node_modules after npm ci)
                # writes. Without it, the server that happens to run first
                # pays that one-off cost in its start time and rate, and the
                # first repetition's ratios with it. A server restarting in
                # service starts on a warm machine too, so the warm-up is kept.
                warmup=True,
            )
        ]
