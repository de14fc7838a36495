"""The seeded workload: what each logical client calls, planned before the run.

Each worker (one logical client, one call outstanding at a time) draws its
calls from its own ``random.Random``, seeded from the run's one generator, so
a worker's sequence of planned calls depends on the seed alone, however the
operating system interleaves the workers. A planned call names a session
*slot*, not a session: the runner resolves the slot to the session it holds
when the call is made (``end_session`` empties a slot, and the runner fills
it with a new session).

Values are unique (the worker's name and its call number), so every appended
event names the call that sent it; keys are disjoint by kind: ``topic-N`` for
``add_context`` (which also sets ``metadata[topic-N]``), ``pref-N`` for
``set_preference`` and ``count-N`` for ``increment_counter``, so a
preference is never a counter.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["TOOL_WEIGHTS", "PlannedCall", "owner_of", "plan_calls"]

# Relative weights of the tools in the mix; end_session is occasional.
TOOL_WEIGHTS: dict[str, float] = {
    "add_context": 20.0,
    "record_action": 20.0,
    "set_preference": 15.0,
    "increment_counter": 20.0,
    "get_context": 24.0,
    "end_session": 0.4,
}
KEYS_PER_KIND = 3


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedCall:
    """One call a worker will make: the tool, the session slot, the arguments besides ``sessionId``."""

    tool: str
    slot: int
    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)


def owner_of(slot: int, clients: int) -> str:
    """The ``clientId`` that creates, and alone uses, the sessions of ``slot``."""
    return f"client-{slot % clients}"


def plan_calls(worker: str, seed: int, sessions: int, *, max_turns_limit: int) -> Iterator[PlannedCall]:
    """The endless sequence of calls ``worker`` makes, drawn from ``seed``."""
    rng = random.Random(seed)
    tools = list(TOOL_WEIGHTS)
    weights = list(TOOL_WEIGHTS.values())
    number = 0
    while True:
        number += 1
        value = f"{worker}-{number}"
        tool = rng.choices(tools, weights)[0]
        slot = rng.randrange(sessions)
        key = rng.randrange(KEYS_PER_KIND)
        arguments: dict[str, Any]
        if tool == "add_context":
            arguments = {"key": f"topic-{key}", "value": value}
        elif tool == "record_action":
            arguments = {"action": f"action-{key}", "details": value}
        elif tool == "set_preference":
            arguments = {"key": f"pref-{key}", "value": value}
        elif tool == "increment_counter":
            arguments = {"key": f"count-{key}", "by": rng.randint(1, 3)}
        elif tool == "get_context":
            arguments = {"maxTurns": rng.randint(1, max_turns_limit)}
        else:
            arguments = {}
        yield PlannedCall(tool, slot, arguments)
