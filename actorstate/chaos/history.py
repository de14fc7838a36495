"""The history of a chaos run: every operation and every fault, in the order they happened.

Jepsen's model. A client *invokes* an operation and later sees its
completion: ``ok`` (it happened, with this result), ``fail`` (it certainly
did not happen: the server refused it) or ``info`` (nobody knows: a timeout,
a lost connection, a killed server; it may take effect at any moment after
its invocation, even after the run). Faults go in the same history as
``start`` and ``end`` records, so a violation can name the fault around it.

Every record has an index (its position in the history, from 0) and two
times: wall (``time.time``, for people) and monotonic (for durations). Real
time order is index order: ``a`` *precedes* ``b`` when ``a`` completed before
``b`` was invoked, i.e. ``a.completed_at < b.invoked_at``.

What a record holds, so that the checkers can read it:

- ``session`` is a stable label the runner chose (``"s3"``), never the id the
  server minted; ``create_session``'s ok result carries that id
  (``{"sessionId": ...}``), which is how ``list_sessions`` results map back.
- ``client`` is the identity the call was made as (the ``clientId`` on stdio,
  the authenticated principal over HTTP); ``process`` is the worker that made
  it (one outstanding operation per process).
- ``arguments`` are the tool's arguments as sent, without ``sessionId``.
- ``result`` of an ok completion is the reply's ``structuredContent`` as
  received; ``error`` of a fail or info completion is the reason in words.

The runner builds a history with :class:`HistoryRecorder`; the checkers take a
:class:`History`. Both directions of JSON lines are here
(:meth:`History.write_jsonl`, :meth:`History.read_jsonl`).
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import json
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "Call",
    "FaultEvent",
    "FaultPhase",
    "History",
    "HistoryError",
    "HistoryRecorder",
    "Operation",
    "Phase",
    "Record",
    "record_from_json",
    "record_to_json",
]


class HistoryError(ValueError):
    """A history that breaks the model: a completion without its invocation, indexes out of order..."""


class Phase(enum.StrEnum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class FaultPhase(enum.StrEnum):
    START = "start"
    END = "end"


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One invocation or completion of a tool call."""

    index: int
    phase: Phase
    process: str
    tool: str
    session: str | None
    client: str | None = None
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    result: Any = None
    error: str | None = None
    wall_time: float = 0.0
    monotonic_time: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class FaultEvent:
    """The start or the end of one fault: its kind (``"sigkill"``), its target (``"server-1"``)."""

    index: int
    phase: FaultPhase
    kind: str
    target: str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    wall_time: float = 0.0
    monotonic_time: float = 0.0


Record = Operation | FaultEvent


def record_to_json(record: Record) -> dict[str, Any]:
    """``record`` as a JSON object: ``{"type": "op" | "fault", ...its fields}``."""
    fields = {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}
    fields["phase"] = str(record.phase)
    if isinstance(record, Operation):
        fields["arguments"] = dict(record.arguments)
        return {"type": "op", **fields}
    fields["details"] = dict(record.details)
    return {"type": "fault", **fields}


def record_from_json(data: Mapping[str, Any]) -> Record:
    """The record :func:`record_to_json` wrote.

    Error handling:
        Raises :class:`HistoryError` naming what is wrong with ``data``.
    """
    fields = dict(data)
    kind = fields.pop("type", None)
    try:
        if kind == "op":
            fields["phase"] = Phase(fields["phase"])
            return Operation(**fields)
        if kind == "fault":
            fields["phase"] = FaultPhase(fields["phase"])
            return FaultEvent(**fields)
    except (KeyError, TypeError, ValueError) as error:
        raise HistoryError(f"not a {kind} record: {error}") from None
    raise HistoryError(f"a record's type must be 'op' or 'fault', not {kind!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """An invocation and its completion (``None``: the history ended first, which counts as info)."""

    invoke: Operation
    completion: Operation | None

    @property
    def phase(self) -> Phase:
        return Phase.INFO if self.completion is None else self.completion.phase

    @property
    def index(self) -> int:
        """The invocation's index: how violations and reports name the call."""
        return self.invoke.index

    @property
    def invoked_at(self) -> int:
        return self.invoke.index

    @property
    def completed_at(self) -> float:
        """The completion's index for ok and fail; infinity for info, which may take effect at any later time."""
        if self.completion is None or self.completion.phase is Phase.INFO:
            return float("inf")
        return self.completion.index

    @property
    def last_index(self) -> int:
        """The last record of this call in the history (its completion's, or its invocation's)."""
        return self.invoke.index if self.completion is None else self.completion.index

    @property
    def tool(self) -> str:
        return self.invoke.tool

    @property
    def session(self) -> str | None:
        return self.invoke.session

    @property
    def client(self) -> str | None:
        return self.invoke.client

    @property
    def process(self) -> str:
        return self.invoke.process

    @property
    def arguments(self) -> Mapping[str, Any]:
        return self.invoke.arguments

    @property
    def result(self) -> Any:
        """The ok result; ``None`` for any other outcome."""
        if self.completion is None or self.completion.phase is not Phase.OK:
            return None
        return self.completion.result

    def precedes(self, other: Call) -> bool:
        """Real-time order: this call was acknowledged (ok or fail) before ``other`` was invoked."""
        return self.completed_at < other.invoked_at


class History:
    """A finished history: records in index order, indexes 0, 1, 2, ...

    Error handling:
        Raises :class:`HistoryError` if indexes are not 0, 1, 2, ..., if a
        completion has no outstanding invocation of its process, or if a
        process invokes while its last call is still outstanding.
    """

    def __init__(self, records: Iterable[Record]) -> None:
        self.records: tuple[Record, ...] = tuple(records)
        for position, record in enumerate(self.records):
            if record.index != position:
                raise HistoryError(
                    f"record {position} has index {record.index}; indexes must be 0, 1, 2, ..."
                )
        self.calls: tuple[Call, ...] = tuple(_pair(self.records))
        self.faults: tuple[FaultEvent, ...] = tuple(r for r in self.records if isinstance(r, FaultEvent))
        self._fault_indexes = [fault.index for fault in self.faults]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self.records == other.records

    def __hash__(self) -> int:
        return hash(self.records)

    def calls_by_session(self) -> dict[str | None, list[Call]]:
        """Calls grouped by session label, each list in invocation order."""
        grouped: dict[str | None, list[Call]] = {}
        for call in self.calls:
            grouped.setdefault(call.session, []).append(call)
        return grouped

    def faults_around(self, first: int, last: int) -> tuple[FaultEvent, ...]:
        """The fault events that explain the records ``first``..``last``.

        Those inside the window, the starts of faults still active when it
        opens, and, when that finds none, the last fault event before it.
        """
        lo = bisect.bisect_left(self._fault_indexes, first)
        hi = bisect.bisect_right(self._fault_indexes, last)
        found = {fault.index: fault for fault in self.faults[lo:hi]}
        active: dict[tuple[str, str], FaultEvent] = {}
        for fault in self.faults[:lo]:
            key = (fault.kind, fault.target)
            if fault.phase is FaultPhase.START:
                active[key] = fault
            else:
                active.pop(key, None)
        for fault in active.values():
            found[fault.index] = fault
        if not found and lo > 0:
            before = self.faults[lo - 1]
            found[before.index] = before
        return tuple(found[index] for index in sorted(found))

    def window(self, session: str | None, first: int, last: int) -> list[Record]:
        """The records of ``session`` with indexes ``first``..``last``, and the faults around them."""
        faults = {fault.index for fault in self.faults_around(first, last)}
        return [
            record
            for record in self.records
            if (isinstance(record, Operation) and first <= record.index <= last and record.session == session)
            or record.index in faults
        ]

    # -- JSON lines ---------------------------------------------------------------------

    def write_jsonl(self, stream: IO[str]) -> None:
        """One JSON object per line, in index order."""
        for record in self.records:
            stream.write(dumps_record(record) + "\n")

    def to_jsonl(self) -> str:
        return "".join(dumps_record(record) + "\n" for record in self.records)

    @classmethod
    def read_jsonl(cls, lines: Iterable[str]) -> History:
        """The history :meth:`write_jsonl` wrote (blank lines skipped).

        Error handling:
            Raises :class:`HistoryError` naming the line that is not a record.
        """
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as error:
                raise HistoryError(f"line {number} is not JSON: {error}") from None
            if not isinstance(data, dict):
                raise HistoryError(f"line {number} is not a JSON object")
            try:
                records.append(record_from_json(data))
            except HistoryError as error:
                raise HistoryError(f"line {number}: {error}") from None
        return cls(records)

    @classmethod
    def from_jsonl(cls, text: str) -> History:
        return cls.read_jsonl(text.splitlines())


def dumps_record(record: Record) -> str:
    """One record as one line of JSON (no newline)."""
    return json.dumps(record_to_json(record), ensure_ascii=False, separators=(",", ":"))


def _pair(records: Sequence[Record]) -> Iterator[Call]:
    outstanding: dict[str, Operation] = {}
    completions: dict[int, Operation] = {}
    for record in records:
        if not isinstance(record, Operation):
            continue
        if record.phase is Phase.INVOKE:
            if record.process in outstanding:
                raise HistoryError(
                    f"process {record.process!r} invokes at {record.index} while its call at "
                    f"{outstanding[record.process].index} is outstanding"
                )
            outstanding[record.process] = record
        else:
            invoke = outstanding.pop(record.process, None)
            if invoke is None:
                raise HistoryError(
                    f"completion at {record.index} of process {record.process!r} has no outstanding invocation"
                )
            if invoke.tool != record.tool or invoke.session != record.session:
                raise HistoryError(
                    f"completion at {record.index} ({record.tool} on {record.session}) does not match its "
                    f"invocation at {invoke.index} ({invoke.tool} on {invoke.session})"
                )
            completions[invoke.index] = record
    for record in records:
        if isinstance(record, Operation) and record.phase is Phase.INVOKE:
            yield Call(record, completions.get(record.index))


class HistoryRecorder:
    """Builds a history as a run goes; the runner's one way to write it.

    ``sink``, if given, gets every record as it is made (to stream the
    history to a JSON-lines file, so a crashed runner still leaves it).
    The clocks are injectable so tests control the times.

    Error handling:
        Raises :class:`HistoryError` when a process invokes with a call
        outstanding, or a call is completed twice.
    """

    def __init__(
        self,
        *,
        sink: Callable[[Record], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._records: list[Record] = []
        self._outstanding: dict[str, Operation] = {}
        self._sink = sink
        self._wall_clock = wall_clock
        self._monotonic_clock = monotonic_clock

    def _add(self, record: Record) -> None:
        self._records.append(record)
        if self._sink is not None:
            self._sink(record)

    def _times(self) -> tuple[float, float]:
        return self._wall_clock(), self._monotonic_clock()

    def invoke(
        self,
        process: str,
        tool: str,
        session: str | None,
        arguments: Mapping[str, Any] | None = None,
        *,
        client: str | None = None,
    ) -> Operation:
        """Record that ``process`` invokes ``tool``; return the invocation, to complete later."""
        if process in self._outstanding:
            raise HistoryError(f"process {process!r} already has a call outstanding")
        wall, monotonic = self._times()
        record = Operation(
            len(self._records),
            Phase.INVOKE,
            process,
            tool,
            session,
            client,
            dict(arguments or {}),
            wall_time=wall,
            monotonic_time=monotonic,
        )
        self._outstanding[process] = record
        self._add(record)
        return record

    def complete(
        self, invoke: Operation, phase: Phase, *, result: Any = None, error: str | None = None
    ) -> Operation:
        """Record the completion of ``invoke``: ok with its result, fail or info with a reason."""
        if phase is Phase.INVOKE:
            raise HistoryError("a completion's phase is ok, fail or info")
        if self._outstanding.get(invoke.process) is not invoke:
            raise HistoryError(f"the call at {invoke.index} is not outstanding")
        del self._outstanding[invoke.process]
        wall, monotonic = self._times()
        record = Operation(
            len(self._records),
            phase,
            invoke.process,
            invoke.tool,
            invoke.session,
            invoke.client,
            invoke.arguments,
            result if phase is Phase.OK else None,
            error,
            wall,
            monotonic,
        )
        self._add(record)
        return record

    def ok(self, invoke: Operation, result: Any) -> Operation:
        return self.complete(invoke, Phase.OK, result=result)

    def fail(self, invoke: Operation, error: str) -> Operation:
        return self.complete(invoke, Phase.FAIL, error=error)

    def info(self, invoke: Operation, error: str) -> Operation:
        return self.complete(invoke, Phase.INFO, error=error)

    def fault_start(self, kind: str, target: str, **details: Any) -> FaultEvent:
        record = FaultEvent(len(self._records), FaultPhase.START, kind, target, details, *self._times())
        self._add(record)
        return record

    def fault_end(self, start: FaultEvent, **details: Any) -> FaultEvent:
        record = FaultEvent(
            len(self._records), FaultPhase.END, start.kind, start.target, details, *self._times()
        )
        self._add(record)
        return record

    @property
    def outstanding(self) -> list[Operation]:
        """Invocations not completed yet, oldest first."""
        return sorted(self._outstanding.values(), key=lambda record: record.index)

    def history(self) -> History:
        """The history so far (outstanding calls count as info in it)."""
        return History(self._records)
