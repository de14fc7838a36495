"""What a checker returns: a violation names its session, the calls involved and the faults around them."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..history import record_to_json

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..history import Call, FaultEvent, History

__all__ = ["Violation", "violation"]


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant.

    ``operations`` are the invocation indexes of the calls involved, in
    order; ``first`` and ``last`` bound every record of those calls
    (completions included); ``faults`` are the fault events around them
    (:meth:`History.faults_around`).
    """

    checker: str
    session: str | None
    message: str
    operations: tuple[int, ...]
    first: int
    last: int
    faults: tuple[FaultEvent, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "session": self.session,
            "message": self.message,
            "operations": list(self.operations),
            "first": self.first,
            "last": self.last,
            "faults": [record_to_json(fault) for fault in self.faults],
        }


def violation(
    history: History, checker: str, session: str | None, message: str, calls: Iterable[Call]
) -> Violation:
    """A violation involving ``calls``, with the faults of ``history`` around them."""
    involved = sorted({call.index: call for call in calls}.values(), key=lambda call: call.index)
    if not involved:
        raise ValueError("a violation involves at least one call")
    first = involved[0].index
    last = max(call.last_index for call in involved)
    return Violation(
        checker,
        session,
        message,
        tuple(call.index for call in involved),
        first,
        last,
        history.faults_around(first, last),
    )
