"""Calls per second over stdio: actorstate's MCP server against a bare SDK server.

A lightweight JSON-RPC client (raw pipes, not the SDK client, which would be
the bottleneck) keeps 32 ``increment_counter`` requests in flight against
one server process and checks the final counter is exact. Both servers run
in the same benchmark, alternately:

- ``actorstate serve`` (commit mode on a fresh SQLite file, and memory mode);
- ``benchmarks/sdk_baseline_server.py``: ``MCPServer`` on the SDK's stdio
  transport with a dict and a lock per session (no persistence).

Reports calls/s, p50/p99 latency, the server's CPU time per call (from
/proc), and the time from process start to the first ``tools/list`` reply.

    python benchmarks/bench_stdio.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

IN_FLIGHT = 32
HERE = os.path.dirname(os.path.abspath(__file__))


class Wire:
    """Raw JSON-RPC over a child's pipes."""

    def __init__(self, command: list[str]) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin = self.process.stdin.fileno()
        self.stdout = self.process.stdout.fileno()
        self.buffer = b""
        self.next_id = 0

    def write(self, messages: list[dict[str, Any]]) -> None:
        data = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
        while data:
            data = data[os.write(self.stdin, data) :]

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.write([message])
        while True:
            for reply in self.read():
                if reply.get("id") == self.next_id:
                    return reply

    def read(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        if not select.select([self.stdout], [], [], timeout)[0]:
            raise TimeoutError("the server stopped answering")
        chunk = os.read(self.stdout, 1 << 20)
        if not chunk:
            raise EOFError("the server closed its output")
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line]

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def run(command: list[str], calls: int) -> dict[str, float]:
    wire = Wire(command)
    wire.request(
        "initialize",
        {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    )
    wire.write([{"jsonrpc": "2.0", "method": "notifications/initialized"}])
    wire.request("tools/list")
    first_reply = time.perf_counter() - wire.started
    created = wire.request("tools/call", {"name": "create_session", "arguments": {}})
    session_id = json.loads(created["result"]["content"][0]["text"])["sessionId"]

    def increment(request_id: int) -> dict[str, Any]:
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": "increment_counter", "arguments": {"sessionId": session_id}},
        }

    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    values: list[int] = []
    base = wire.next_id + 1
    next_id = base
    cpu_before = wire.cpu_seconds()
    started = time.perf_counter()
    first = [increment(i) for i in range(next_id, next_id + IN_FLIGHT)]
    for message in first:
        sent_at[message["id"]] = time.perf_counter()
    wire.write(first)
    next_id += IN_FLIGHT
    done = 0
    while done < calls:
        batch = []
        for reply in wire.read():
            now = time.perf_counter()
            latencies.append(now - sent_at.pop(reply["id"]))
            result = reply["result"]
            assert not result.get("isError"), result
            values.append(
                result["structuredContent"]["value"]
                if "structuredContent" in result
                else json.loads(result["content"][0]["text"])["value"]
            )
            done += 1
            if next_id < base + calls:
                message = increment(next_id)
                sent_at[next_id] = now
                batch.append(message)
                next_id += 1
        if batch:
            wire.write(batch)
    elapsed = time.perf_counter() - started
    cpu = wire.cpu_seconds() - cpu_before
    wire.close()
    assert sorted(values) == list(range(1, calls + 1)), "counter results are not exact"
    latencies.sort()
    return {
        "rate": calls / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "cpu_us": cpu / calls * 1e6,
        "start_ms": first_reply * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, calls = (1, 2000) if args.quick else (3, 10000)
    with tempfile.TemporaryDirectory() as workdir:
        servers = {
            "actorstate (commit, SQLite)": lambda i: [
                sys.executable,
                "-m",
                "actorstate",
                "serve",
                "--db",
                os.path.join(workdir, f"bench{i}.db"),
            ],
            "actorstate (memory)": lambda i: [
                sys.executable,
                "-m",
                "actorstate",
                "serve",
                "--durability",
                "memory",
            ],
            "bare SDK server (memory)": lambda i: [
                sys.executable,
                os.path.join(HERE, "sdk_baseline_server.py"),
            ],
        }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for round_number in range(rounds):
            for name, command in servers.items():
                results[name].append(run(command(round_number), calls))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    print(
        f"stdio: {IN_FLIGHT} increment_counter requests in flight on one session, {calls:,} calls, "
        f"median of {rounds} rounds; counters checked exact\n"
    )
    print(
        f"{'server':28} {'calls/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/call':>12} {'start->tools/list ms':>21}"
    )
    medians = {}
    for name, rows in results.items():
        medians[name] = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        m = medians[name]
        print(
            f"{name:28} {m['rate']:>9,.0f} {m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f} {m['cpu_us']:>12.0f} {m['start_ms']:>21.0f}"
        )
    baseline = medians["bare SDK server (memory)"]["rate"]
    for name in ("actorstate (commit, SQLite)", "actorstate (memory)"):
        print(f"ratio {name} / bare SDK: {medians[name]['rate'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
