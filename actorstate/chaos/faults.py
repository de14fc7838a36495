"""The fault schedule, drawn from the seed before the run.

Faults in this module's kinds, each against the one server process:

- ``kill``: SIGKILL at a random moment, then a restart on the same database;
  every call in flight has an unknown outcome.
- ``term``: SIGTERM; the server answers what it read, commits and exits 0;
  then a restart.
- ``stop``: SIGSTOP for longer than the clients' timeout, then SIGCONT; the
  calls in flight time out (unknown outcome) and may still take effect.

The schedule spreads the faults over the middle of the run (the first and
last tenths stay calm), one in each of equal stretches of time, at a random
moment within its stretch. The first ones are every selected kind once, in a
random order, so each kind is injected at least once in any run.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

__all__ = ["FAULT_KINDS", "RECORDED_KIND", "PlannedFault", "plan_faults"]

FAULT_KINDS = ("kill", "term", "stop")
# How a fault kind is named in the history.
RECORDED_KIND = {"kill": "sigkill", "term": "sigterm", "stop": "sigstop"}
# One fault for about this many seconds of run, beyond one of each kind.
SECONDS_PER_FAULT = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedFault:
    """A fault of ``kind`` due ``at`` seconds into the workload; ``hold``: how long a stop lasts."""

    at: float
    kind: str
    hold: float = 0.0


def plan_faults(
    rng: random.Random, kinds: Sequence[str], duration: float, *, timeout: float
) -> tuple[PlannedFault, ...]:
    """The faults of a run of ``duration`` seconds whose clients give up after ``timeout``.

    Error handling:
        Raises ``ValueError`` naming an unknown kind.
    """
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; choose from {', '.join(FAULT_KINDS)}")
    if not kinds:
        return ()
    chosen = list(dict.fromkeys(kinds))
    rng.shuffle(chosen)
    count = max(len(chosen), round(duration / SECONDS_PER_FAULT))
    chosen += [rng.choice(sorted(set(kinds))) for _ in range(count - len(chosen))]
    first, last = 0.1 * duration, 0.9 * duration
    stretch = (last - first) / count
    faults = []
    for number, kind in enumerate(chosen):
        at = first + stretch * (number + rng.uniform(0.0, 0.5))
        hold = timeout * rng.uniform(1.5, 2.5) if kind == "stop" else 0.0
        faults.append(PlannedFault(round(at, 3), kind, round(hold, 3)))
    return tuple(faults)
