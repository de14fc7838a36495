"""MCP over Streamable HTTP: 100 concurrent clients against actorstate and a bare SDK HTTP server.

Each measurement starts one server process. 100 clients, each on its own
keep-alive connection (``benchmarks/http_client.py``) and, for actorstate,
with its own bearer token (so each is its own principal, as a team would
be, and sees only its own sessions), each create a session and send the
stdio scenario's mix of calls on it, one at a time. actorstate runs in commit mode (every reply after its commit)
and in memory mode; the baseline is the SDK's ``MCPServer`` on its own
Streamable HTTP server (uvicorn), a dict and a lock per session, no
persistence and no authentication. Checked after every run: each session's
``increment_counter`` replies are exactly 1..n, its ``record_action``
replies 1..m, and ``get_context`` reports n and m; any error reply (a limit
answering 429 or 503 included) fails the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

from benchmarks.drivers import run_measurement
from benchmarks.http_client import HttpMcpClient
from benchmarks.stdio_client import (
    DETAILS,
    PREFERENCE_KEYS,
    last_words,
    plan_workload,
    process_cpu_seconds,
    recorded_total,
    structured,
)
from benchmarks.suite import P50, P99, BenchmarkFailure, Case, Metric, Plan, Scenario, latency_figures

if TYPE_CHECKING:
    from collections.abc import Callable

    from benchmarks.stdio_client import Call
    from benchmarks.suite import Figures

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = 100
COMMIT, MEMORY, BARE_SDK = "actorstate (commit, SQLite)", "actorstate (memory)", "bare Python SDK (memory)"
LISTENING = re.compile(rb"serving MCP over HTTP at http://([\d.]+):(\d+)(/\S*)")
START_TIMEOUT = 60.0


class ServerProcess:
    """A server process to benchmark: its address once it listens, its CPU time, its last words."""

    def __init__(self, command: list[str], workdir: str, port: int | None = None) -> None:
        self.stderr = tempfile.TemporaryFile(dir=workdir)
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr, cwd=workdir
        )
        self.host, self.port, self.path = "127.0.0.1", port or 0, "/mcp"
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkFailure(f"the server exited with {self.process.returncode}{self.last_words()}")
            if self.port:  # told its port: listening once it accepts
                try:
                    socket.create_connection((self.host, self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            else:  # it names its port on stderr
                self.stderr.seek(0)
                found = LISTENING.search(self.stderr.read())
                if found:
                    self.host, self.port, self.path = found[1].decode(), int(found[2]), found[3].decode()
                    return
            select.select([], [], [], 0.05)
        raise BenchmarkFailure(f"the server did not listen within {START_TIMEOUT:.0f} s{self.last_words()}")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def last_words(self) -> str:
        return last_words(self.stderr)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def arguments_of(call: Call, index: int, session_ids: list[str]) -> dict[str, Any]:
    arguments: dict[str, Any] = {"sessionId": session_ids[call.session]}
    if call.tool == "record_action":
        arguments |= {"action": "step", "details": DETAILS}
    elif call.tool == "set_preference":
        arguments |= {"key": f"pref{index % PREFERENCE_KEYS}", "value": f"value {index}"}
    return arguments


async def drive(server: ServerProcess, tokens: list[str | None], plan: list[Call]) -> Figures:
    """Create the sessions, run the plan timed, check the counters."""
    clients = [HttpMcpClient(server.host, server.port, server.path, token) for token in tokens]
    try:
        for client in clients:
            await client.connect()
        figures, _ = await run_plan(clients, [server], plan)
    finally:
        for client in clients:
            await client.close()
    return figures


async def run_plan(
    clients: list[HttpMcpClient], servers: list[ServerProcess], plan: list[Call]
) -> tuple[Figures, list[str]]:
    """Each connected client's own session (over HTTP a principal sees only its own), then the
    plan's calls over the clients, timed, the counters checked: the figures (CPU summed over
    ``servers``) and the session ids."""
    session_ids = [structured(await client.call("create_session", {}))["sessionId"] for client in clients]
    outcomes: list[Any] = [None] * len(plan)
    latencies: list[float] = []
    clock = time.perf_counter

    async def one_client(number: int) -> None:
        client = clients[number]
        for index in range(number, len(plan), len(clients)):  # the calls on its session
            call = plan[index]
            started = clock()
            result = await client.call(call.tool, arguments_of(call, index, session_ids))
            latencies.append(clock() - started)
            if call.tool == "increment_counter":
                outcomes[index] = structured(result)["value"]
            elif call.tool == "record_action":
                outcomes[index] = recorded_total(result)

    cpu_before = sum(server.cpu_seconds() for server in servers)
    started = clock()
    await asyncio.gather(*(one_client(number) for number in range(len(clients))))
    elapsed = clock() - started
    cpu = sum(server.cpu_seconds() for server in servers) - cpu_before
    await check_counters(clients, plan, outcomes, session_ids)
    figures: Figures = {
        "rate": len(plan) / elapsed,
        **latency_figures(latencies),
        "cpu_us": cpu / len(plan) * 1e6,
    }
    return figures, session_ids


async def check_counters(
    clients: list[HttpMcpClient], plan: list[Call], outcomes: list[Any], ids: list[str]
) -> None:
    increments: list[list[int]] = [[] for _ in ids]
    records: list[list[int]] = [[] for _ in ids]
    for call, outcome in zip(plan, outcomes, strict=True):
        if call.tool == "increment_counter":
            increments[call.session].append(outcome)
        elif call.tool == "record_action":
            records[call.session].append(outcome)
    for index, session_id in enumerate(ids):
        n, m = len(increments[index]), len(records[index])
        context = structured(
            await clients[index].call("get_context", {"sessionId": session_id, "maxTurns": 1})
        )
        if sorted(increments[index]) != list(range(1, n + 1)) or context["metadata"].get("counter", 0) != n:
            raise BenchmarkFailure(f"session {session_id}: increments not exact ({n} made)")
        if sorted(records[index]) != list(range(1, m + 1)) or context["totalEvents"] != m:
            raise BenchmarkFailure(f"session {session_id}: recorded actions not exact ({m} made)")


def make_tokens(workdir: str) -> tuple[str, list[str | None]]:
    """A tokens file with a token per client (made once per run)."""
    from actorstate.transport.tokens import add_token

    path = os.path.join(workdir, "http-tokens.json")
    tokens: list[str | None] = [add_token(path, f"client-{number}") for number in range(CLIENTS)]
    return path, tokens


def measure(
    name: str, plan_calls: int, workdir: str, tokens_file: str, tokens: list[str | None]
) -> Callable[[int], Figures]:
    def one(number: int) -> Figures:
        if name == BARE_SDK:
            port = free_port()
            command = [sys.executable, os.path.join(HERE, "baselines", "sdk_server.py"), "--http", str(port)]
            server = ServerProcess(command, workdir, port)
            clients: list[str | None] = [None] * CLIENTS
        else:
            durability = (
                ["--db", os.path.join(workdir, f"http-{number}.db")]
                if name == COMMIT
                else ["--durability", "memory"]
            )
            command = [
                sys.executable,
                "-m",
                "actorstate",
                "serve",
                "--http",
                "127.0.0.1:0",
                "--tokens-file",
                tokens_file,
                *durability,
            ]
            server = ServerProcess(command, workdir)
            clients = tokens
        try:
            # Call i goes to client i mod 100, on that client's session.
            plan = [
                dataclasses.replace(call, session=index % CLIENTS)
                for index, call in enumerate(plan_workload(plan_calls, seed=number, sessions=CLIENTS))
            ]
            return run_measurement(drive, server, clients, plan, backend="asyncio", what=name)
        finally:
            server.stop()

    return one


class Http(Scenario):
    name = "http"
    title = "MCP over Streamable HTTP: 100 concurrent clients"
    about = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
    metrics = (
        Metric("rate", "rate", "calls/s", "higher"),
        P50,
        P99,
        Metric("cpu_us", "server CPU/call", "µs", "lower"),
    )
    plot_metrics = ("rate", "p99_ms", "cpu_us")

    def cases(self, plan: Plan) -> list[Case]:
        calls = 600 if plan.quick else 20_000
        tokens_file, tokens = make_tokens(plan.workdir)
        systems = {
            name: measure(name, calls, plan.workdir, tokens_file, tokens)
            for name in (COMMIT, MEMORY, BARE_SDK)
        }
        return [
            Case(
                {"clients": CLIENTS, "sessions": CLIENTS, "calls": calls},
                systems,
                baseline=BARE_SDK,
                comparisons=[(COMMIT, BARE_SDK), (MEMORY, BARE_SDK), (COMMIT, MEMORY)],
                ours=[COMMIT, MEMORY],
            )
        ]
