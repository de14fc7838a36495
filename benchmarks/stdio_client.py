"""Driving an MCP server over stdio with a raw JSON-RPC client, and checking its counters.

The workload is the one the issue "The MCP call path" names: one client
keeps ``in_flight`` requests (32) in flight over ``sessions`` sessions
(50), a mix of ``increment_counter`` (40 %), ``record_action`` with
64-byte ``details`` (20 %), ``set_preference`` (20 %) and ``get_context``
(20 %), drawn from a seed so several servers can get the very same calls.

The client is a lightweight JSON-RPC client on raw pipes (the SDK's client
would be the bottleneck). After each run it checks the counters are exact:
the ``increment_counter`` replies of each session are exactly 1..n, its
``record_action`` replies count 1..m events, and ``get_context`` reports n
and m at the end; a run that breaks this raises ``BenchmarkFailure``.

A run's figures: calls/s, p50 and p99 latency, the server's CPU time per
call (utime + stime of all its threads from /proc, over the timed calls
only; /proc counts in clock ticks, 10 ms on most kernels, so a run needs
thousands of calls for this to mean much), and the time from process start
to the first ``tools/list`` reply. The client runs on the same machine and
takes CPU time of its own, which matters on a machine with few cores.

The servers (``servers``):

- ``actorstate serve`` in commit mode (a fresh SQLite file per run) and in
  memory mode;
- ``baselines/sdk_server.py``: the Python SDK's ``MCPServer`` on its own
  stdio transport, a dict and a lock per session, no persistence;
- ``baselines/node/server.mjs``: the TypeScript SDK's ``McpServer`` on its
  stdio transport, a ``Map`` and a promise-chain lock per session, no
  persistence (the Node.js server actorstate replaces). ``npm ci`` runs
  there on first use; without ``node`` and ``npm`` on PATH that server
  alone is skipped, with the reason.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from typing import IO, TYPE_CHECKING, Any

# The client's own cost per reply counts on a machine with few cores (the
# client and the server share them): replies are parsed in C.
import orjson

from benchmarks.machine import node_version
from benchmarks.suite import BenchmarkFailure, Figures, percentile

if TYPE_CHECKING:
    from collections.abc import Callable

BASELINES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baselines")
NODE_BASELINE_DIR = os.path.join(BASELINES, "node")

IN_FLIGHT = 32
SESSIONS = 50
# The tools of the mix and their shares of the calls, in percent.
MIX: tuple[tuple[str, int], ...] = (
    ("increment_counter", 40),
    ("record_action", 20),
    ("set_preference", 20),
    ("get_context", 20),
)
DETAILS = "d" * 64  # record_action's details: 64 bytes of ASCII
# set_preference cycles through this many keys, so metadata stays small
# however long a run is and every reply costs about the same.
PREFERENCE_KEYS = 8

COMMIT = "actorstate (commit, SQLite)"
MEMORY = "actorstate (memory)"
# Commit mode on a store that costs nothing (benchmarks/probes/commit_ceiling.py).
COMMIT_CEILING = "actorstate (commit, store costing nothing)"
COMMIT_CEILING_SERVER = os.path.join(os.path.dirname(BASELINES), "probes", "commit_ceiling.py")
BARE_SDK = "bare Python SDK (memory)"
NODE = "Node.js TS SDK (memory)"

READ_TIMEOUT = 60.0  # seconds without a reply before a server counts as hung
CLOSE_TIMEOUT = 30.0  # seconds a server gets to exit after end of input


@dataclasses.dataclass(frozen=True)
class Server:
    """One server: its name and how to start it, or why it is skipped.

    ``command`` gets the run's number, so commit mode can use a fresh database per run.
    """

    name: str
    command: Callable[[int], list[str]] | None
    skipped: str | None = None


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of the workload: a tool, on the session with this index."""

    tool: str
    session: int


# -- the wire ---------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, all its threads included."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces: split after its ")".
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_words(stderr: IO[bytes]) -> str:
    """The tail of a server's stderr (a file it writes), to explain a failure."""
    stderr.seek(0)
    tail = stderr.read()[-600:].decode(errors="replace").strip()
    return f"; its stderr ends:\n{tail}" if tail else ""


class Wire:
    """Raw JSON-RPC over a server process's pipes.

    The server's stderr goes to a temporary file, so a server that dies or
    stops answering can be reported with its last words.
    """

    def __init__(self, command: list[str], cwd: str) -> None:
        self.stderr = tempfile.TemporaryFile(dir=cwd)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, cwd=cwd
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin = self.process.stdin.fileno()
        self.stdout = self.process.stdout.fileno()
        self.buffer = b""
        self.next_id = 0

    def write(self, data: bytes) -> None:
        """Write all of ``data``; pipes may take it in pieces."""
        while data:
            data = data[os.write(self.stdin, data) :]

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and wait for its reply (the set-up and check calls, untimed)."""
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.write(json.dumps(message).encode() + b"\n")
        while True:
            for reply in self.read():
                if reply.get("id") == self.next_id:
                    return reply

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call one tool and return its result; an error reply fails the benchmark."""
        reply = self.request("tools/call", {"name": name, "arguments": arguments})
        return self.checked_result(reply, name)

    def checked_result(self, reply: dict[str, Any], tool: str) -> dict[str, Any]:
        """The ``result`` of a tool call's reply; a JSON-RPC error or ``isError`` fails the benchmark."""
        result = reply.get("result")
        if result is None or result.get("isError"):
            raise BenchmarkFailure(f"{tool} answered an error: {json.dumps(reply)[:300]}")
        checked: dict[str, Any] = result
        return checked

    def read(self) -> list[dict[str, Any]]:
        """The replies whose whole lines have arrived by now (at least one chunk is awaited)."""
        if not select.select([self.stdout], [], [], READ_TIMEOUT)[0]:
            raise BenchmarkFailure(f"no reply for {READ_TIMEOUT:.0f} s{self.last_words()}")
        chunk = os.read(self.stdout, 1 << 20)
        if not chunk:
            raise BenchmarkFailure(f"the server closed its output{self.last_words()}")
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [orjson.loads(line) for line in lines if line.strip()]

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def last_words(self) -> str:
        return last_words(self.stderr)

    def close(self) -> None:
        """End the input and wait for the server to exit (killed if it will not)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.stderr.close()


# -- the workload -------------------------------------------------------------------


def plan_workload(calls: int, seed: int, sessions: int = SESSIONS) -> list[Call]:
    """The calls of one run: tools drawn by the mix's shares, sessions uniformly.

    Seeded, so every server given the same seed gets the very same sequence.
    """
    rng = random.Random(seed)
    tools = [tool for tool, _ in MIX]
    weights = [share for _, share in MIX]
    return [Call(tool, rng.randrange(sessions)) for tool in rng.choices(tools, weights, k=calls)]


def encode_requests(plan: list[Call], session_ids: list[str], first_id: int) -> list[bytes]:
    """The JSON-RPC lines of the plan, ids counting from ``first_id``.

    Encoded before the clock starts: the client shares the machine with the
    server, and every microsecond it spends is one the server cannot.
    """
    lines = []
    for offset, call in enumerate(plan):
        arguments: dict[str, Any] = {"sessionId": session_ids[call.session]}
        if call.tool == "record_action":
            arguments |= {"action": "step", "details": DETAILS}
        elif call.tool == "set_preference":
            arguments |= {"key": f"pref{offset % PREFERENCE_KEYS}", "value": f"value {offset}"}
        message = {
            "jsonrpc": "2.0",
            "id": first_id + offset,
            "method": "tools/call",
            "params": {"name": call.tool, "arguments": arguments},
        }
        lines.append(json.dumps(message).encode() + b"\n")
    return lines


def structured(result: dict[str, Any]) -> dict[str, Any]:
    """A tool result's structured content, or its text read as JSON for a server without it."""
    content: dict[str, Any] = result.get("structuredContent") or json.loads(result["content"][0]["text"])
    return content


_TOTAL_EVENTS = re.compile(r"Total events in session: (\d+)")


def recorded_total(result: dict[str, Any]) -> int:
    """The event count a ``record_action`` reply states (every server says it in its text)."""
    match = _TOTAL_EVENTS.search(result["content"][0]["text"])
    if match is None:
        raise BenchmarkFailure(f"record_action's reply names no event count: {result}")
    return int(match.group(1))


# -- one run ----------------------------------------------------------------------


def handshake(wire: Wire) -> float:
    """Open the MCP session; return ms from process start to the first tools/list reply."""
    wire.request(
        "initialize",
        {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "actorstate-benchmarks", "version": "1"},
        },
    )
    wire.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
    tools = wire.request("tools/list")
    start_ms = (time.perf_counter() - wire.started) * 1000
    names = {tool["name"] for tool in tools["result"]["tools"]}
    missing = {tool for tool, _ in MIX} - names
    if missing:
        raise BenchmarkFailure(f"the server lists no {', '.join(sorted(missing))}")
    return start_ms


def drive(
    wire: Wire, plan: list[Call], lines: list[bytes], first_id: int, in_flight: int
) -> tuple[list[float], list[Any]]:
    """Send the plan's requests, ``in_flight`` at a time, and collect every reply.

    A new request goes out as soon as a reply comes in, so the server always
    has ``in_flight`` requests to work on (fewer only at the very end).

    Returns:
        The latencies in seconds (in reply order) and, by position in the
        plan, what each reply says: the counter value for
        ``increment_counter``, the event count for ``record_action``, None
        for the others.
    """
    calls = len(plan)
    sent_at = [0.0] * calls
    outcomes: list[Any] = [None] * calls
    latencies: list[float] = []
    next_index = min(in_flight, calls)
    now = time.perf_counter()
    for index in range(next_index):
        sent_at[index] = now
    wire.write(b"".join(lines[:next_index]))
    done = 0
    while done < calls:
        batch: list[bytes] = []
        for reply in wire.read():
            now = time.perf_counter()
            if "id" not in reply:  # a notification (a log line, progress): no call's reply
                continue
            index = reply["id"] - first_id
            latencies.append(now - sent_at[index])
            tool = plan[index].tool
            result = wire.checked_result(reply, tool)
            if tool == "increment_counter":
                outcomes[index] = structured(result)["value"]
            elif tool == "record_action":
                outcomes[index] = recorded_total(result)
            done += 1
            if next_index < calls:
                sent_at[next_index] = now
                batch.append(lines[next_index])
                next_index += 1
        if batch:
            wire.write(b"".join(batch))
    return latencies, outcomes


def check_counters(wire: Wire, plan: list[Call], outcomes: list[Any], session_ids: list[str]) -> int:
    """Check every session's counters are exact; return how many increments were checked.

    Per session, the ``increment_counter`` replies must be exactly 1..n and
    the ``record_action`` replies 1..m (in some order: requests in flight
    may be answered out of order, but none may be lost or counted twice),
    and ``get_context`` must then report the counter n and m events.

    Error handling:
        BenchmarkFailure: naming the first session whose counts are wrong.
    """
    increments: list[list[int]] = [[] for _ in session_ids]
    records: list[list[int]] = [[] for _ in session_ids]
    for call, outcome in zip(plan, outcomes, strict=True):
        if call.tool == "increment_counter":
            increments[call.session].append(outcome)
        elif call.tool == "record_action":
            records[call.session].append(outcome)
    for index, session_id in enumerate(session_ids):
        n, m = len(increments[index]), len(records[index])
        context = structured(wire.call_tool("get_context", {"sessionId": session_id, "maxTurns": 1}))
        counter = context["metadata"].get("counter", 0)
        problems = []
        if sorted(increments[index]) != list(range(1, n + 1)):
            problems.append(f"increment_counter replies are not 1..{n}")
        if sorted(records[index]) != list(range(1, m + 1)):
            problems.append(f"record_action replies are not 1..{m}")
        if counter != n:
            problems.append(f"get_context reports counter {counter} after {n} increments")
        if context["totalEvents"] != m:
            problems.append(
                f"get_context reports {context['totalEvents']} events after {m} record_action calls"
            )
        if problems:
            raise BenchmarkFailure(f"counters not exact on session {session_id}: {'; '.join(problems)}")
    return sum(len(values) for values in increments)


def run_once(
    command: list[str], plan: list[Call], workdir: str, sessions: int = SESSIONS, in_flight: int = IN_FLIGHT
) -> Figures:
    """Start one server, create the sessions, run the plan timed, check the counters, stop it.

    Returns rate, p50_ms, p99_ms, cpu_us and start_ms (see the module's
    docstring), with the calls made and the increments checked.

    Error handling:
        BenchmarkFailure: the server answered an error, miscounted, or
        stopped answering.
    """
    wire = Wire(command, workdir)
    try:
        start_ms = handshake(wire)
        session_ids = [
            structured(wire.call_tool("create_session", {"clientId": "bench"}))["sessionId"]
            for _ in range(sessions)
        ]
        first_id = wire.next_id + 1
        lines = encode_requests(plan, session_ids, first_id)
        cpu_before = wire.cpu_seconds()
        started = time.perf_counter()
        latencies, outcomes = drive(wire, plan, lines, first_id, in_flight)
        elapsed = time.perf_counter() - started
        cpu = wire.cpu_seconds() - cpu_before
        wire.next_id = first_id + len(plan)  # the check's requests follow the plan's ids
        increments = check_counters(wire, plan, outcomes, session_ids)
    finally:
        wire.close()
    latencies.sort()
    calls = len(plan)
    return {
        "rate": calls / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_us": cpu / calls * 1e6,
        # CPU time comes from /proc in clock ticks: one tick, per call, is all it can resolve.
        "cpu_tick_us": 1 / os.sysconf("SC_CLK_TCK") / calls * 1e6,
        "start_ms": start_ms,
        "calls": calls,
        "increments": increments,
    }


# -- the servers -----------------------------------------------------------------


def _node_modules_current() -> bool:
    """Whether node_modules holds exactly the versions package.json pins."""
    with open(os.path.join(NODE_BASELINE_DIR, "package.json")) as file:
        pinned: dict[str, str] = json.load(file)["dependencies"]
    for name, version in pinned.items():
        installed = os.path.join(NODE_BASELINE_DIR, "node_modules", name, "package.json")
        try:
            with open(installed) as file:
                if json.load(file)["version"] != version:
                    return False
        except FileNotFoundError:
            return False
    return True


def prepare_node_baseline() -> Server:
    """The Node.js server, installed with ``npm ci`` when its node_modules is missing or stale.

    Without node or npm on PATH, with a node older than the SDK supports, or
    when ``npm ci`` fails, the server comes back skipped with the reason.
    """
    version = node_version()
    npm = shutil.which("npm")
    if version is None or npm is None:
        missing = " and ".join(tool for tool, found in (("node", version), ("npm", npm)) if not found)
        return Server(NODE, None, f"{missing} not found on PATH")
    major = int(version.lstrip("v").split(".")[0])
    if major < 18:
        return Server(NODE, None, f"node {version} is too old: the TypeScript SDK needs 18 or later")
    # A lock on the lock file: two benchmarks (or test runs) starting at once
    # must not both rewrite node_modules.
    with open(os.path.join(NODE_BASELINE_DIR, "package-lock.json")) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _node_modules_current():
            print("installing the Node.js baseline: npm ci in benchmarks/baselines/node", file=sys.stderr)
            completed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_BASELINE_DIR,
                capture_output=True,
                text=True,
                check=False,
            )
            if completed.returncode != 0:
                last = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
                return Server(NODE, None, f"npm ci failed (exit {completed.returncode}): {last}")
    command = [shutil.which("node") or "node", os.path.join(NODE_BASELINE_DIR, "server.mjs")]
    return Server(NODE, lambda number: command)


def servers(workdir: str) -> list[Server]:
    """The five servers, in the order the tables list them; commit mode's databases go in ``workdir``."""
    actorstate = [sys.executable, "-m", "actorstate", "serve"]
    return [
        Server(COMMIT, lambda number: [*actorstate, "--db", os.path.join(workdir, f"stdio-{number}.db")]),
        Server(COMMIT_CEILING, lambda number: [sys.executable, COMMIT_CEILING_SERVER]),
        Server(MEMORY, lambda number: [*actorstate, "--durability", "memory"]),
        Server(BARE_SDK, lambda number: [sys.executable, os.path.join(BASELINES, "sdk_server.py")]),
        prepare_node_baseline(),
    ]
