"""Cross-principal probes: another principal's session id is answered like an id never minted.

Over HTTP the runner's prober has principal B call a tool (or read the
``session://`` resource) with the id of a session principal A owns, then
make the same call, as B, with an id that was never minted: the *control*.
Both calls are recorded under the same process (``probe<N>``), the probe
with A's session label, the control with none.

A probe is a violation when it got an ok reply (B read or changed A's
session), or when both it and its control were answered by the server and
the answers differ in any way (status, error code, text): a caller must
not be able to tell another principal's session from one that never
existed. A call the server did not answer about the session (its error
starts with :data:`NO_REPLY`: a timeout, a server killed under it, a token
refused before any session was looked at, a cluster node's database out of
reach) proves nothing either way and is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..history import Phase
from .violation import Violation, violation

if TYPE_CHECKING:
    from ..history import Call, History

__all__ = ["NO_REPLY", "PROBE_PROCESS", "check_probes"]

# The process name of every probe (and its control) starts so.
PROBE_PROCESS = "probe"
# The error of a probe or control the server did not answer about the session starts so.
NO_REPLY = "no reply: "


def _answer(call: Call) -> str | None:
    """What the server answered ``call``, in one comparable string; None if it did not answer."""
    if call.completion is None:
        return None
    error = call.completion.error
    if call.phase is Phase.OK:
        return "ok"
    if error is None or error.startswith(NO_REPLY):
        return None
    return f"{call.phase}: {error}"


def check_probes(history: History) -> list[Violation]:
    """Every cross-principal probe answered exactly like its unknown-id control, never ok."""
    by_process: dict[str, list[Call]] = {}
    for call in history.calls:
        if call.process.startswith(PROBE_PROCESS):
            by_process.setdefault(call.process, []).append(call)
    violations: list[Violation] = []
    for process, calls in by_process.items():
        probes = [call for call in calls if call.session is not None]
        controls = [call for call in calls if call.session is None]
        for probe in probes:
            if probe.phase is Phase.OK:
                violations.append(
                    violation(
                        history,
                        "cross-principal",
                        probe.session,
                        f"{probe.tool} by {probe.client!r} with another principal's session id got an "
                        f"ok reply ({process}): it reached a session it does not own",
                        [probe],
                    )
                )
                continue
            control = next((call for call in controls if call.index > probe.index), None)
            if control is None:
                continue
            seen, expected = _answer(probe), _answer(control)
            if seen is not None and expected is not None and seen != expected:
                violations.append(
                    violation(
                        history,
                        "cross-principal",
                        probe.session,
                        f"{probe.tool} by {probe.client!r} with another principal's session id was "
                        f"answered {seen!r}, an id never minted {expected!r} ({process})",
                        [probe, control],
                    )
                )
    return violations
