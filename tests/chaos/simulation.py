"""A correct sequential server driven by concurrent simulated clients, recorded as a history.

Each process acts as one client and has at most one call in flight. A call
is invoked, applied to the server's state at some later step (its
linearization point) and then completed; an unknown outcome (info) is either
never applied, applied before the client gives up, or applied later still,
even after the client gave up (still queued in a server). Faults come and go
as records only. At the end every session is read back by its owner, as a
runner reads after recovery.

``plant(bug)`` corrupts the server's state just before those final reads, the
way a real bug would show after recovery, choosing a target the final reads
must expose; it returns the session it corrupted, or None if this run has no
fitting target.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from actorstate.chaos import History, HistoryRecorder, Operation

if TYPE_CHECKING:
    import random

BUGS = ("drop-acknowledged-append", "reorder-events", "double-increment", "resurrect-ended-session")

_NOT_FOUND = "Session not found or expired"


@dataclasses.dataclass
class _Session:
    label: str
    owner: str
    total: int = 0
    events: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    ended: bool = False
    # What the final reads must show, per planted bug: tokens of acknowledged appends,
    # counter keys with unknown increments, acknowledged increments, acknowledged ends.
    acked_events: set[str] = dataclasses.field(default_factory=set)
    unsure_counters: set[str] = dataclasses.field(default_factory=set)
    acked_increments: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    end_acked: bool = False


@dataclasses.dataclass
class _InFlight:
    invoke: Operation
    plan: str  # "ok", "info-lost", "info-applied", "info-late"
    applied: bool = False
    outcome: tuple[bool, Any] = (False, None)  # (ok, result or error)


class Simulation:
    def __init__(
        self,
        rng: random.Random,
        *,
        max_events: int,
        max_turns_limit: int,
        default_max_turns: int,
        clients: int = 3,
        sessions: int = 4,
        processes: int = 5,
        steps: int = 150,
        info_rate: float = 0.15,
    ) -> None:
        self.rng = rng
        self.max_events = max_events
        self.max_turns_limit = max_turns_limit
        self.default_max_turns = default_max_turns
        self.info_rate = info_rate
        ticks = iter(range(10**9))
        self.recorder = HistoryRecorder(wall_clock=lambda: float(next(ticks)), monotonic_clock=lambda: 0.0)
        self.clients = [f"c{n}" for n in range(clients)]
        self.processes = {f"p{n}": self.clients[n % clients] for n in range(processes)}
        self.sessions: dict[str, _Session] = {}
        self.in_flight: dict[str, _InFlight] = {}
        self.late: list[_InFlight] = []
        self.fault: Any = None
        self.unique = 0
        for n in range(sessions):
            label = f"s{n}"
            owner = self.clients[n % clients]
            call = self.recorder.invoke(
                f"setup-{owner}", "create_session", label, {"clientId": owner}, client=owner
            )
            self.sessions[label] = _Session(label, owner)
            self.recorder.ok(call, {"sessionId": f"id-{label}", "message": "Session created."})
        for _ in range(steps):
            self._step()
        self._drain()

    # -- the workload ---------------------------------------------------------------------

    def _next(self) -> int:
        self.unique += 1
        return self.unique

    def _arguments(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        tool = rng.choices(
            [
                "add_context",
                "record_action",
                "increment_counter",
                "set_preference",
                "get_context",
                "end_session",
                "list_sessions",
            ],
            weights=[6, 4, 5, 4, 5, 0.1, 1],
        )[0]
        if tool == "add_context":
            return tool, {"key": "topic", "value": f"v{self._next()}"}
        if tool == "record_action":
            return tool, {"action": "search", "details": f"d{self._next()}"}
        if tool == "increment_counter":
            return tool, {"key": rng.choice(["counter", "visits"]), "by": rng.randint(1, 3)}
        if tool == "set_preference":
            return tool, {"key": rng.choice(["lang", "theme"]), "value": f"x{self._next()}"}
        if tool == "get_context":
            return tool, ({"maxTurns": rng.randint(1, self.max_turns_limit)} if rng.random() < 0.7 else {})
        return tool, {}

    def _step(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.03:
            if self.fault is None:
                self.fault = self.recorder.fault_start(
                    rng.choice(["sigkill", "sigstop", "disk-full"]), "server-1"
                )
            else:
                self.recorder.fault_end(self.fault)
                self.fault = None
            return
        if roll < 0.08 and self.late:
            self._apply(self.late.pop(rng.randrange(len(self.late))))
            return
        process = rng.choice(sorted(self.processes))
        flight = self.in_flight.get(process)
        if flight is None:
            self._invoke(process)
        elif not flight.applied and flight.plan in ("ok", "info-applied"):
            self._apply(flight)
        else:
            self._complete(process, flight)

    def _invoke(self, process: str) -> None:
        client = self.processes[process]
        tool, arguments = self._arguments()
        if tool == "list_sessions":
            session = None
            arguments = {"clientId": client}
        else:
            own = [s.label for s in self.sessions.values() if s.owner == client]
            pool = own if own and self.rng.random() < 0.95 else sorted(self.sessions)
            session = self.rng.choice(pool)
        roll = self.rng.random()
        plan = "ok"
        if roll < self.info_rate:
            plan = self.rng.choice(["info-lost", "info-applied", "info-late"])
        invoke = self.recorder.invoke(process, tool, session, arguments, client=client)
        self.in_flight[process] = _InFlight(invoke, plan)

    def _complete(self, process: str, flight: _InFlight) -> None:
        del self.in_flight[process]
        if flight.plan != "ok":
            self.recorder.info(flight.invoke, "timed out")
            if flight.plan == "info-late" and not flight.applied:
                self.late.append(flight)
            return
        ok, value = flight.outcome
        if ok:
            self.recorder.ok(flight.invoke, value)
            self._acknowledged(flight)
        else:
            self.recorder.fail(flight.invoke, value)

    def _drain(self) -> None:
        for process in sorted(self.in_flight):
            flight = self.in_flight[process]
            if not flight.applied and flight.plan in ("ok", "info-applied"):
                self._apply(flight)
            self._complete(process, flight)
        for flight in self.late:
            if self.rng.random() < 0.5:
                self._apply(flight)
        self.late = []
        if self.fault is not None:
            self.recorder.fault_end(self.fault)
            self.fault = None

    # -- the server -------------------------------------------------------------------------

    def _apply(self, flight: _InFlight) -> None:
        flight.applied = True
        invoke = flight.invoke
        arguments = invoke.arguments
        if invoke.tool == "list_sessions":
            listed = [
                {"sessionId": f"id-{s.label}"}
                for s in self.sessions.values()
                if s.owner == invoke.client and not s.ended
            ]
            flight.outcome = (True, {"clientId": invoke.client, "sessions": listed})
            return
        assert invoke.session is not None
        session = self.sessions[invoke.session]
        if session.ended or session.owner != invoke.client:
            flight.outcome = (False, _NOT_FOUND)
            return
        result: dict[str, Any] = {"sessionId": f"id-{session.label}"}
        if invoke.tool in ("add_context", "record_action"):
            if invoke.tool == "add_context":
                session.metadata[arguments["key"]] = arguments["value"]
                event = ("context", {"key": arguments["key"], "value": arguments["value"]})
            else:
                event = ("action", {"action": arguments["action"], "details": arguments["details"]})
            session.events = [*session.events, event][-self.max_events :]
            session.total += 1
            result["totalEvents"] = session.total
        elif invoke.tool == "increment_counter":
            key = arguments["key"]
            session.metadata[key] = session.metadata.get(key, 0) + arguments["by"]
            result.update(key=key, value=session.metadata[key])
            if flight.plan != "ok":
                session.unsure_counters.add(key)
        elif invoke.tool == "set_preference":
            session.metadata[arguments["key"]] = arguments["value"]
            result["metadata"] = dict(session.metadata)
        elif invoke.tool == "get_context":
            max_turns = arguments.get("maxTurns", self.default_max_turns)
            result.update(
                totalEvents=session.total,
                metadata=dict(session.metadata),
                recentEvents=[
                    {"type": kind, "payload": dict(payload), "time": "2026-01-01T00:00:00.000Z"}
                    for kind, payload in session.events[-max_turns:]
                ],
            )
        elif invoke.tool == "end_session":
            session.ended = True
            result["ended"] = True
        flight.outcome = (True, result)

    def _acknowledged(self, flight: _InFlight) -> None:
        invoke = flight.invoke
        if invoke.session is None:
            return
        session = self.sessions[invoke.session]
        arguments = invoke.arguments
        if invoke.tool == "add_context":
            session.acked_events.add(
                repr(("context", {"key": arguments["key"], "value": arguments["value"]}))
            )
        elif invoke.tool == "record_action":
            session.acked_events.add(
                repr(("action", {"action": arguments["action"], "details": arguments["details"]}))
            )
        elif invoke.tool == "increment_counter":
            session.acked_increments.append((arguments["key"], arguments["by"]))
        elif invoke.tool == "end_session":
            session.end_acked = True

    def _note_unsure(self) -> None:
        # Increments with an unknown outcome that were never applied count as unsure as well.
        for call in self.recorder.history().calls:
            if call.tool == "increment_counter" and call.phase.value == "info" and call.session is not None:
                self.sessions[call.session].unsure_counters.add(call.arguments["key"])

    # -- planted bugs, and the reads after recovery --------------------------------------------

    def plant(self, bug: str) -> str | None:
        """Corrupt one session's state as ``bug`` would; return its label, or None if none fits."""
        self._note_unsure()
        sessions = list(self.sessions.values())
        self.rng.shuffle(sessions)
        for session in sessions:
            if session.ended and bug != "resurrect-ended-session":
                continue
            if bug == "drop-acknowledged-append":
                # The last event, acknowledged, rolled back (as if acknowledged before commit).
                if session.events and repr(session.events[-1]) in session.acked_events:
                    session.events.pop()
                    session.total -= 1
                    return session.label
            elif bug == "reorder-events":
                window = session.events[-self.max_turns_limit :]
                if len(window) >= 2 and {repr(e) for e in window[-2:]} & session.acked_events:
                    session.events[-1], session.events[-2] = session.events[-2], session.events[-1]
                    return session.label
            elif bug == "double-increment":
                for key, by in session.acked_increments:
                    if key not in session.unsure_counters:
                        session.metadata[key] += by
                        return session.label
            elif bug == "resurrect-ended-session":
                if session.end_acked:
                    session.ended = False
                    return session.label
        return None

    def history(self) -> History:
        """The history with every session read back by its owner at the end."""
        for session in self.sessions.values():
            process = f"final-{session.owner}"
            invoke = self.recorder.invoke(
                process,
                "get_context",
                session.label,
                {"maxTurns": self.max_turns_limit},
                client=session.owner,
            )
            flight = _InFlight(invoke, "ok")
            self._apply(flight)
            self.in_flight[process] = flight
            self._complete(process, flight)
        return self.recorder.history()
