"""Counters: every value seen lies within what the increments around it allow.

For one key of one session, every observation of the counter (the value an
ok ``increment_counter`` found before adding, an ok ``get_context`` or
``set_preference`` showing the metadata) is checked against two sets of
increments that did not fail:

- *surely in*: ok increments acknowledged before the observing call was
  invoked (they precede it in real time, so their effect must be there);
- *maybe in*: the others invoked before the observing call completed (ok ones
  concurrent with it, and every info one: its effect may land at any time).

The value must lie in ``[sum(surely) + negative part of sum(maybe),
sum(surely) + positive part of sum(maybe)]``. The final read after recovery
is one such observation, where it reads: within [acknowledged, acknowledged +
unknown]. And when every increment of the key adds the same sign, the values
ok increments return are distinct (each one moved the counter).

Attempts that share an idempotency key (``requestId``: a dropped call and
its retries) are one increment, in effect at most once: the bounds are exact
when every unknown attempt was retried until acknowledged.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from typing import TYPE_CHECKING

from ..history import Phase
from .observations import increment, logical_writes, metadata_seen
from .violation import Violation, violation

if TYPE_CHECKING:
    from ..history import Call, History

__all__ = ["check_counters"]

CHECKER = "counter"


@dataclasses.dataclass(slots=True)
class _Sums:
    """Running sums of increments ordered by one index, for bisection."""

    indexes: list[float]
    positive: list[int]
    negative: list[int]

    @classmethod
    def of(cls, calls: list[tuple[float, int]]) -> _Sums:
        calls.sort()
        return cls(
            [index for index, _ in calls],
            [0, *itertools.accumulate(max(by, 0) for _, by in calls)],
            [0, *itertools.accumulate(min(by, 0) for _, by in calls)],
        )

    def before(self, index: float) -> tuple[int, int]:
        """Positive and negative sums of the increments whose index is below ``index``."""
        n = bisect.bisect_left(self.indexes, index)
        return self.positive[n], self.negative[n]


def check_counters(history: History) -> list[Violation]:
    """Every counter observation within bounds; distinct values from same-sign ok increments."""
    violations: list[Violation] = []
    for session, calls in history.calls_by_session().items():
        increments: dict[str, list[Call]] = {}
        for call in calls:
            found = increment(call)
            if found is not None and call.phase is not Phase.FAIL:
                increments.setdefault(found[0], []).append(call)
        for key, key_calls in increments.items():
            # Attempts under one requestId are one increment (see logical_writes).
            incs = [(call, _by(call)) for call in logical_writes(key_calls)]
            violations.extend(_check_key(history, session, key, incs, calls))
    return violations


def _by(call: Call) -> int:
    found = increment(call)
    assert found is not None
    return found[1]


def _check_key(
    history: History, session: str | None, key: str, incs: list[tuple[Call, int]], calls: list[Call]
) -> list[Violation]:
    violations: list[Violation] = []
    # Surely in: ok increments by completion index. All: every non-failed one by invocation index.
    surely = _Sums.of([(call.completed_at, by) for call, by in incs if call.phase is Phase.OK])
    anyone = _Sums.of([(call.invoked_at, by) for call, by in incs])
    ok_by_completion = sorted(
        (call for call, _ in incs if call.phase is Phase.OK), key=lambda c: c.completed_at
    )
    ok_completions = [call.completed_at for call in ok_by_completion]

    def bounds(observer: Call, own: int | None) -> tuple[int, int, int]:
        sure_pos, sure_neg = surely.before(observer.invoked_at)
        all_pos, all_neg = anyone.before(observer.completed_at)
        maybe_pos, maybe_neg = all_pos - sure_pos, all_neg - sure_neg
        if own is not None:  # the observing increment itself is not a predecessor of its own reading
            maybe_pos -= max(own, 0)
            maybe_neg -= min(own, 0)
        base = sure_pos + sure_neg
        return base, base + maybe_neg, base + maybe_pos

    def culprits(observer: Call) -> list[Call]:
        # The observer, and the last ok increment acknowledged before it (the bound it broke).
        n = bisect.bisect_left(ok_completions, observer.invoked_at)
        return [observer, *ok_by_completion[max(0, n - 1) : n]]

    for call, by in incs:
        value = call.result.get("value") if call.phase is Phase.OK and isinstance(call.result, dict) else None
        if call.phase is not Phase.OK:
            continue
        if type(value) is not int:
            violations.append(
                violation(
                    history,
                    CHECKER,
                    session,
                    f"increment of {key!r} returned {value!r}, not an integer",
                    [call],
                )
            )
            continue
        base, low, high = bounds(call, by)
        if not low <= value - by <= high:
            violations.append(
                violation(
                    history,
                    CHECKER,
                    session,
                    f"increment of {key!r} by {by} returned {value}, so the counter held {value - by} before it; "
                    f"the increments around it allow {low}..{high} (acknowledged before it: {base})",
                    culprits(call),
                )
            )
    for call in calls:
        metadata = metadata_seen(call)
        if metadata is None:
            continue
        seen = metadata.get(key, 0)
        if type(seen) is not int:
            violations.append(
                violation(
                    history, CHECKER, session, f"counter {key!r} reads as {seen!r}, not an integer", [call]
                )
            )
            continue
        base, low, high = bounds(call, None)
        if not low <= seen <= high:
            violations.append(
                violation(
                    history,
                    CHECKER,
                    session,
                    f"{call.tool} shows counter {key!r} = {seen}; acknowledged increments before it sum to {base} "
                    f"and those that may have taken effect allow {low}..{high}",
                    culprits(call),
                )
            )
    signs = {by > 0 for _, by in incs if by != 0}
    if len(signs) == 1:
        returned: dict[int, Call] = {}
        for call, by in incs:
            value = (
                call.result.get("value") if call.phase is Phase.OK and isinstance(call.result, dict) else None
            )
            if type(value) is not int or by == 0:
                continue
            if value in returned:
                violations.append(
                    violation(
                        history,
                        CHECKER,
                        session,
                        f"two increments of {key!r} both returned {value}: one of them did not move the counter",
                        [returned[value], call],
                    )
                )
            else:
                returned[value] = call
    return violations
