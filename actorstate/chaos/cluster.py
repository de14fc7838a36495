"""The chaos runner against a cluster: several HTTP nodes sharing one throwaway PostgreSQL database.

``actorstate chaos --transport http --store postgres --nodes 3`` starts a
PostgreSQL cluster of its own (:mod:`actorstate.store.postgres_cluster`)
and ``nodes`` processes of ``actorstate serve --http --db postgresql://...
--node-id node-N`` with leases of :data:`~.faults.NODE_LEASE` seconds. The
workload, the principals, the history and the checkers are the single
server's (:mod:`.runner`); what changes:

- *Clients are attached to nodes*: worker ``wK`` sends each call to node
  ``K mod nodes`` first. A call answered "moved" (the session is served by
  another node, or this node's write was fenced by a newer owner) did not
  happen: it is recorded ``fail`` and sent again, with the same idempotency
  key, to the node the answer names, at once; when that node is down (or
  none is named), to the next one after a pause that grows with each
  attempt, as the dead owner's lease may live on for a while. A call of unknown outcome
  (a timeout, a node gone, a store error) is recorded ``info`` and, for a
  write with an idempotency key or a read, sent again to the next node the
  same way: it applies at most once whichever node ends up serving it. Each
  attempt is recorded under ``wK@node-N``, so the history says which node
  answered.
- *The faults are the cluster's* (:data:`~.faults.CLUSTER_FAULT_KINDS`):
  SIGKILL of a node, restarted under its name once its lease is past; SIGTERM
  and a restart; SIGSTOP of a node past its lease, then SIGCONT; PostgreSQL
  stopped in immediate mode and started again; ``pg_terminate_backend`` of
  one node's connections (each node names its connections
  ``actorstate-node-N``); a partition between one node and PostgreSQL past
  its lease. Each node reaches PostgreSQL through a TCP proxy of its own in
  the runner (:class:`~.proxy.StallingProxy`), which the partition stalls
  and then releases, so the node's writes sent meanwhile land after other
  nodes claimed its sessions, and are fenced. And ``drop`` as for one
  server: a dropped call is sent again, with the same idempotency key, to
  the node it was dropped on, and requests are torn off mid-send to every
  node.
- *Cross-principal probes* (:meth:`.runner.ChaosRun.probe_across_principals`)
  and listings go round the nodes, a probe and its control to the same one,
  recorded as ``probeN@node-K``; an answer naming the database (out of reach
  during a fault) says nothing about the session.
- *Who owns what*: throughout the run the runner reads every session's owner
  node and epoch from the database (and once more at the end: the final
  database); :func:`~.checkers.owners.check_single_owner` holds that each
  epoch had one owner and that only the owner answered. The reads are kept
  in ``owners.jsonl`` beside the history.
- The report counts moved answers, the retries on another node, and the
  writes fenced (each node logs the sessions whose write a newer owner
  fenced).
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ..config import Config
from ..errors import StoreUnavailable
from .checkers import check_history
from .checkers.owners import OwnerObservation, check_single_owner, node_of
from .faults import NODE_LEASE, RECORDED_KIND
from .history import HistoryRecorder, Phase, dumps_record
from .http_server import HttpServerProcess, http_serve_command
from .proxy import StallingProxy
from .runner import KEYED_TOOLS, ChaosRun, RunResult, SessionSlot, not_applied, run_result
from .server import ServerGone

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    import psycopg
    from anyio.abc import TaskGroup

    from ..store.postgres_cluster import PostgresCluster
    from .faults import PlannedFault
    from .history import History, Record
    from .runner import RunOptions

__all__ = ["run_cluster_chaos"]

DATABASE = "chaos"
# The owners are read this often.
OBSERVE_EVERY = 0.05
# A call is sent this many times at most (moved, or of unknown outcome), each to the owner named or the next node.
CALL_ATTEMPTS = 8
# The pause before sending a moved call again grows by this much an attempt: a dead owner's
# lease may still live for up to a lease.
MOVED_PAUSE = 0.05
# A killed node is restarted after its lease is past (this many leases after its death).
DEAD_FOR = (1.2, 1.6)
# The tools sent again after an unknown outcome: an idempotency key makes a write apply once.
RETRIED_AFTER_UNKNOWN = KEYED_TOOLS | {"get_context"}
# "session X is served by node N, whose lease ..." (a claim refused) or "... is now served by
# another node; retry the call" (a write fenced).
_MOVED = re.compile(r"is (?:now )?served by (?:node (?P<owner>\S+?), whose lease|another node)")
# What a node logs when a newer owner fenced its write (actorstate.runtime.durability).
_FENCED_LOG = b"moved to a newer owner"


async def run_cluster_chaos(options: RunOptions, *, progress: TextIO | None = None) -> RunResult:
    """Run ``options`` (``store="postgres"``) against ``options.nodes`` nodes on a throwaway PostgreSQL."""
    options.out.mkdir(parents=True, exist_ok=True)
    history_path = options.out / "history.jsonl"
    count = [0]
    with history_path.open("w", encoding="utf-8") as history_file:

        def sink(record: Record) -> None:
            count[0] += 1
            history_file.write(dumps_record(record) + "\n")

        run = _ClusterRun(options, HistoryRecorder(sink=sink), progress, lambda: count[0])
        await run.run()
    history = run.recorder.history()
    (options.out / "owners.jsonl").write_text(
        "".join(observation.to_json() + "\n" for observation in run.observations), encoding="utf-8"
    )
    violations = [*check_history(history, Config()), *check_single_owner(history, run.observations)]
    violations.sort(key=lambda v: (v.first, v.last, v.checker))
    return run_result(run, history, violations, history_path, tuple(run.notes(history)))


class _ClusterRun(ChaosRun):
    """A :class:`~.runner.ChaosRun` whose server is several nodes on one PostgreSQL database."""

    def __init__(
        self,
        options: RunOptions,
        recorder: HistoryRecorder,
        progress: TextIO | None,
        records: Callable[[], int],
    ) -> None:
        super().__init__(options, recorder, progress)
        self.records = records  # the number of history records so far
        self.node_ids = [f"node-{number}" for number in range(1, options.nodes + 1)]
        self.nodes: dict[str, HttpServerProcess] = {}
        self.incarnations: collections.Counter[str] = collections.Counter()
        # Nodes stopped on purpose (a fault): their exits are no problem.
        self.stopping_nodes: set[HttpServerProcess] = set()
        self.node_started = anyio.Event()
        self.cluster: PostgresCluster | None = None
        self.database_url = ""
        # Each node's way to PostgreSQL, which a partition stalls.
        self.proxies: dict[str, StallingProxy] = {}
        self.observations: list[OwnerObservation] = []
        self.moved_answers = 0
        self.sent_elsewhere = 0
        self.fenced_writes = 0

    # -- the nodes ---------------------------------------------------------------------

    def node_url(self, node_id: str) -> str:
        """The database as node ``node_id`` reaches it: through its proxy, its connections named
        (so that one node's can be terminated)."""
        address = urllib.parse.urlsplit(self.database_url)
        netloc = f"{address.username}@{address.hostname}:{self.proxies[node_id].port}"
        through = address._replace(netloc=netloc, query=f"application_name=actorstate-{node_id}")
        return urllib.parse.urlunsplit(through)

    async def start_proxies(self, task_group: TaskGroup) -> None:
        """A proxy to PostgreSQL for every node, serving until the run's end."""
        address = urllib.parse.urlsplit(self.database_url)
        assert address.hostname is not None
        assert address.port is not None
        for node_id in self.node_ids:
            proxy = self.proxies[node_id] = StallingProxy(address.hostname, address.port)
            await task_group.start(proxy.serve)

    async def start_node(self, task_group: TaskGroup, node_id: str) -> HttpServerProcess:
        """Start (or restart, under its name) node ``node_id``; it serves when this returns."""
        self.incarnations[node_id] += 1
        name = f"{node_id}.{self.incarnations[node_id]}"
        log = (self.options.out / f"{name}.log").open("wb")
        self.logs.append(log)
        command = [
            *http_serve_command(self.node_url(node_id), self.options.durability, self.tokens_file),
            *("--node-id", node_id, "--lease-duration", str(NODE_LEASE)),
        ]
        older = frozenset(self.principals[1::2])
        node = HttpServerProcess(name, command, log, self.server_environment(name), self.tokens, older)
        try:
            with anyio.fail_after(self.options.start_timeout):
                await node.start(task_group)
        except (TimeoutError, ServerGone):
            node.signal(signal.SIGKILL)
            raise ServerGone(
                f"{name} did not start within {self.options.start_timeout:g} s; see {log.name}"
            ) from None
        self.nodes[node_id] = node
        task_group.start_soon(self.watch_node, task_group, node_id, node)
        self.node_started.set()
        self.node_started = anyio.Event()
        return node

    async def watch_node(self, task_group: TaskGroup, node_id: str, node: HttpServerProcess) -> None:
        """An exit no fault caused is a problem of the run: record it, and restart the node."""
        code = await node.wait()
        if node in self.stopping_nodes or self.stopping or self.nodes.get(node_id) is not node:
            return
        self.problems.append(f"{node.name} exited unexpectedly with status {code}")
        start = self.recorder.fault_start("exit", node.name, status=code)
        restarted = await self.start_node(task_group, node_id)
        self.recorder.fault_end(start, restarted=restarted.name)

    async def node_for(self, node_id: str) -> tuple[str, HttpServerProcess]:
        """Node ``node_id`` if it runs, else the next one that does (waiting while none does)."""
        while True:
            start = self.node_ids.index(node_id)
            for step in range(len(self.node_ids)):
                candidate = self.node_ids[(start + step) % len(self.node_ids)]
                node = self.nodes.get(candidate)
                if node is not None and node.running:
                    return candidate, node
            await self.node_started.wait()

    def home_of(self, process: str) -> str:
        """The node a worker is attached to (``wK``: node ``K mod nodes``; others: the first)."""
        worker = process.split("@")[0]
        number = int(worker[1:]) if worker[:1] == "w" and worker[1:].isdigit() else 0
        return self.node_ids[number % len(self.node_ids)]

    def next_node(self, node_id: str) -> str:
        return self.node_ids[(self.node_ids.index(node_id) + 1) % len(self.node_ids)]

    def store_failed(self, error: str) -> bool:
        """A node's error naming its database is the store's failure (unreachable, restarting):
        the probe and its control, made one after the other, may straddle a fault's start or end,
        so such an answer tells nothing about the session."""
        return "postgresql://" in error

    async def probe_target(self, process: str) -> tuple[HttpServerProcess, str]:
        """Probes and listings go round the nodes (``probeN`` to node ``N mod nodes``, or the next
        one running), a probe and its control to the same node; recorded as ``probeN@node-K``."""
        digits = process.lstrip("abcdefghijklmnopqrstuvwxyz")
        number = int(digits) if digits.isdigit() else 0
        node_id, node = await self.node_for(self.node_ids[number % len(self.node_ids)])
        return node, f"{process}@{node_id}"

    # -- calls -------------------------------------------------------------------------

    async def call(
        self,
        process: str,
        tool: str,
        slot: SessionSlot,
        arguments: dict[str, Any],
        server: Any = None,
    ) -> dict[str, Any] | None:
        """Call ``tool`` on the session ``slot`` holds, as its owner, from ``process``'s node; sent
        again elsewhere when moved (and, for the tools that may be, when of unknown outcome)."""
        if tool in KEYED_TOOLS and "requestId" not in arguments:
            arguments = {**arguments, "requestId": f"{process}.{next(self.request_numbers)}"}
        label, session_id = slot.label, slot.session_id
        sent = dict(arguments)
        if tool != "create_session":
            sent["sessionId"] = session_id
        target = self.home_of(process)
        attempt = 0
        while attempt < CALL_ATTEMPTS:
            if slot.session_id != session_id or (self.stopping and process != "final"):
                return None  # the slot moved on, or the run is over: the retry would go nowhere
            node_id, node = await self.node_for(target)
            drop_after = self.drop_delay(tool)
            invoke = self.recorder.invoke(f"{process}@{node_id}", tool, label, arguments, client=slot.owner)
            try:
                with anyio.fail_after(self.options.timeout):
                    reply = await node.call(tool, sent, drop_after=drop_after, caller=slot.owner)
            except (TimeoutError, ServerGone) as error:
                reason = (
                    f"timed out after {self.options.timeout:g} s"
                    if isinstance(error, TimeoutError)
                    else str(error)
                )
                self.complete(invoke, Phase.INFO, error=reason)
                if tool not in RETRIED_AFTER_UNKNOWN:
                    return None
                target = self.next_node(node_id)
                attempt = self.sent_again(attempt)
                continue
            if reply is None:
                # Dropped (a ``drop`` fault): sent again to the same node, with the same key, as
                # a single server's runner does; not an attempt elsewhere.
                self.complete(invoke, Phase.INFO, error=f"dropped by its client after {drop_after:.4f} s")
                target = node_id
                continue
            if reply.error is None:
                self.complete(invoke, Phase.OK, result=reply.structured)
                return reply.structured
            moved = None if reply.rpc_error else _MOVED.search(reply.error)
            if moved is not None:
                # Nothing of the call was kept by this node: a refusal, sent again to the owner.
                self.moved_answers += 1
                self.complete(invoke, Phase.FAIL, error=reply.error)
                owner = moved.group("owner")
                target = owner if owner in self.node_ids else self.next_node(node_id)
                serving = self.nodes.get(target)
                if target == node_id or serving is None or not serving.running:
                    # The owner is gone (or unnamed): its lease may live on for a while yet.
                    await anyio.sleep(MOVED_PAUSE * (attempt + 1))
                attempt = self.sent_again(attempt)
                continue
            refused = not_applied(reply)
            self.complete(invoke, Phase.FAIL if refused else Phase.INFO, error=reply.error)
            if refused or tool not in RETRIED_AFTER_UNKNOWN:
                return None
            target = self.next_node(node_id)
            await anyio.sleep(MOVED_PAUSE * (attempt + 1))
            attempt = self.sent_again(attempt)
        return None

    def sent_again(self, attempt: int) -> int:
        """Count a call about to be sent again (after attempt number ``attempt``); the next number."""
        if attempt + 1 < CALL_ATTEMPTS:
            self.sent_elsewhere += 1
        return attempt + 1

    # -- who owns what -------------------------------------------------------------------

    async def observe_owners(self) -> None:
        """Read every session's owner and epoch every ``OBSERVE_EVERY`` seconds until cancelled."""
        connection: list[psycopg.Connection[Any] | None] = [None]
        try:
            while True:
                await self.observe_once(connection)
                await anyio.sleep(OBSERVE_EVERY)
        finally:
            if connection[0] is not None:
                connection[0].close()

    async def observe_once(self, connection: list[psycopg.Connection[Any] | None]) -> None:
        """One read of the owners; none when the database cannot be read (it is restarting)."""
        import psycopg

        def read() -> list[tuple[str, str | None, int]]:
            db = connection[0]
            if db is None or db.closed or db.broken:
                db = connection[0] = psycopg.connect(self.database_url, autocommit=True, connect_timeout=2)
            rows = db.execute("SELECT id, owner_node, owner_epoch FROM actorstate_sessions").fetchall()
            return [(str(row[0]), row[1], int(row[2])) for row in rows]

        labels = {
            session_id.lower(): label for slot in self.slots for label, session_id in slot.labels_created
        }
        sent = self.records()
        try:
            rows = await anyio.to_thread.run_sync(read, abandon_on_cancel=False)
        except psycopg.Error:
            return
        answered = self.records()
        owners = {labels[id_.lower()]: (node, epoch) for id_, node, epoch in rows if id_.lower() in labels}
        self.observations.append(OwnerObservation(sent, answered, owners))

    # -- faults --------------------------------------------------------------------------

    async def inject_faults(self, task_group: TaskGroup, workload_started: float) -> None:
        calm_since = time.monotonic()
        for planned in self.plan.faults:
            due = max(workload_started + planned.at, calm_since + 0.5)
            await anyio.sleep(max(0.0, due - time.monotonic()))
            kind = RECORDED_KIND[planned.kind]
            self.current_fault = kind
            self.injected[kind] += 1
            self.lateness.append(time.monotonic() - (workload_started + planned.at))
            rng = self.fault_rng(planned)
            if planned.kind == "pgrestart":
                await self.restart_postgres(kind)
            elif planned.kind == "terminate":
                await self.terminate_backends(kind, rng)
            elif planned.kind == "partition":
                await self.partition(kind, planned.hold, rng)
            elif planned.kind == "drop":
                running = [node for node in self.nodes.values() if node.running]
                await self.drop_calls(kind, planned, list(running))
            else:
                await self.node_fault(task_group, kind, planned, rng)
            self.current_fault = None
            calm_since = time.monotonic()

    async def node_fault(
        self, task_group: TaskGroup, kind: str, planned: PlannedFault, rng: random.Random
    ) -> None:
        """SIGKILL (restart past the lease), SIGTERM (restart at once) or SIGSTOP (past the lease)
        of one running node."""
        running = [node_id for node_id in self.node_ids if self.nodes[node_id].running]
        node_id = rng.choice(running)
        node = self.nodes[node_id]
        if planned.kind == "stop":
            start = self.recorder.fault_start(kind, node.name, hold=planned.hold, lease=NODE_LEASE)
            node.signal(signal.SIGSTOP)
            await anyio.sleep(planned.hold)
            node.signal(signal.SIGCONT)
            self.recorder.fault_end(start)
            return
        kill = planned.kind == "kill"
        dead_for = round(NODE_LEASE * rng.uniform(*DEAD_FOR), 3) if kill else 0.0
        start = self.recorder.fault_start(kind, node.name, pid=node.pid, dead_for=dead_for)
        self.stopping_nodes.add(node)
        node.signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = await self.exit_status(node, kind)
        if not kill and code != 0:
            self.problems.append(f"{node.name} exited with status {code} after SIGTERM, not 0")
        await anyio.sleep(dead_for)
        restarted = await self.start_node(task_group, node_id)
        self.recorder.fault_end(start, exit_status=code, restarted=restarted.name)

    async def partition(self, kind: str, hold: float, rng: random.Random) -> None:
        """Cut one running node off from PostgreSQL for ``hold`` seconds (past its lease): its
        proxy holds every byte both ways, then sends them on."""
        running = [node_id for node_id in self.node_ids if self.nodes[node_id].running]
        node_id = rng.choice(running)
        proxy = self.proxies[node_id]
        start = self.recorder.fault_start(kind, self.nodes[node_id].name, hold=hold, lease=NODE_LEASE)
        proxy.stall()
        try:
            await anyio.sleep(hold)
        finally:
            proxy.release()
        self.recorder.fault_end(start, held_chunks=proxy.held)

    async def restart_postgres(self, kind: str) -> None:
        """Stop PostgreSQL as a crash would (immediate mode) and start it again."""
        assert self.cluster is not None
        start = self.recorder.fault_start(kind, "postgres", mode="immediate")
        await anyio.to_thread.run_sync(self.cluster.restart, "immediate")
        self.recorder.fault_end(start)

    async def terminate_backends(self, kind: str, rng: random.Random) -> None:
        """``pg_terminate_backend`` every connection of one running node."""
        import psycopg

        running = [node_id for node_id in self.node_ids if self.nodes[node_id].running]
        node_id = rng.choice(running)
        start = self.recorder.fault_start(kind, self.nodes[node_id].name)

        def terminate() -> int:
            with psycopg.connect(self.database_url, autocommit=True) as connection:
                rows = connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (f"actorstate-{node_id}",),
                ).fetchall()
            return sum(1 for row in rows if row[0])

        try:
            terminated = await anyio.to_thread.run_sync(terminate)
        except psycopg.Error as error:
            self.problems.append(f"terminating {node_id}'s connections failed: {error}")
            terminated = 0
        self.recorder.fault_end(start, terminated=terminated)

    # -- the run ---------------------------------------------------------------------------

    async def start_database(self) -> None:
        from ..store.postgres_cluster import ClusterError, start_cluster

        def start() -> PostgresCluster:
            cluster = start_cluster()
            try:
                cluster.create_database(DATABASE)
            except BaseException:
                cluster.destroy()
                raise
            return cluster

        try:
            self.cluster = await anyio.to_thread.run_sync(start)
        except ClusterError as error:
            raise StoreUnavailable(f"the run's PostgreSQL could not be started: {error}") from None
        self.database_url = self.cluster.url(DATABASE)

    async def run(self) -> None:
        self.make_tokens()
        await self.start_database()
        try:
            async with anyio.create_task_group() as task_group:
                if self.progress is not None:
                    task_group.start_soon(self.report_progress)
                await self.start_proxies(task_group)
                for node_id in self.node_ids:
                    await self.start_node(task_group, node_id)
                async with anyio.create_task_group() as setup:
                    for worker in range(self.options.clients):
                        setup.start_soon(self.setup, worker)
                task_group.start_soon(self.observe_owners)
                workload_started = time.monotonic()
                async with anyio.create_task_group() as workload:
                    for worker in range(self.options.clients):
                        workload.start_soon(self.work, worker)
                    workload.start_soon(self.probe_across_principals)
                    await self.inject_faults(task_group, workload_started)
                    rest = workload_started + self.options.duration - time.monotonic()
                    await anyio.sleep(max(rest, 1.0 if self.plan.faults else 0.0))
                    self.stopping = True
                await self.final_reads()
                # The final database: one more read of the owners, after every call.
                final: list[psycopg.Connection[Any] | None] = [None]
                await self.observe_once(final)
                if final[0] is not None:
                    final[0].close()
                for node in self.nodes.values():
                    self.stopping_nodes.add(node)
                    node.signal(signal.SIGTERM)
                for node in self.nodes.values():
                    code = await self.exit_status(node, "SIGTERM at the end")
                    if code != 0:
                        self.problems.append(f"{node.name} exited with status {code} at the end, not 0")
                task_group.cancel_scope.cancel()
        finally:
            self.elapsed = time.monotonic() - self.started
            for node in self.nodes.values():
                node.signal(signal.SIGCONT)
                node.signal(signal.SIGKILL)
            for log in self.logs:
                log.close()
            self.fenced_writes = sum(
                path.read_bytes().count(_FENCED_LOG) for path in self.options.out.glob("node-*.log")
            )
            cluster = self.cluster
            if cluster is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._keep_postgres_log, cluster)
                    await anyio.to_thread.run_sync(cluster.destroy)

    def _keep_postgres_log(self, cluster: PostgresCluster) -> None:
        try:
            shutil.copyfile(cluster.log_path, self.options.out / "postgres.log")
        except OSError:
            pass  # the log is a help, not a result

    def notes(self, history: History) -> list[str]:
        """The report's lines about the cluster: who answered, moves, retries, fenced writes, claims."""
        by_node: collections.Counter[str] = collections.Counter()
        for call in history.calls:
            node = node_of(call)
            if node is not None and call.phase is Phase.OK:
                by_node[node] += 1
        answered = ", ".join(f"{node} {count}" for node, count in sorted(by_node.items()))
        epochs = {
            (label, epoch)
            for observation in self.observations
            for label, (_, epoch) in observation.owners.items()
        }
        return [
            f"nodes: {len(self.node_ids)} on one PostgreSQL (leases of {NODE_LEASE:g} s); ok answers by node: "
            f"{answered or 'none'}",
            f"moved answers: {self.moved_answers} (each sent again); calls sent again to another node: "
            f"{self.sent_elsewhere}; writes fenced by a newer owner: {self.fenced_writes} (nodes' logs)",
            f"owner reads: {len(self.observations)}, tenures seen (session, epoch): {len(epochs)}",
        ]
