"""The chaos runner: a real server, concurrent clients, seeded faults, a checked history.

One run (:func:`run_chaos`):

1. starts ``actorstate serve`` on a database in the output directory and
   completes the MCP handshake on its pipes;
2. the workers create the sessions (one slot per session, each owned by one
   ``clientId``), then call the tools as their plans say
   (:mod:`.workload`), each with one call outstanding, all multiplexed over
   the one connection, every call recorded in the history;
3. meanwhile the fault schedule (:mod:`.faults`) runs: kill, term and stop,
   with a restart after the first two; lock, the database's write lock taken
   by the runner's own connection past the server's busy timeout; second, a
   second server on the same database, to which every other call of each
   worker goes while it serves (recorded as process ``w3@second-1``: the
   worker and the server), until its input ends; full, the database's own
   small file system filled up (:mod:`.disk`; else its page limit through the
   server's fault seam); ioerror, slow and evict, through the server's fault
   seam (:mod:`actorstate.fault_seam`); wire, bad input among the calls;
   flood, a burst of concurrent increments on one session; drop, calls
   dropped by their clients and retried under the same ``requestId``;
4. after the duration (and after the last fault, and a calm moment more),
   the workers stop, the server is restarted if it is down, and every
   session is read back (``get_context`` of each, the final state the
   checkers see); the server's input is closed, so it exits;
5. :func:`~.checkers.check_history` judges the history.

Over HTTP (``transport="http"``, :mod:`.http_server`) the server is
``actorstate serve --http`` with a tokens file the runner makes: a token
for each of ``principals`` principals (and an operator's, for
``server_stats``). Each session slot is owned by one principal, every call
on it is made with that principal's token (a principal's workers are
concurrent HTTP clients), and a ``drop`` closes the call's connection
mid-request. The odd-numbered principals speak the older protocol (their
calls go under a protocol session, opened again after a restart), the
others 2026-07-28. Throughout the run a prober makes *cross-principal
probes* (:func:`~.checkers.check_probes`): principal B calls a tool, reads
the session resource, or sends a request under A's protocol session, with
the id of principal A's session, then makes the same call with an id that
was never minted; the two must be answered alike. Now and then a principal
lists its sessions, which must name none of another's (nor an ended one). Bad input (``wire``) is
for stdio only.

How a call is recorded: ``ok`` with the reply's ``structuredContent``;
``fail`` only when the server certainly did not apply it (session not found,
overloaded, quarantined); ``info`` (outcome unknown) for everything else:
timeouts, ``Connection closed``, a server gone before answering, store
errors. Over stdio any client may reach any session, so each call is made
as the owner of its session; nothing probes across clients.

Everything random comes from one ``random.Random(seed)``: the fault
schedule, then one seed per worker for its plan. What the operating system's
timing decides (how far each worker gets, which calls a fault catches in
flight) is not reproducible; :func:`plan_run` is, and is what a replay
repeats.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import random
import signal
import sqlite3
import time
import uuid
from typing import IO, TYPE_CHECKING, Any, TextIO

import anyio
import anyio.lowlevel

from ..config import Config
from ..errors import SessionNotFound
from ..fault_seam import CONTROL_VARIABLE
from ..planted import ENVIRONMENT_VARIABLE, check_names
from .bad_input import bad_message
from .checkers import NO_REPLY, PROBE_PROCESS, check_history
from .disk import SmallFileSystem
from .faults import (
    ALL_FAULT_KINDS,
    CLUSTER_FAULT_KINDS,
    FAULT_KINDS,
    HTTP_FAULT_KINDS,
    NODE_LEASE,
    RECORDED_KIND,
    SEAM_KINDS,
    PlannedFault,
    plan_faults,
)
from .history import HistoryRecorder, Phase, dumps_record
from .http_server import OPERATOR, HttpServerProcess, http_serve_command
from .report import percentile, summarize, window_jsonl
from .server import Reply, ServerGone, ServerProcess, serve_command
from .workload import PlannedCall, owner_of, plan_calls

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from anyio.abc import TaskGroup

    from .checkers import Violation
    from .history import Call, History, Record
    from .report import Summary

__all__ = [
    "KEYED_TOOLS",
    "STORES",
    "TRANSPORTS",
    "ChaosRun",
    "RunOptions",
    "RunPlan",
    "RunResult",
    "SessionSlot",
    "not_applied",
    "plan_run",
    "replay_command",
    "run_chaos",
    "run_result",
]

TRANSPORTS = ("stdio", "http")
# sqlite: one server on a file; postgres: several nodes on one PostgreSQL database (.cluster).
STORES = ("sqlite", "postgres")
# Either kind of server process; over HTTP, each call names the principal it is made as.
AnyServer = ServerProcess | HttpServerProcess

# Replies that prove the server did not apply the call; any other error is an unknown outcome.
_NOT_APPLIED = (
    "Session not found or expired",
    "calls waiting and none finished",  # Overloaded
    "end it, or restart the server",  # SessionQuarantined
)
# The writes that take an idempotency key.
KEYED_TOOLS = frozenset({"add_context", "record_action", "set_preference", "increment_counter"})
# A dropped call is dropped after up to this many seconds: often before its reply, sometimes after it ran.
DROP_DELAY = 0.005
# Bad input is sent this often while a ``wire`` fault lasts.
BAD_INPUT_EVERY = 0.01
# After a fault ends, the next one waits at least this long, so calm calls separate them.
CALM_BETWEEN_FAULTS = 0.5
# The run goes on this long after its last fault, so the recovered server is seen serving.
CALM_AFTER_FAULTS = 1.0
CREATE_ATTEMPTS = 5
# A run that breaks an invariant often breaks it many times (a lost commit shows in every later
# read): the first violations get a window file each and a line in the report.
WINDOW_FILES = 100
REPORTED_VIOLATIONS = 20
# HTTP: a cross-principal probe (and its unknown-id control) this often, all run long...
PROBE_EVERY = 0.05
# ...and every this many probes, a principal lists its sessions.
LIST_EVERY = 5
# What a probe calls with another principal's session id (read_resource: its session:// resource).
READ_RESOURCE = "read_resource"
# A probe sending tools/list under another principal's protocol session (the older protocol).
PROTOCOL_SESSION = "protocol_session"
PROBE_TOOLS = (
    "get_context",
    "add_context",
    "record_action",
    "set_preference",
    "increment_counter",
    "end_session",
    READ_RESOURCE,
    PROTOCOL_SESSION,
)


@dataclasses.dataclass(frozen=True, slots=True)
class RunOptions:
    """A run's settings: all that :func:`replay_command` needs, and where its files go."""

    seed: int
    out: Path
    duration: float = 30.0
    clients: int = 8
    sessions: int = 32
    faults: tuple[str, ...] = FAULT_KINDS
    durability: str = "commit"
    # Seconds a client waits for a reply before recording an unknown outcome.
    timeout: float = 1.0
    # Seconds a server may take to start and answer initialize.
    start_timeout: float = 60.0
    # Planted server bugs (actorstate.planted) the servers run with: the checkers must catch them.
    planted_bugs: tuple[str, ...] = ()
    # stdio: one client on the server's pipes; http: principals with tokens, HTTP clients.
    transport: str = "stdio"
    # HTTP: the principals owning the sessions (each a token), at least two for the probes.
    principals: int = 3
    # sqlite: one server on a file; postgres: ``nodes`` HTTP nodes on a throwaway PostgreSQL.
    store: str = "sqlite"
    nodes: int = 1

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"--duration must be a positive number of seconds, not {self.duration}")
        if self.clients < 1:
            raise ValueError(f"--clients must be at least 1, not {self.clients}")
        if self.sessions < 1:
            raise ValueError(f"--sessions must be at least 1, not {self.sessions}")
        if self.durability not in ("commit", "interval"):
            raise ValueError(f"--durability must be commit or interval, not {self.durability!r}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"--transport must be {' or '.join(TRANSPORTS)}, not {self.transport!r}")
        if self.store not in STORES:
            raise ValueError(f"--store must be {' or '.join(STORES)}, not {self.store!r}")
        if self.store == "postgres":
            self._check_cluster()
        elif self.nodes != 1:
            raise ValueError(
                f"--nodes {self.nodes} needs --store postgres (nodes share a PostgreSQL database)"
            )
        elif set(self.faults) & set(CLUSTER_FAULT_KINDS) - set(FAULT_KINDS):
            cluster_only = sorted(set(self.faults) & set(CLUSTER_FAULT_KINDS) - set(FAULT_KINDS))
            raise ValueError(f"--faults {', '.join(cluster_only)} is for --store postgres")
        if self.transport == "http":
            if self.principals < 2:
                raise ValueError(
                    f"--principals must be at least 2 over HTTP (one probes the other's sessions), "
                    f"not {self.principals}"
                )
            stdio_only = sorted(set(self.faults) & set(FAULT_KINDS) - set(HTTP_FAULT_KINDS))
            if stdio_only and self.store == "sqlite":
                raise ValueError(
                    f"--faults {', '.join(stdio_only)} is for --transport stdio (bad lines on a pipe); "
                    f"over HTTP choose from {', '.join(HTTP_FAULT_KINDS)}"
                )
        unknown = sorted(set(self.faults) - set(ALL_FAULT_KINDS))
        if unknown:
            raise ValueError(
                f"--faults: unknown kind(s) {', '.join(unknown)}; choose from {', '.join(ALL_FAULT_KINDS)}"
            )
        http_only = sorted(set(self.faults) - set(FAULT_KINDS))
        if self.transport == "stdio" and http_only:
            raise ValueError(f"--faults {', '.join(http_only)} is for --transport http (tokens)")
        check_names(",".join(self.planted_bugs))

    def _check_cluster(self) -> None:
        if self.transport != "http":
            raise ValueError("--store postgres runs its nodes over HTTP: give --transport http")
        if self.nodes < 1:
            raise ValueError(f"--nodes must be at least 1, not {self.nodes}")
        foreign = sorted(set(self.faults) - set(CLUSTER_FAULT_KINDS))
        if foreign:
            raise ValueError(
                f"--faults {', '.join(foreign)} is not a cluster fault; with --store postgres choose from "
                f"{', '.join(CLUSTER_FAULT_KINDS)}"
            )


def replay_command(options: RunOptions) -> str:
    """The one-line command that runs ``options`` again (in a new output directory)."""
    return (
        f"actorstate chaos --seed {options.seed} --duration {options.duration:g} "
        f"--clients {options.clients} --sessions {options.sessions} "
        f"--faults {','.join(options.faults) or 'none'} --durability {options.durability}"
        + (f" --inject-bug {','.join(options.planted_bugs)}" if options.planted_bugs else "")
        + (f" --transport http --principals {options.principals}" if options.transport == "http" else "")
        + (f" --store postgres --nodes {options.nodes}" if options.store == "postgres" else "")
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RunPlan:
    """What the seed decides: the fault schedule and each worker's seed for its calls."""

    faults: tuple[PlannedFault, ...]
    worker_seeds: tuple[int, ...]
    sessions: int
    max_turns_limit: int

    @property
    def workers(self) -> tuple[str, ...]:
        return tuple(f"w{number}" for number in range(len(self.worker_seeds)))

    def calls(self, worker: int) -> Iterator[PlannedCall]:
        """Worker number ``worker``'s planned calls, endless."""
        return plan_calls(
            self.workers[worker],
            self.worker_seeds[worker],
            self.sessions,
            max_turns_limit=self.max_turns_limit,
        )

    def first_calls(self, count: int) -> dict[str, list[PlannedCall]]:
        """The first ``count`` planned calls of every worker: the workload, to compare runs."""
        return {
            worker: list(itertools.islice(self.calls(number), count))
            for number, worker in enumerate(self.workers)
        }


def plan_run(options: RunOptions, config: Config | None = None) -> RunPlan:
    """Draw the run's plan from ``random.Random(options.seed)``: faults first, then worker seeds."""
    config = config or Config()
    rng = random.Random(options.seed)
    faults = plan_faults(
        rng,
        options.faults,
        options.duration,
        timeout=options.timeout,
        busy_timeout=config.busy_timeout,
        lease=NODE_LEASE if options.store == "postgres" else None,
    )
    seeds = tuple(rng.getrandbits(64) for _ in range(options.clients))
    return RunPlan(faults, seeds, options.sessions, config.max_turns_limit)


@dataclasses.dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run: its history, what the checkers found, and anything else that went wrong.

    ``window_paths`` are the window files of the first violations (at most ``WINDOW_FILES``).
    """

    options: RunOptions
    history: History
    violations: list[Violation]
    summary: Summary
    lateness: list[float]
    problems: list[str]
    history_path: Path
    window_paths: list[Path]
    elapsed: float
    # Lines of the report only some runs have (a cluster's moves and fenced writes).
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.violations and not self.problems

    def _irreproducible(self) -> str:
        """What the operating system's timing decided, so a replay of the seed will differ in it."""
        per_worker = collections.Counter(
            call.process.split("@")[0]
            for call in self.history.calls
            if call.process.startswith("w") and call.process.split("@")[0][1:].isdigit()
        )
        made = ", ".join(
            f"{worker} {count}" for worker, count in sorted(per_worker.items(), key=_worker_order)
        )
        unknown = self.summary.outcomes.get(str(Phase.INFO), 0)
        late = max(self.lateness, default=0.0)
        return (
            "not decided by the seed (a replay differs here): calls each worker made "
            f"({made or 'none'}); which calls faults caught in flight ({unknown} unknown outcomes); "
            f"when faults began (up to {late:.2f} s after their planned moment)"
        )

    def _timing_lines(self) -> list[str]:
        """Recovery per fault kind, and latency during faults against the calm baseline."""
        lines = []
        outages: dict[str, list[float]] = collections.defaultdict(list)
        recoveries: dict[str, list[float]] = collections.defaultdict(list)
        for timing in self.summary.timings:
            outages[timing.kind].append(timing.outage)
            if timing.recovery is not None:
                recoveries[timing.kind].append(timing.recovery)
        if outages:
            lines.append(
                "per fault kind: outage (start to end: restart, hold) and recovery "
                "(end to the next acknowledged call), p50 / p99"
            )
            for kind, times in sorted(outages.items()):
                recovered = recoveries[kind]
                recovery = (
                    f"{percentile(recovered, 0.5) * 1000:.1f} / {percentile(recovered, 0.99) * 1000:.1f} ms"
                    if recovered
                    else "none"
                )
                never = len(times) - len(recovered)
                lines.append(
                    f"  {kind:<16} {len(times):>3} x  outage {percentile(times, 0.5):.2f} / "
                    f"{percentile(times, 0.99):.2f} s  recovery {recovery}"
                    + (f" ({never} never recovered)" if never else "")
                )
        latencies = self.summary.latencies
        for name, values in (("calm", latencies.calm), ("during faults", latencies.during_faults)):
            if values:
                lines.append(
                    f"latency {name}: p50 {percentile(values, 0.5) * 1000:.1f} ms, "
                    f"p99 {percentile(values, 0.99) * 1000:.1f} ms over {len(values)} acknowledged calls"
                )
        return lines

    def _probe_lines(self) -> list[str]:
        """HTTP: the cross-principal probes, and their answers' latency beside the controls'.

        For people, not a check: a probe of another principal's session should cost what an
        unknown id costs (its timing class), but one run's latencies under faults are noise.
        """
        probes = [call for call in self.history.calls if call.process.startswith(PROBE_PROCESS)]
        if not probes:
            return []

        def latencies(calls: list[Call]) -> list[float]:
            return [
                call.completion.monotonic_time - call.invoke.monotonic_time
                for call in calls
                if call.completion is not None and not (call.completion.error or "").startswith(NO_REPLY)
            ]

        aimed = latencies([call for call in probes if call.session is not None])
        controls = latencies([call for call in probes if call.session is None])
        line = f"cross-principal probes: {len(probes) // 2} ({len(aimed)} answered)"
        if aimed and controls:
            line += (
                f"; p50 / p99 latency: another's id {percentile(aimed, 0.5) * 1000:.1f} / "
                f"{percentile(aimed, 0.99) * 1000:.1f} ms, an unknown id "
                f"{percentile(controls, 0.5) * 1000:.1f} / {percentile(controls, 0.99) * 1000:.1f} ms"
            )
        return [line]

    def report(self) -> str:
        """The summary table: calls by tool and outcome, faults and recoveries, violations."""
        phases = [str(phase) for phase in Phase if phase is not Phase.INVOKE]
        lines = [f"{'tool':<20}" + "".join(f"{phase:>8}" for phase in phases)]
        for tool, counts in self.summary.calls.items():
            lines.append(f"{tool:<20}" + "".join(f"{counts.get(phase, 0):>8}" for phase in phases))
        lines.append(
            f"{'all':<20}" + "".join(f"{self.summary.outcomes.get(phase, 0):>8}" for phase in phases)
        )
        lines.append(f"calls: {self.summary.total_calls} in {self.elapsed:.1f} s")
        second = collections.Counter(str(call.phase) for call in self.history.calls if "@" in call.process)
        if second and self.options.store == "sqlite":  # a cluster's calls all name their node
            by_phase = ", ".join(f"{phase} {count}" for phase, count in sorted(second.items()))
            lines.append(f"calls through second servers: {by_phase}")
        faults = ", ".join(f"{kind} {count}" for kind, count in self.summary.faults.items())
        lines.append(f"faults: {faults or 'none'}")
        lines.extend(self._timing_lines())
        lines.extend(self._probe_lines())
        lines.extend(self.notes)
        lines.append(self._irreproducible())
        for problem in self.problems:
            lines.append(f"problem: {problem}")
        checkers = collections.Counter(violation.checker for violation in self.violations)
        by_checker = ", ".join(f"{checker} {count}" for checker, count in sorted(checkers.items()))
        lines.append(f"violations: {len(self.violations)}" + (f" ({by_checker})" if by_checker else ""))
        shown = list(zip(self.violations, self.window_paths, strict=False))[:REPORTED_VIOLATIONS]
        for violation, path in shown:
            lines.append(f"  {violation.checker} on {violation.session}: {violation.message} ({path.name})")
        if len(self.violations) > len(shown):
            lines.append(
                f"  and {len(self.violations) - len(shown)} more "
                f"(window files for the first {min(len(self.violations), WINDOW_FILES)})"
            )
        lines.append(f"history: {self.history_path}")
        return "\n".join(lines)


async def run_chaos(options: RunOptions, *, progress: TextIO | None = None) -> RunResult:
    """Run ``options`` against a real server process; ``progress`` gets a line a second."""
    if options.store == "postgres":
        from .cluster import run_cluster_chaos

        return await run_cluster_chaos(options, progress=progress)
    options.out.mkdir(parents=True, exist_ok=True)
    history_path = options.out / "history.jsonl"
    with history_path.open("w", encoding="utf-8") as history_file:

        def sink(record: Record) -> None:
            history_file.write(dumps_record(record) + "\n")

        run = ChaosRun(options, HistoryRecorder(sink=sink), progress)
        await run.run()
    history = run.recorder.history()
    return run_result(run, history, check_history(history, Config()), history_path)


def run_result(
    run: ChaosRun,
    history: History,
    violations: list[Violation],
    history_path: Path,
    notes: tuple[str, ...] = (),
) -> RunResult:
    """A finished run's result: its history judged by ``violations``, whose first windows are
    written beside the history."""
    window_paths = []
    for number, violation in enumerate(violations[:WINDOW_FILES], 1):
        path = run.options.out / f"violation-{number}.jsonl"
        path.write_text(window_jsonl(history, violation), encoding="utf-8")
        window_paths.append(path)
    return RunResult(
        run.options,
        history,
        violations,
        summarize(history),
        run.lateness,
        run.problems,
        history_path,
        window_paths,
        run.elapsed,
        notes,
    )


def not_applied(reply: Reply) -> bool:
    """Whether an error ``reply`` proves the server did not apply the call (recorded ``fail``);
    any other error is an unknown outcome (``info``)."""
    return (
        reply.error is not None and not reply.rpc_error and any(text in reply.error for text in _NOT_APPLIED)
    )


def _send_command(control: Path, command: str) -> bool:
    """Write one command line to a server's control FIFO; False if no server reads it."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            fd = os.open(control, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: the server has not opened it (yet)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
            continue
        try:
            os.write(fd, command.encode() + b"\n")
        finally:
            os.close(fd)
        return True


def _probe_arguments(tool: str, process: str) -> dict[str, Any]:
    """A probe's arguments besides ``sessionId``: writes of its own keys, keyed by its process."""
    if tool == "add_context":
        return {"key": "topic-probe", "value": process, "requestId": process}
    if tool == "record_action":
        return {"action": "probe", "details": process, "requestId": process}
    if tool == "set_preference":
        return {"key": "pref-probe", "value": process, "requestId": process}
    if tool == "increment_counter":
        return {"key": "count-probe", "by": 1, "requestId": process}
    if tool == "get_context":
        return {"maxTurns": 5}
    return {}


def _worker_order(item: tuple[str, int]) -> int:
    return int(item[0][1:])


@dataclasses.dataclass(slots=True)
class SessionSlot:
    """A session slot: the session it holds now (label, server id) and who owns it."""

    number: int
    owner: str
    label: str
    session_id: str | None = None
    generation: int = 0
    labels_created: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    creating: bool = False  # a worker is filling the slot now

    def next_label(self) -> str:
        self.generation += 1
        self.label = f"s{self.number}.{self.generation}"
        return self.label


class ChaosRun:
    """One run against one server (stdio or HTTP), and the base of a run against other servers.

    The extension point of the runner: a variant (:mod:`.cluster`, several
    nodes) subclasses this and overrides what differs, keeping the rest:

    - :meth:`run`: start the servers, the workers (:meth:`setup`, then
      :meth:`work` each), the prober (:meth:`probe_across_principals`, over
      HTTP) and :meth:`inject_faults`; then :meth:`final_reads` and the stop.
    - :meth:`call`: send one call on a slot's session and record it with
      :attr:`recorder` (then :meth:`complete`); :meth:`drop_delay` says
      whether a ``drop`` fault drops it, :func:`not_applied` how an error
      is recorded. :meth:`create`, :meth:`end_and_replace`, the workers and
      the final reads go through it.
    - :meth:`inject_faults`: the fault schedule (:attr:`plan`); the faults'
      own methods (:meth:`drop_calls`, :meth:`exit_status`, ...) and
      :meth:`fault_rng` serve a variant's schedule too.
    - :meth:`probe_target` and :meth:`store_failed`: where a probe goes and
      which of its answers say nothing about the session.

    What a run is made of is public for its variants to read and add to:
    :attr:`options`, :attr:`slots` (:class:`SessionSlot`), :attr:`principals`
    and :attr:`tokens`, :attr:`problems`, :attr:`injected`, :attr:`lateness`,
    :attr:`logs`, :attr:`stopping`, :attr:`elapsed`; :func:`run_result`
    turns a finished run into its :class:`RunResult`.
    """

    def __init__(self, options: RunOptions, recorder: HistoryRecorder, progress: TextIO | None) -> None:
        self.options = options
        self.plan = plan_run(options)
        self.config = Config()
        self.recorder = recorder
        self.progress = progress
        self.http = options.transport == "http"
        # Over HTTP each principal is a token's name; over stdio each owner a clientId label.
        self.principals = [f"principal-{number}" for number in range(options.principals)] if self.http else []
        self.slots = [
            SessionSlot(
                number,
                self.principals[number % len(self.principals)]
                if self.http
                else owner_of(number, options.clients),
                f"s{number}",
            )
            for number in range(options.sessions)
        ]
        self.tokens: dict[str, str] = {}
        self.tokens_file = options.out / "tokens.json"
        # With the ``full`` fault the database lives on a small file system of its own.
        # With the ``full`` fault the database lives on a small file system of its own, where
        # one can be mounted; else the server's fault seam caps the file's pages (see run).
        self.disk = SmallFileSystem(options.out / "fs") if "full" in options.faults else None
        self.db_path = options.out / "chaos.db"
        self.server: AnyServer | None = None
        # The second server while a ``second`` fault lasts: every other call of each worker goes there.
        self.second: AnyServer | None = None
        self.seconds_started = 0
        self.request_numbers = itertools.count(1)
        # While a ``drop`` fault lasts: draws which calls are dropped, and when.
        self.dropping: random.Random | None = None
        self.ready = anyio.Event()
        self.servers_started = 0
        self.expected_exit = False
        self.stopping = False
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.injected: collections.Counter[str] = collections.Counter()
        self.current_fault: str | None = None
        # Seconds each fault began after its planned moment (a calm wait, a slow restart before it).
        self.lateness: list[float] = []
        self.problems: list[str] = []
        self.started = time.monotonic()
        self.elapsed = 0.0
        self.logs: list[IO[bytes]] = []

    # -- the server ------------------------------------------------------------------

    async def start_server(self, task_group: TaskGroup) -> AnyServer:
        self.servers_started += 1
        name = f"server-{self.servers_started}"
        server, log = self.new_server(name)
        try:
            with anyio.fail_after(self.options.start_timeout):
                await server.start(task_group)
        except TimeoutError:
            raise ServerGone(
                f"{name} did not answer initialize within {self.options.start_timeout:g} s; see {log.name}"
            ) from None
        self.server = server
        self.expected_exit = False
        task_group.start_soon(self.watch, server, task_group)
        self.ready.set()
        return server

    async def watch(self, server: AnyServer, task_group: TaskGroup) -> None:
        """An exit no fault caused is a problem of the run: record it, and restart."""
        code = await server.wait()
        if server is not self.server or self.expected_exit:
            return
        self.problems.append(f"{server.name} exited unexpectedly with status {code}")
        self.ready = anyio.Event()
        start = self.recorder.fault_start("exit", server.name, status=code)
        await self.start_server(task_group)
        self.recorder.fault_end(start, restarted=self.servers_started)

    async def running_server(self) -> AnyServer:
        await self.ready.wait()
        assert self.server is not None
        return self.server

    def new_server(self, name: str) -> tuple[AnyServer, IO[bytes]]:
        """A server process named ``name`` on the run's database (not started), and its log."""
        log = (self.options.out / f"{name}.log").open("wb")
        self.logs.append(log)
        environment = self.server_environment(name)
        if self.http:
            command = http_serve_command(self.db_path, self.options.durability, self.tokens_file)
            older = frozenset(self.principals[1::2])
            return HttpServerProcess(name, command, log, environment, self.tokens, older), log
        command = serve_command(self.db_path, self.options.durability)
        return ServerProcess(name, command, log, environment), log

    def make_tokens(self) -> None:
        """The tokens file of an HTTP run: a token per principal, and the operator's."""
        from ..transport.tokens import add_token

        self.tokens_file.unlink(missing_ok=True)
        for principal in self.principals:
            self.tokens[principal] = add_token(self.tokens_file, principal)
        self.tokens[OPERATOR] = add_token(self.tokens_file, OPERATOR, operator=True)

    def server_environment(self, name: str) -> dict[str, str]:
        """Server ``name``'s environment: this one, with the run's planted bugs and, when the
        run injects seam faults, a control FIFO of the server's own (and none inherited)."""
        extra = {}
        if self.options.planted_bugs:
            extra[ENVIRONMENT_VARIABLE] = ",".join(self.options.planted_bugs)
        # A full disk without a file system of its own goes through the seam (see fill_disk).
        if SEAM_KINDS & set(self.options.faults) or ("full" in self.options.faults and self.disk is None):
            control = self.options.out / f"{name}.control"
            if not control.exists():
                os.mkfifo(control)
            extra[CONTROL_VARIABLE] = str(control)
        # Never inherited: a planted bug or a seam left in the runner's own environment would
        # attack its servers without the replay line saying so.
        inherited = {
            name: value
            for name, value in os.environ.items()
            if name not in (ENVIRONMENT_VARIABLE, CONTROL_VARIABLE)
        }
        return {**inherited, **extra}

    async def seam_fault(self, server: AnyServer, kind: str, planned: PlannedFault) -> None:
        """Tell ``server``'s fault seam to fail, slow or squeeze for the fault's hold, and wait it out."""
        rng = self.fault_rng(planned)
        if planned.kind == "ioerror":
            command, details = f"fail {planned.hold}", {}
        elif planned.kind == "slow":
            delay = round(rng.uniform(0.02, 0.2), 3)
            command, details = f"slow {planned.hold} {delay}", {"delay": delay}
        else:
            cap = rng.randint(2, 4)
            command, details = f"squeeze {planned.hold} {cap}", {"max_resident": cap}
        before = await self._activations(server)
        start = self.recorder.fault_start(kind, server.name, hold=planned.hold, **details)
        control = self.options.out / f"{server.name}.control"
        sent = await anyio.to_thread.run_sync(_send_command, control, command)
        if not sent:
            self.problems.append(
                f"{server.name}'s fault seam did not take {command!r}: no reader on {control}"
            )
        await anyio.sleep(planned.hold)
        after = await self._activations(server)
        activated = after - before if after is not None and before is not None else None
        self.recorder.fault_end(start, sent=sent, activations=activated)

    async def _activations(self, server: AnyServer) -> int | None:
        """The server's count of session activations (loads into memory), from ``server_stats``."""
        try:
            with anyio.fail_after(self.options.timeout * 5):
                reply = await server.call("server_stats", {})
        except (TimeoutError, ServerGone):
            return None
        value = reply.structured.get("activations") if reply is not None and reply.structured else None
        return value if isinstance(value, int) else None

    # -- calls -------------------------------------------------------------------------

    async def call(
        self,
        process: str,
        tool: str,
        slot: SessionSlot,
        arguments: dict[str, Any],
        server: AnyServer | None = None,
    ) -> dict[str, Any] | None:
        """Call ``tool`` on the session ``slot`` holds, as its owner, on ``server`` (default: the
        running one); its ok result, or None."""
        if server is None:
            server = await self.running_server()
        if tool in KEYED_TOOLS and "requestId" not in arguments:
            # Every write carries an idempotency key of its own: a retry sends the same one.
            arguments = {**arguments, "requestId": f"{process}.{next(self.request_numbers)}"}
        label, session_id = slot.label, slot.session_id
        sent = dict(arguments)
        if tool != "create_session":
            sent["sessionId"] = session_id
        drop_after = self.drop_delay(tool)
        invoke = self.recorder.invoke(process, tool, label, arguments, client=slot.owner)
        try:
            with anyio.fail_after(self.options.timeout):
                reply = await server.call(tool, sent, drop_after=drop_after, caller=slot.owner)
        except TimeoutError:
            self.complete(invoke, Phase.INFO, error=f"timed out after {self.options.timeout:g} s")
            return None
        except ServerGone as error:
            self.complete(invoke, Phase.INFO, error=str(error))
            return None
        if reply is None:
            self.complete(invoke, Phase.INFO, error=f"dropped by its client after {drop_after:.4f} s")
            if slot.session_id != session_id:
                return None  # the slot moved on meanwhile: the retry would go to another session
            return await self.call(process, tool, slot, arguments, server)  # the retry, same requestId
        if reply.error is None:
            self.complete(invoke, Phase.OK, result=reply.structured)
            return reply.structured
        self.complete(invoke, Phase.FAIL if not_applied(reply) else Phase.INFO, error=reply.error)
        return None

    def drop_delay(self, tool: str) -> float | None:
        """While a ``drop`` fault lasts, about half the calls are dropped by their client after
        this many seconds (None: not dropped)."""
        # Creations and ends are never dropped: a slot's label names one session's life.
        if self.dropping is None or tool in ("create_session", "end_session"):
            return None
        if self.dropping.random() < 0.5:
            return self.dropping.uniform(0.0, DROP_DELAY)
        return None

    def complete(self, invoke: Any, phase: Phase, *, result: Any = None, error: str | None = None) -> None:
        self.recorder.complete(invoke, phase, result=result, error=error)
        self.outcomes[str(phase)] += 1

    async def create(self, process: str, slot: SessionSlot, server: AnyServer | None = None) -> None:
        """Fill ``slot`` with a new session; a creation of unknown outcome is retried under a new label.

        After ``CREATE_ATTEMPTS`` the slot stays empty; a worker that draws it later tries again.
        """
        slot.creating = True
        try:
            for _ in range(CREATE_ATTEMPTS):
                label = slot.label
                # Over HTTP the identity is the token's, never an argument.
                arguments = {} if self.http else {"clientId": slot.owner}
                result = await self.call(process, "create_session", slot, arguments, server)
                session_id = result.get("sessionId") if result else None
                if isinstance(session_id, str):
                    slot.session_id = session_id
                    slot.labels_created.append((label, session_id))
                    return
                slot.next_label()
        finally:
            slot.creating = False

    async def end_and_replace(self, process: str, slot: SessionSlot, server: AnyServer | None = None) -> None:
        """End the slot's session and fill the slot with a new one.

        Other workers use the slot meanwhile: until the new session exists
        the slot holds none (their calls skip it, so none is recorded under
        the new label but sent to the ended session), and a worker that
        finds the slot replaced by another leaves it alone.
        """
        ended = slot.session_id
        await self.call(process, "end_session", slot, {}, server)
        if slot.session_id != ended:
            return
        slot.session_id = None
        slot.next_label()
        await self.create(process, slot, server)

    # -- workers -------------------------------------------------------------------------

    async def setup(self, worker: int) -> None:
        for slot in self.slots[worker :: self.options.clients]:
            await self.create(self.plan.workers[worker], slot)

    async def work(self, worker: int) -> None:
        worker_name = self.plan.workers[worker]
        for number, planned in enumerate(self.plan.calls(worker)):
            if self.stopping:
                return
            slot = self.slots[planned.slot]
            if slot.session_id is None:
                # Empty: being filled by another worker, or left so when every creation failed (a
                # store refusing commits). Fill it again, or let the others run meanwhile.
                if slot.creating:
                    await anyio.lowlevel.checkpoint()
                else:
                    await self.create(worker_name, slot)
                continue
            process, server = worker_name, None
            second = self.second
            # A second server that died is not called again (its exit status is a problem of the run).
            if second is not None and number % 2 and second.running:
                process, server = f"{worker_name}@{second.name}", second
            if planned.tool == "end_session":
                await self.end_and_replace(process, slot, server)
            else:
                await self.call(process, planned.tool, slot, planned.arguments, server)

    # -- cross-principal probes (HTTP) ---------------------------------------------------

    async def probe_across_principals(self) -> None:
        """Probe every ``PROBE_EVERY`` seconds until the workload stops (see :meth:`probe`)."""
        rng = random.Random(f"{self.options.seed}:probes")
        for number in itertools.count(1):
            await anyio.sleep(PROBE_EVERY)
            if self.stopping:
                return
            tool = rng.choice(PROBE_TOOLS)
            server, _ = await self.probe_target(f"{PROBE_PROCESS}{number}")
            # A protocol session probe aims at a session whose owner holds a protocol session.
            live = [
                slot
                for slot in self.slots
                if slot.session_id is not None
                and (tool != PROTOCOL_SESSION or server.protocol_session_of(slot.owner) is not None)
            ]
            if live:
                await self.probe(f"{PROBE_PROCESS}{number}", tool, rng.choice(live), rng)
            if number % LIST_EVERY == 0:
                await self.list_sessions_as(f"lister{number}", rng.choice(self.principals))

    def store_failed(self, error: str) -> bool:
        """Whether ``error`` says the server's store could not be read (so nothing about the
        session was decided): never here, where the database is a file the server keeps open."""
        return False

    async def probe_target(self, process: str) -> tuple[HttpServerProcess, str]:
        """The server a probe (or a listing) named ``process`` is sent to, and the process it is
        recorded under: here the running server, under ``process`` itself."""
        server = await self.running_server()
        assert isinstance(server, HttpServerProcess)
        return server, process

    async def list_sessions_as(self, process: str, principal: str) -> None:
        """``principal`` lists its sessions: the checkers hold that the listing names none of
        another principal's sessions (ownership) and none ended before it (ended sessions)."""
        server, process = await self.probe_target(process)
        invoke = self.recorder.invoke(process, "list_sessions", None, {}, client=principal)
        try:
            with anyio.fail_after(self.options.timeout):
                reply = await server.call("list_sessions", {}, caller=principal)
        except TimeoutError:
            self.complete(invoke, Phase.INFO, error=f"timed out after {self.options.timeout:g} s")
            return
        except ServerGone as error:
            self.complete(invoke, Phase.INFO, error=str(error))
            return
        assert reply is not None  # never dropped
        if reply.error is None:
            self.complete(invoke, Phase.OK, result=reply.structured)
        else:
            self.complete(invoke, Phase.INFO, error=reply.error)

    async def probe(self, process: str, tool: str, slot: SessionSlot, rng: random.Random) -> None:
        """Another principal calls ``tool`` on ``slot``'s session (reads its resource, or sends a
        request under its owner's protocol session), then the same with an id never minted; both
        recorded under ``process``, the control with no label.

        Either must be answered alike (:func:`~.checkers.check_probes`); an answer that did not
        come (a timeout, a server gone) is recorded as info, its error starting with ``NO_REPLY``,
        and so is a refused token (401), which says nothing about the session.
        """
        intruder = rng.choice([principal for principal in self.principals if principal != slot.owner])
        arguments = _probe_arguments(tool, process)
        unknown = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        target = slot.session_id
        if tool == PROTOCOL_SESSION:
            server, _ = await self.probe_target(process)
            target = server.protocol_session_of(slot.owner)
            unknown = uuid.UUID(unknown).hex  # the form the server mints
        if target is None:  # gone meanwhile (the slot emptied, the server restarted)
            return
        for label, session_id in ((slot.label, target), (None, unknown)):
            server, recorded_as = await self.probe_target(process)
            invoke = self.recorder.invoke(recorded_as, tool, label, arguments, client=intruder)
            try:
                with anyio.fail_after(self.options.timeout):
                    if tool == PROTOCOL_SESSION:
                        reply = await server.list_tools_in(session_id, caller=intruder)
                    elif tool == READ_RESOURCE:
                        reply = await server.read_resource(f"session://{session_id}", caller=intruder)
                    else:
                        sent = {**arguments, "sessionId": session_id}
                        answered = await server.call(tool, sent, caller=intruder)
                        assert answered is not None  # never dropped
                        reply = answered
            except TimeoutError:
                self.complete(
                    invoke, Phase.INFO, error=f"{NO_REPLY}timed out after {self.options.timeout:g} s"
                )
                continue
            except ServerGone as error:
                self.complete(invoke, Phase.INFO, error=f"{NO_REPLY}{error}")
                continue
            if reply.error is None:
                self.complete(invoke, Phase.OK, result=reply.structured)
            elif SessionNotFound.MESSAGE in reply.error:
                self.complete(invoke, Phase.FAIL, error=reply.error)
            elif reply.error.startswith("HTTP 401"):
                # Decided on the token before any session is looked at (a token rotation caught
                # the probe between the old token and the new): nothing about the session.
                self.complete(invoke, Phase.FAIL, error=f"{NO_REPLY}{reply.error}")
            elif self.store_failed(reply.error):
                self.complete(invoke, Phase.INFO, error=f"{NO_REPLY}{reply.error}")
            else:
                self.complete(invoke, Phase.INFO, error=reply.error)

    # -- faults --------------------------------------------------------------------------

    async def inject_faults(self, task_group: TaskGroup, workload_started: float) -> None:
        calm_since = time.monotonic()
        for planned in self.plan.faults:
            due = max(workload_started + planned.at, calm_since + CALM_BETWEEN_FAULTS)
            await anyio.sleep(max(0.0, due - time.monotonic()))
            server = await self.running_server()
            kind = RECORDED_KIND[planned.kind]
            self.current_fault = kind
            self.injected[kind] += 1
            self.lateness.append(time.monotonic() - (workload_started + planned.at))
            if planned.kind == "stop":
                start = self.recorder.fault_start(kind, server.name, hold=planned.hold)
                server.signal(signal.SIGSTOP)
                await anyio.sleep(planned.hold)
                server.signal(signal.SIGCONT)
                self.recorder.fault_end(start)
            elif planned.kind == "lock":
                await self.hold_lock(kind, planned.hold)
            elif planned.kind == "second":
                await self.run_second(task_group, kind, planned.hold)
            elif planned.kind == "full":
                await self.fill_disk(server, kind, planned.hold)
            elif planned.kind in SEAM_KINDS:
                await self.seam_fault(server, kind, planned)
            elif planned.kind == "wire":
                await self.send_bad_input(server, kind, planned.hold, self.fault_rng(planned))
            elif planned.kind == "flood":
                await self.flood(kind, int(planned.hold), self.fault_rng(planned))
            elif planned.kind == "revoke":
                await self.rotate_token(kind, self.fault_rng(planned))
            elif planned.kind == "drop":
                await self.drop_calls(kind, planned, [server])
            else:
                await self.stop_and_restart(task_group, server, kind, kill=planned.kind == "kill")
            self.current_fault = None
            calm_since = time.monotonic()

    async def drop_calls(self, kind: str, planned: PlannedFault, servers: list[AnyServer]) -> None:
        """For the fault's hold, clients drop about half their calls (see :meth:`drop_delay`) and
        retry them under the same ``requestId``; over HTTP, requests are torn off mid-send to each
        of ``servers`` meanwhile: the servers must shrug them off."""
        start = self.recorder.fault_start(kind, "clients", hold=planned.hold)
        self.dropping = self.fault_rng(planned)
        torn = [0]

        async def tear(server: HttpServerProcess) -> None:
            torn[0] += await server.tear_requests(planned.hold, self.fault_rng(planned))

        try:
            http_servers = [server for server in servers if isinstance(server, HttpServerProcess)]
            if http_servers:
                async with anyio.create_task_group() as tearing:
                    for server in http_servers:
                        tearing.start_soon(tear, server)
            else:
                await anyio.sleep(planned.hold)
        finally:
            self.dropping = None
        self.recorder.fault_end(start, **({"torn_requests": torn[0]} if torn[0] else {}))

    async def rotate_token(self, kind: str, rng: random.Random) -> None:
        """Revoke a principal's token and give it a new one; SIGHUP the servers; move its clients
        to the new token once each server takes it (until then the old one still works).

        A protocol session the principal opened with the old token must be closed by the
        server: it answers 404 under its id, even to the new token (which, the same principal,
        could use it otherwise). One still serving is a problem of the run.
        """
        from ..transport.tokens import add_token, revoke_token

        principal = rng.choice(self.principals)
        start = self.recorder.fault_start(kind, principal)

        def rotate() -> str:
            revoke_token(self.tokens_file, principal)
            return add_token(self.tokens_file, principal)

        token = await anyio.to_thread.run_sync(rotate)
        # Servers started from now on read the new file, and are given the new token.
        self.tokens[principal] = token
        servers = [server for server in (self.server, self.second) if server is not None and server.running]
        closed: dict[str, bool] = {}
        for server in servers:
            assert isinstance(server, HttpServerProcess)
            server.signal(signal.SIGHUP)
            try:
                with anyio.fail_after(self.options.start_timeout):
                    old_session = await server.use_token_once_taken(principal, token)
            except (TimeoutError, ServerGone) as error:
                self.problems.append(f"{server.name} did not take {principal}'s new token: {error!r}")
                continue
            if old_session is not None:
                closed[server.name] = await self._closed(server, old_session, principal)
                if not closed[server.name]:
                    self.problems.append(
                        f"{server.name} still serves {principal}'s protocol session {old_session}, "
                        "opened with a token since revoked"
                    )
        self.recorder.fault_end(start, old_protocol_session_closed=closed)

    async def _closed(self, server: HttpServerProcess, session_id: str, principal: str) -> bool:
        """Whether ``server`` answers 404 under ``session_id`` to ``principal`` (its new token),
        waiting a moment for the close that follows the reload."""
        with anyio.move_on_after(self.options.timeout * 5):
            while True:
                try:
                    reply = await server.list_tools_in(session_id, caller=principal)
                except ServerGone:
                    return True  # gone with the server
                if reply.error is not None and reply.error.startswith("HTTP 404"):
                    return True
                await anyio.sleep(0.01)
        return False

    def fault_rng(self, planned: PlannedFault) -> random.Random:
        """The random draws of one fault's own choices, from the run's seed and the fault."""
        return random.Random(f"{self.options.seed}:{planned.at}:{planned.kind}")

    async def fill_disk(self, server: AnyServer, kind: str, hold: float) -> None:
        """Fill the database's file system, keep it full ``hold`` seconds, make room.

        Without a file system of its own, the server's fault seam keeps the database from
        growing by a page for ``hold`` seconds instead: SQLite fails writes the same way.
        """
        if self.disk is None:
            target = f"{self.db_path.name}'s page limit"
            start = self.recorder.fault_start(kind, target, hold=hold, mode="page limit")
            control = self.options.out / f"{server.name}.control"
            sent = await anyio.to_thread.run_sync(_send_command, control, f"full {hold}")
            if not sent:
                self.problems.append(f"{server.name}'s fault seam did not take the full disk: no reader")
            await anyio.sleep(hold)
            self.recorder.fault_end(start, filled_bytes=0, sent=sent)
            return
        target = f"{self.db_path.name}'s file system"
        start = self.recorder.fault_start(kind, target, hold=hold, mode="small file system")
        try:
            filled = await anyio.to_thread.run_sync(self.disk.fill)
            await anyio.sleep(hold)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.disk.drain)
        self.recorder.fault_end(start, filled_bytes=filled)

    async def send_bad_input(self, server: AnyServer, kind: str, hold: float, rng: random.Random) -> None:
        """Send bad lines among the workload's calls for ``hold`` seconds.

        A line the server can tell by its id must get an error under that
        id; a result instead, or no reply, is a problem of the run. The server
        must keep serving throughout (an exit is the watch's problem).
        """
        assert isinstance(server, ServerProcess), "bad input is for stdio servers"
        start = self.recorder.fault_start(kind, server.name, hold=hold)
        sent: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            slot = rng.choice(self.slots)
            bad = bad_message(rng, f"bad-{self.injected.total()}-{sent.total()}", slot.session_id)
            sent[bad.kind] += 1
            try:
                if bad.request_id is None:
                    await server.send_line(bad.line)
                else:
                    # Its reply may wait for the SDK's first import (a worker thread
                    # loads it when the first message needing it comes): the check is
                    # that an error comes, not how fast.
                    with anyio.fail_after(self.options.timeout * 5):
                        reply = await server.request_line(bad.line, bad.request_id)
                    result = reply.get("result")
                    if "error" not in reply and not (isinstance(result, dict) and result.get("isError")):
                        self.problems.append(f"bad input ({bad.kind}) got a result, not an error: {reply}")
            except TimeoutError:
                self.problems.append(
                    f"bad input ({bad.kind}) got no reply within {self.options.timeout * 5:g} s"
                )
            except ServerGone:
                break
            await anyio.sleep(BAD_INPUT_EVERY)
        self.recorder.fault_end(start, sent=dict(sorted(sent.items())))

    async def flood(self, kind: str, calls: int, rng: random.Random) -> None:
        """``calls`` concurrent increments on one live session, each a process of its own."""
        live = [slot for slot in self.slots if slot.session_id is not None]
        if not live:
            return
        slot = rng.choice(live)
        start = self.recorder.fault_start(kind, slot.label, calls=calls)
        async with anyio.create_task_group() as flood:
            for number in range(calls):
                process = f"flood{self.injected.total()}.{number}"
                flood.start_soon(
                    self.call, process, "increment_counter", slot, {"key": "count-flood", "by": 1}
                )
        self.recorder.fault_end(start)

    async def hold_lock(self, kind: str, hold: float) -> None:
        """Take the database's write lock on a connection of the runner's own, hold it ``hold``
        seconds (past the server's busy timeout), release it."""
        path = self.db_path
        start = self.recorder.fault_start(kind, path.name, hold=hold)

        def take() -> sqlite3.Connection:
            # Waits while the server commits; BEGIN IMMEDIATE then keeps every other writer out.
            connection = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
            try:
                connection.execute("BEGIN IMMEDIATE")
            except BaseException:
                connection.close()
                raise
            return connection

        def release(connection: sqlite3.Connection) -> None:
            try:
                connection.execute("ROLLBACK")
            finally:
                connection.close()

        connection = await anyio.to_thread.run_sync(take)
        locked = time.monotonic()
        try:
            await anyio.sleep(hold)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(release, connection)
        self.recorder.fault_end(start, held=round(time.monotonic() - locked, 3))

    async def run_second(self, task_group: TaskGroup, kind: str, hold: float) -> None:
        """Start a second server on the same database, send it every other call of each worker for
        ``hold`` seconds, then end its input: it must exit 0."""
        self.seconds_started += 1
        name = f"second-{self.seconds_started}"
        second, log = self.new_server(name)
        start = self.recorder.fault_start(kind, name)
        try:
            with anyio.fail_after(self.options.start_timeout):
                await second.start(task_group)
        except (TimeoutError, ServerGone) as error:
            self.problems.append(f"{name} did not start: {error!r}; see {log.name}")
            second.signal(signal.SIGKILL)
            self.recorder.fault_end(start, started=False)
            return
        self.second = second
        try:
            await anyio.sleep(hold)
        finally:
            self.second = None
        await second.close_input()
        code = await self.exit_status(second, "end of input")
        if code != 0:
            self.problems.append(f"{name} exited with status {code} at end of input, not 0")
        self.recorder.fault_end(start, exit_status=code, served=round(hold, 3))

    async def exit_status(self, server: AnyServer, after: str) -> int:
        """Wait for ``server`` to exit after ``after``; one that does not in time is a problem, and killed.

        The status of a killed server is SIGKILL's, not 0: callers that expect
        0 report it too.
        """
        with anyio.move_on_after(self.options.start_timeout):
            return await server.wait()
        self.problems.append(f"{server.name} did not exit within {self.options.start_timeout:g} s of {after}")
        server.signal(signal.SIGKILL)
        return await server.wait()

    async def stop_and_restart(
        self, task_group: TaskGroup, server: AnyServer, kind: str, *, kill: bool
    ) -> None:
        """SIGKILL or SIGTERM ``server``, wait for its exit, start the next one; the fault ends when it serves."""
        self.ready = anyio.Event()  # new calls wait for the next server
        self.expected_exit = True
        start = self.recorder.fault_start(kind, server.name, pid=server.pid)
        server.signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = await self.exit_status(server, kind)
        if not kill and code != 0:
            self.problems.append(f"{server.name} exited with status {code} after SIGTERM, not 0")
        restarted = await self.start_server(task_group)
        self.recorder.fault_end(start, exit_status=code, restarted=restarted.name)

    # -- progress --------------------------------------------------------------------------

    async def report_progress(self) -> None:
        """A line a second: calls by outcome, faults so far, the fault now. On a terminal the line
        is rewritten in place (and left standing at the end); elsewhere each is a line of its own."""
        progress = self.progress
        assert progress is not None
        live = progress.isatty()
        try:
            while True:
                await anyio.sleep(1.0)
                outcomes = " ".join(
                    f"{phase} {self.outcomes[str(phase)]}" for phase in Phase if phase is not Phase.INVOKE
                )
                faults = (
                    " ".join(f"{kind} {count}" for kind, count in sorted(self.injected.items())) or "none"
                )
                now = f" | now: {self.current_fault}" if self.current_fault else ""
                line = f"[{time.monotonic() - self.started:5.1f} s] calls: {outcomes} | faults: {faults}{now}"
                print(
                    "\r\x1b[K" + line if live else line, end="" if live else "\n", file=progress, flush=True
                )
        finally:
            if live:
                print(file=progress, flush=True)

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        if self.http:
            self.make_tokens()
        if self.disk is not None:
            try:
                self.disk.mount()
                self.db_path = self.disk.path / "chaos.db"
            except ValueError as refused:  # no mounting here: the page limit stands in for it
                self.disk = None
                if self.progress is not None:
                    print(
                        f"disk-full: the store's page limit stands in for a full disk here ({refused})",
                        file=self.progress,
                    )
        try:
            async with anyio.create_task_group() as task_group:
                if self.progress is not None:
                    task_group.start_soon(self.report_progress)
                await self.start_server(task_group)
                async with anyio.create_task_group() as setup:
                    for worker in range(self.options.clients):
                        setup.start_soon(self.setup, worker)
                workload_started = time.monotonic()
                async with anyio.create_task_group() as workload:
                    for worker in range(self.options.clients):
                        workload.start_soon(self.work, worker)
                    if self.http:
                        workload.start_soon(self.probe_across_principals)
                    await self.inject_faults(task_group, workload_started)
                    rest = workload_started + self.options.duration - time.monotonic()
                    await anyio.sleep(max(rest, CALM_AFTER_FAULTS if self.plan.faults else 0.0))
                    self.stopping = True
                await self.final_reads()
                server = await self.running_server()
                self.expected_exit = True
                await server.close_input()
                code = await self.exit_status(server, "end of input")
                if code != 0:
                    self.problems.append(f"{server.name} exited with status {code} at end of input")
                task_group.cancel_scope.cancel()
        finally:
            self.elapsed = time.monotonic() - self.started
            for process in (self.server, self.second):
                if process is not None and process.returncode is None:
                    process.signal(signal.SIGKILL)
            for log in self.logs:
                log.close()
            if self.disk is not None:
                for process in (self.server, self.second):
                    if process is not None and process.returncode is None:
                        with anyio.CancelScope(shield=True):
                            await process.wait()
                self.disk.unmount(keep=self.options.out)

    async def final_reads(self) -> None:
        """Read back every session ever created, the state the checkers judge last."""
        max_turns = self.config.max_turns_limit
        for slot in self.slots:
            for label, session_id in slot.labels_created:
                reader = SessionSlot(slot.number, slot.owner, label, session_id)
                await self.call("final", "get_context", reader, {"maxTurns": max_turns})
