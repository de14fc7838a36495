"""Events as list appends: ``add_context`` and ``record_action`` in the spirit of Elle's list-append.

Each session's events form one list, appended to by ``add_context`` and
``record_action``; the workload makes every appended event unique (a unique
value or details), so an event read back names the call that sent it.

The server numbers events: an ok append replies ``totalEvents`` = N, which
makes its event the N-th of the session, and an ok ``get_context`` replies
``totalEvents`` = T with the last k events it keeps, which are therefore events
T-k+1..T. Every observation is thus a claim "event #p is X". The server keeps
only its last ``Config.max_events`` events (fewer if ``max_session_bytes``
needs room) and a read shows at most ``maxTurns`` of them, but a trimmed
event only leaves the window: the claims about the events a read does show
stay exact, so trimming never looks like a violation. Rules, per session:

1. *Never sent*: every event read was sent to this session by an append
   invoked before the read completed, and that append did not fail.
2. *One order*: all claims agree, one event per position and one position
   per event (an acknowledged append missing from where its reply put it,
   two reads disagreeing on order, an event applied twice).
3. *Real time*: if append A was acknowledged before append B was invoked,
   A's position is below B's (for every B whose position is known: from its
   reply, or from a read that shows it). Reads likewise: a read invoked after
   A was acknowledged has ``totalEvents`` >= A's position (A is present, or
   trimmed below the window), and ``totalEvents`` never goes back between two
   reads in real-time order.
4. *Counted*: ``totalEvents`` of a read is at most the number of appends
   that did not fail and were invoked before it completed.
5. *Window* (with ``max_events`` given): a read shows min(maxTurns, T,
   max_events) events, so nothing retained is missing from it. Pass
   ``max_events=None`` for a workload whose events may be trimmed for size.

Attempts that share an idempotency key (``requestId``: a dropped call and
its retries, sending the same event) are one append, applied at most once.

Unknown outcomes (info) constrain nothing by themselves: such an append may
appear or not, at any position after its invocation, and once it appears, it
is held to rules 2 and 3 like any other.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import TYPE_CHECKING

from ...config import Config
from ..history import Phase
from .observations import APPEND_TOOLS, append_token, event_token, logical_writes, read_events
from .violation import Violation, violation

if TYPE_CHECKING:
    from ..history import Call, History

__all__ = ["check_appends"]

CHECKER = "list-append"


@dataclasses.dataclass(frozen=True, slots=True)
class _Claim:
    position: int
    token: str
    source: Call
    acknowledged: bool  # from an append's own reply, not from a read


def check_appends(
    history: History,
    *,
    max_events: int | None = Config().max_events,
    default_max_turns: int = Config().default_max_turns,
) -> list[Violation]:
    """Check every session's event list; see the module docstring for the rules."""
    violations: list[Violation] = []
    for session, calls in history.calls_by_session().items():
        violations.extend(_Session(history, session, calls, max_events, default_max_turns).check())
    return violations


class _Session:
    def __init__(
        self,
        history: History,
        session: str | None,
        calls: list[Call],
        max_events: int | None,
        default_max_turns: int,
    ) -> None:
        self.history = history
        self.session = session
        self.max_events = max_events
        self.default_max_turns = default_max_turns
        # Attempts under one requestId are one append (see logical_writes).
        self.appends = logical_writes([call for call in calls if call.tool in APPEND_TOOLS])
        self.reads = [(call, seen) for call in calls if (seen := read_events(call)) is not None]
        self.by_token: dict[str, Call] = {}
        self.violations: list[Violation] = []

    def report(self, message: str, calls: list[Call]) -> None:
        self.violations.append(violation(self.history, CHECKER, self.session, message, calls))

    def check(self) -> list[Violation]:
        if not self.appends and not self.reads:
            return []
        for call in self.appends:
            token = append_token(call)
            if token in self.by_token:
                self.report(
                    f"two appends sent the same event {token}; events must be unique to be checked",
                    [self.by_token[token], call],
                )
            self.by_token.setdefault(token, call)
        claims = self._claims()
        positions = self._one_order(claims)
        self._real_time(positions)
        self._reads_against_appends()
        return self.violations

    def _claims(self) -> list[_Claim]:
        claims = []
        for call in self.appends:
            total = (
                call.result.get("totalEvents")
                if call.phase is Phase.OK and isinstance(call.result, dict)
                else None
            )
            if call.phase is not Phase.OK:
                continue
            if type(total) is not int or total < 1:
                self.report(f"{call.tool} was acknowledged with totalEvents {total!r}", [call])
                continue
            claims.append(_Claim(total, append_token(call), call, True))
        for read, (total, events) in self.reads:
            first = total - len(events) + 1
            if first < 1:
                self.report(f"get_context shows {len(events)} events but totalEvents {total}", [read])
                continue
            for offset, event in enumerate(events):
                token = event_token(event)
                sender = self.by_token.get(token)
                if sender is None:
                    self.report(
                        f"get_context shows event #{first + offset} {token}, which was never sent", [read]
                    )
                    continue
                if sender.phase is Phase.FAIL:
                    self.report(
                        f"get_context shows event #{first + offset} {token}, whose append failed",
                        [sender, read],
                    )
                elif sender.invoked_at > read.completed_at:
                    self.report(
                        f"get_context shows event #{first + offset} {token}, sent only after it completed",
                        [read, sender],
                    )
                claims.append(_Claim(first + offset, token, read, False))
        return claims

    def _one_order(self, claims: list[_Claim]) -> dict[str, int]:
        """The position of each event all claims agree on; every disagreement reported once."""
        at_position: dict[int, _Claim] = {}
        of_token: dict[str, _Claim] = {}
        positions: dict[str, int] = {}
        # Acknowledgements first: a read that disagrees with one is then reported as losing or moving it.
        for claim in sorted(claims, key=lambda c: (not c.acknowledged, c.source.index)):
            earlier = at_position.get(claim.position)
            if earlier is not None and earlier.token != claim.token:
                if earlier.acknowledged:
                    message = (
                        f"acknowledged append {earlier.token} is event #{claim.position} by its reply, "
                        f"but {_described(claim)} has {claim.token} there"
                    )
                else:
                    message = (
                        f"{_described(earlier)} and {_described(claim)} disagree on event #{claim.position}: "
                        f"{earlier.token} or {claim.token}"
                    )
                self.report(message, [earlier.source, claim.source, *self._senders(earlier, claim)])
            at_position.setdefault(claim.position, claim)
            placed = of_token.get(claim.token)
            if placed is not None and placed.position != claim.position:
                self.report(
                    f"event {claim.token} is #{placed.position} in {_described(placed)} and "
                    f"#{claim.position} in {_described(claim)}",
                    [placed.source, claim.source, *self._senders(claim)],
                )
            of_token.setdefault(claim.token, claim)
            positions.setdefault(claim.token, claim.position)
        return positions

    def _senders(self, *claims: _Claim) -> list[Call]:
        return [self.by_token[c.token] for c in claims if c.token in self.by_token]

    def _real_time(self, positions: dict[str, int]) -> None:
        """An append acknowledged before another was invoked comes before it."""
        acknowledged = sorted(
            (
                (call.completed_at, positions[token], call)
                for token, call in self.by_token.items()
                if call.phase is Phase.OK and token in positions
            ),
            key=lambda item: item[0],
        )
        completions = [item[0] for item in acknowledged]
        highest: list[tuple[int, Call]] = []  # running max of position, with the append holding it
        for _, position, call in acknowledged:
            if not highest or position > highest[-1][0]:
                highest.append((position, call))
            else:
                highest.append(highest[-1])
        for token, call in self.by_token.items():
            if token not in positions:
                continue
            n = bisect.bisect_left(completions, call.invoked_at)
            if n and highest[n - 1][0] >= positions[token]:
                before_position, before = highest[n - 1]
                self.report(
                    f"append {append_token(before)} was acknowledged before {token} was invoked, "
                    f"but is event #{before_position}, not before #{positions[token]}",
                    [before, call],
                )

    def _reads_against_appends(self) -> None:
        acknowledged = sorted(
            (
                (call.completed_at, call.result["totalEvents"], call)
                for call in self.appends
                if call.phase is Phase.OK
                and isinstance(call.result, dict)
                and type(call.result.get("totalEvents")) is int
            ),
            key=lambda item: item[0],
        )
        ack_completions = [item[0] for item in acknowledged]
        ack_highest: list[tuple[int, Call]] = []
        for _, position, call in acknowledged:
            ack_highest.append(
                (position, call) if not ack_highest or position > ack_highest[-1][0] else ack_highest[-1]
            )
        sent = sorted(call.invoked_at for call in self.appends if call.phase is not Phase.FAIL)
        reads_by_completion = sorted(self.reads, key=lambda item: item[0].completed_at)
        read_completions = [read.completed_at for read, _ in reads_by_completion]
        read_highest: list[tuple[int, Call]] = []
        for read, (total, _) in reads_by_completion:
            read_highest.append(
                (total, read) if not read_highest or total > read_highest[-1][0] else read_highest[-1]
            )

        for read, (total, events) in self.reads:
            n = bisect.bisect_left(ack_completions, read.invoked_at)
            if n and ack_highest[n - 1][0] > total:
                position, lost = ack_highest[n - 1]
                self.report(
                    f"append {append_token(lost)} was acknowledged as event #{position} before get_context "
                    f"was invoked, which shows only {total} events",
                    [lost, read],
                )
            n = bisect.bisect_left(read_completions, read.invoked_at)
            if n and read_highest[n - 1][0] > total:
                earlier_total, earlier = read_highest[n - 1]
                self.report(
                    f"get_context shows {total} events after an earlier one showed {earlier_total}",
                    [earlier, read],
                )
            could_have = bisect.bisect_left(sent, read.completed_at)
            if total > could_have:
                self.report(
                    f"get_context shows {total} events but only {could_have} appends that did not fail "
                    "were invoked before it completed",
                    [read],
                )
            if self.max_events is not None:
                max_turns = read.arguments.get("maxTurns")
                if type(max_turns) is not int:
                    max_turns = self.default_max_turns
                expected = min(max_turns, total, self.max_events)
                if len(events) < expected:
                    self.report(
                        f"get_context (maxTurns {max_turns}) shows {len(events)} of {total} events; the server "
                        f"keeps {self.max_events}, so it should show {expected}",
                        [read],
                    )


def _described(claim: _Claim) -> str:
    return (
        f"the reply to {claim.source.tool} at {claim.source.index}"
        if claim.acknowledged
        else (f"get_context at {claim.source.index}")
    )
