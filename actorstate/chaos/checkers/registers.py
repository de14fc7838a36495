"""Preferences: every metadata value read is the value of a write not overwritten before the read.

``set_preference`` (and ``add_context``, which also sets ``metadata[key]``)
write a key as a register. For each key of each session, a value seen (by an
ok ``get_context``, or in the metadata an ok ``set_preference`` replies
with) must come from a write that

- did not fail, and was invoked before the observing call completed;
- is not overwritten in real time before the read: no ok write of the key
  was invoked after it was acknowledged and acknowledged itself before the
  read was invoked. A write with an unknown outcome is never overwritten in
  this sense: it may have taken effect at any moment, even last.

A key missing from the metadata is fine only while no write of it was
acknowledged before the read was invoked. The read after recovery is one such
read, where this means last-write consistency. Keys that are incremented are
counters and left to :mod:`.counters`.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from ..history import Phase
from .observations import canonical, increment, logical_writes, metadata_seen, register_write
from .violation import Violation, violation

if TYPE_CHECKING:
    from ..history import Call, History

__all__ = ["check_preferences"]

CHECKER = "preference"
_MISSING = object()


def check_preferences(history: History) -> list[Violation]:
    """Every preference read is of a write not overwritten before it; see the module docstring."""
    violations: list[Violation] = []
    for session, calls in history.calls_by_session().items():
        counters = {found[0] for call in calls if (found := increment(call)) is not None}
        writes: dict[str, list[Call]] = {}
        for call in calls:
            written = register_write(call)
            if written is not None and written[0] not in counters:
                writes.setdefault(written[0], []).append(call)
        for key, key_calls in writes.items():
            # Attempts under one requestId are one write (see logical_writes).
            key_writes = [(call, _value(call)) for call in logical_writes(key_calls)]
            violations.extend(_check_key(history, session, key, key_writes, calls))
    return violations


def _value(call: Call) -> str:
    written = register_write(call)
    assert written is not None
    return canonical(written[1])


def _check_key(
    history: History, session: str | None, key: str, writes: list[tuple[Call, str]], calls: list[Call]
) -> list[Violation]:
    violations: list[Violation] = []
    by_value: dict[str, list[Call]] = {}
    for call, value in writes:
        by_value.setdefault(value, []).append(call)
    # Ok writes by completion, with the latest invocation among those acknowledged so far: a
    # write acknowledged before that invocation was overwritten by the time they all completed.
    acked = sorted((call for call, _ in writes if call.phase is Phase.OK), key=lambda call: call.completed_at)
    completions = [call.completed_at for call in acked]
    latest: list[Call] = []
    for call in acked:
        latest.append(call if not latest or call.invoked_at > latest[-1].invoked_at else latest[-1])

    def overwriter(write: Call, read: Call) -> Call | None:
        n = bisect.bisect_left(completions, read.invoked_at)
        if n and latest[n - 1].invoked_at > write.completed_at:
            return latest[n - 1]
        return None

    for read in calls:
        metadata = metadata_seen(read)
        if metadata is None:
            continue
        seen: Any = metadata.get(key, _MISSING)
        if seen is _MISSING:
            n = bisect.bisect_left(completions, read.invoked_at)
            if n:
                violations.append(
                    violation(
                        history,
                        CHECKER,
                        session,
                        f"{read.tool} shows no {key!r} although a write of it was acknowledged before",
                        [acked[n - 1], read],
                    )
                )
            continue
        value = canonical(seen)
        senders = by_value.get(value, [])
        candidates = [w for w in senders if w.phase is not Phase.FAIL and w.invoked_at < read.completed_at]
        if not candidates:
            reason = (
                "whose write failed"
                if any(w.phase is Phase.FAIL for w in senders)
                else "written only after it completed"
                if senders
                else "which was never written"
            )
            violations.append(
                violation(
                    history,
                    CHECKER,
                    session,
                    f"{read.tool} shows {key!r} = {value}, {reason}",
                    [read, *senders],
                )
            )
            continue
        overwritten = [(w, overwriter(w, read)) for w in candidates]
        if all(by is not None for _, by in overwritten):
            write, by = overwritten[-1]
            assert by is not None
            violations.append(
                violation(
                    history,
                    CHECKER,
                    session,
                    f"{read.tool} shows {key!r} = {value}, a stale value: the write at {by.index} "
                    f"({canonical(by.arguments.get('value'))}) overwrote it before the read was invoked",
                    [write, by, read],
                )
            )
    return violations
