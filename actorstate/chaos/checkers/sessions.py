"""Session lifetime and ownership: an ended session stays ended; only its owner reaches it.

*Ended*: once an ``end_session`` of a session is acknowledged, no call on it
invoked afterwards gets an ok reply, and no ``list_sessions`` invoked
afterwards lists it. (A call concurrent with the end may succeed: it may
come first.)

*Owned*: the client that created a session owns it. An ok reply to a call on
it by any other client, or a ``list_sessions`` of another client that names
it, is a violation. Over stdio the ``clientId`` is a label, not an identity
(README, "Identity"): a runner there should make no calls across clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..history import Phase
from .observations import session_ids_listed
from .violation import Violation, violation

if TYPE_CHECKING:
    from ..history import Call, History

__all__ = ["check_ended_sessions", "check_ownership"]

_DEFAULT_CLIENT = "anonymous"


def _created(history: History) -> dict[str, tuple[str | None, Call]]:
    """Server id -> (label, the create_session call) from ok creations."""
    created: dict[str, tuple[str | None, Call]] = {}
    for call in history.calls:
        if call.tool == "create_session" and call.phase is Phase.OK and isinstance(call.result, dict):
            session_id = call.result.get("sessionId")
            if isinstance(session_id, str):
                created[session_id.lower()] = (call.session, call)
    return created


def _owner(call: Call) -> str | None:
    """Who made ``call`` (create_session, list_sessions): its caller, else the clientId it named."""
    if call.client is not None:
        return call.client
    client_id = call.arguments.get("clientId")
    return client_id if isinstance(client_id, str) else _DEFAULT_CLIENT


def check_ended_sessions(history: History) -> list[Violation]:
    """No ok call on a session, and no listing of it, invoked after its end was acknowledged."""
    violations: list[Violation] = []
    ended: dict[str | None, Call] = {}
    for session, calls in history.calls_by_session().items():
        ends = [call for call in calls if call.tool == "end_session" and call.phase is Phase.OK]
        if not ends:
            continue
        end = min(ends, key=lambda call: call.completed_at)
        ended[session] = end
        for call in calls:
            if call.phase is Phase.OK and call.tool != "create_session" and end.precedes(call):
                violations.append(
                    violation(
                        history,
                        "ended-session",
                        session,
                        f"{call.tool} got an ok reply after the session's end was acknowledged",
                        [end, call],
                    )
                )
    created = _created(history)
    for call in history.calls:
        if call.phase is not Phase.OK:
            continue
        for session_id in session_ids_listed(call):
            found = created.get(session_id.lower())
            label = found[0] if found is not None else None
            ending = ended.get(label) if found is not None else None
            if ending is not None and ending.precedes(call):
                violations.append(
                    violation(
                        history,
                        "ended-session",
                        label,
                        "list_sessions lists the session after its end was acknowledged",
                        [ending, call],
                    )
                )
    return violations


def check_ownership(history: History) -> list[Violation]:
    """No ok reply about a session to a client that does not own it."""
    violations: list[Violation] = []
    created = _created(history)
    owners = {label: (_owner(call), call) for label, call in created.values()}
    for call in history.calls:
        if call.phase is not Phase.OK:
            continue
        if call.client is not None and call.tool != "create_session" and call.session in owners:
            owner, creation = owners[call.session]
            if owner != call.client:
                violations.append(
                    violation(
                        history,
                        "ownership",
                        call.session,
                        f"{call.tool} by {call.client!r} got an ok reply on a session {owner!r} owns",
                        [creation, call],
                    )
                )
        for session_id in session_ids_listed(call):
            if session_id.lower() not in created:
                continue
            label, creation = created[session_id.lower()]
            owner = _owner(creation)
            if owner != _owner(call):
                violations.append(
                    violation(
                        history,
                        "ownership",
                        label,
                        f"list_sessions by {_owner(call)!r} lists a session {owner!r} owns",
                        [creation, call],
                    )
                )
    return violations
