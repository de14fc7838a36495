"""One owner per epoch: what the nodes sharing a PostgreSQL database claimed, and whom they answered.

Each session row holds its owner node and owner epoch; a claim bumps the
epoch, so an epoch names one tenure of one node. The runner reads every
row (:class:`OwnerObservation`) many times a second while the run lasts,
and once more after the final reads: the final database. Two invariants:

*One owner per epoch*: every observation of a session at epoch ``e`` names
the same node (or none: the owner released it, as a node that stops does,
and nobody has claimed it since), and a session's epoch never goes back.

*Only the owner answers*: when two observations bracket a call (the first
came back before the call was invoked, the second was sent after its reply
came) and both name node ``M`` at one epoch ``e``, ``M`` held the session
from before the call to after it without a claim in between; an ok reply
from another node ``N`` then came from a node that neither held the
session nor could write it (a write under ``N``'s epoch is fenced), so it
served a stale copy or its write slipped past the fence.

A call's node is the part of its process after ``@`` (``w3@node-2``), as the
cluster runner records it. ``create_session`` and ``end_session`` are left
out of the second rule: a creation's row does not exist before it, and an
end marks the row ended whoever owns it.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from ..history import Phase
from .violation import Violation, violation

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ..history import Call, History

__all__ = ["OwnerObservation", "check_single_owner", "node_of"]

CHECKER = "one-owner-per-epoch"
_UNBRACKETED_TOOLS = frozenset({"create_session", "end_session"})


@dataclasses.dataclass(frozen=True, slots=True)
class OwnerObservation:
    """The owners of the sessions as one read of the database saw them.

    ``sent`` is the number of history records when the read was sent, ``answered`` when its
    rows came back: every record before ``sent`` came before the read, every record from
    ``answered`` on after it. ``owners`` maps a session's label to its owner node (None:
    unowned) and owner epoch.
    """

    sent: int
    answered: int
    owners: Mapping[str, tuple[str | None, int]]

    def to_json(self) -> str:
        owners = {label: [node, epoch] for label, (node, epoch) in self.owners.items()}
        return json.dumps({"sent": self.sent, "answered": self.answered, "owners": owners})

    @classmethod
    def from_json(cls, line: str) -> OwnerObservation:
        data: dict[str, Any] = json.loads(line)
        owners = {label: (node, int(epoch)) for label, (node, epoch) in data["owners"].items()}
        return cls(int(data["sent"]), int(data["answered"]), owners)


def node_of(call: Call) -> str | None:
    """The node a call was sent to: its process's part after ``@``, if any."""
    _, at, node = call.process.partition("@")
    return node if at else None


def check_single_owner(history: History, observations: Sequence[OwnerObservation]) -> list[Violation]:
    """Both invariants of the module docstring over ``history`` and the reads of the owners."""
    ordered = sorted(observations, key=lambda observation: observation.sent)
    return [*_epochs_held_once(history, ordered), *_answered_only_by_owner(history, ordered)]


def _epochs_held_once(history: History, observations: Iterable[OwnerObservation]) -> list[Violation]:
    violations = []
    seen: dict[tuple[str, int], tuple[str | None, OwnerObservation]] = {}
    latest: dict[str, tuple[int, OwnerObservation]] = {}
    reported: set[str] = set()
    for observation in observations:
        for label, (node, epoch) in observation.owners.items():
            if label in reported:
                continue
            problem = None
            # None: the owner gave the session up (a node that stops releases its leases) and
            # nobody has claimed it since; the next claim bumps the epoch.
            first = seen.setdefault((label, epoch), (node, observation)) if node is not None else None
            if first is not None and first[0] != node:
                problem = f"epoch {epoch} was held by {first[0]} and then by {node}", first[1]
            before = latest.get(label)
            if before is not None and epoch < before[0]:
                problem = f"the epoch went back from {before[0]} to {epoch} (owner {node})", before[1]
            if problem is not None:
                message, earlier = problem
                violations.append(_observed(history, label, message, earlier, observation))
                reported.add(label)  # one report a session: the rest follows from it
            latest[label] = (epoch, observation)
    return violations


def _observed(
    history: History, label: str, message: str, earlier: OwnerObservation, later: OwnerObservation
) -> Violation:
    """A violation seen in the reads alone, bounded by the two reads' places in the history."""
    first = max(0, min(earlier.sent, len(history) - 1))
    last = max(first, min(later.answered, len(history) - 1))
    return Violation(CHECKER, label, message, (), first, last, history.faults_around(first, last))


def _answered_only_by_owner(history: History, observations: Sequence[OwnerObservation]) -> list[Violation]:
    violations = []
    by_answer = sorted(observations, key=lambda observation: observation.answered)
    answers = [observation.answered for observation in by_answer]
    sends = [observation.sent for observation in observations]
    for call in history.calls:
        node = node_of(call)
        if (
            call.phase is not Phase.OK
            or node is None
            or call.session is None
            or call.tool in _UNBRACKETED_TOOLS
            or call.completion is None
        ):
            continue
        label = call.session
        # The last read back before the call was invoked, and the first sent after its reply.
        before = next(
            (
                o
                for o in reversed(by_answer[: bisect.bisect_right(answers, call.invoke.index)])
                if label in o.owners
            ),
            None,
        )
        after = next(
            (
                o
                for o in observations[bisect.bisect_right(sends, call.completion.index) :]
                if label in o.owners
            ),
            None,
        )
        if before is None or after is None:
            continue
        held = before.owners[label]
        if held == after.owners[label] and held[0] != node:
            violations.append(
                violation(
                    history,
                    CHECKER,
                    label,
                    f"{call.tool} got an ok reply from {node} while {held[0]} held the session under "
                    f"epoch {held[1]} from before the call to after it",
                    [call],
                )
            )
    return violations
