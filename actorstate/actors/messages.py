"""The messages a session actor understands: one frozen dataclass per operation.

A message carries arguments that were already checked by the caller (the
checks that do not depend on the session's state), and knows how to apply
itself to a :class:`SessionState` inside a turn. ``writes`` tells the
supervisor whether a successful turn changed the state.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Config
    from ..session_state import SessionState

__all__ = [
    "AddContext",
    "CreateSession",
    "EndSession",
    "GetContext",
    "Increment",
    "Message",
    "RecordAction",
    "SetPreference",
    "Update",
]


class Message:
    """Base of all messages; ``apply`` runs inside the actor's turn."""

    __slots__ = ()
    writes: ClassVar[bool] = True

    def apply(self, state: SessionState, now: float, config: Config) -> Any:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, slots=True)
class CreateSession(Message):
    """The first turn of a new actor: there is no state before it."""

    def apply(self, state: SessionState, now: float, config: Config) -> Any:
        return state.id


@dataclasses.dataclass(frozen=True, slots=True)
class AddContext(Message):
    key: str
    value: Any
    value_size: int

    def apply(self, state: SessionState, now: float, config: Config) -> int:
        return state.add_context(self.key, self.value, self.value_size, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class RecordAction(Message):
    action: str
    details: str

    def apply(self, state: SessionState, now: float, config: Config) -> int:
        return state.record_action(self.action, self.details, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class SetPreference(Message):
    key: str
    value: Any
    value_size: int

    def apply(self, state: SessionState, now: float, config: Config) -> dict[str, Any]:
        return state.set_preference(self.key, self.value, self.value_size, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class Increment(Message):
    key: str
    by: int

    def apply(self, state: SessionState, now: float, config: Config) -> int:
        return state.increment(self.key, self.by, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class Update(Message):
    fn: Callable[[dict[str, Any]], Any]

    def apply(self, state: SessionState, now: float, config: Config) -> Any:
        return state.update(self.fn, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class GetContext(Message):
    writes: ClassVar[bool] = False
    max_turns: int

    def apply(self, state: SessionState, now: float, config: Config) -> dict[str, Any]:
        return state.context(self.max_turns)


@dataclasses.dataclass(frozen=True, slots=True)
class EndSession(Message):
    """Ends the session: the supervisor removes the actor after this turn."""

    def apply(self, state: SessionState, now: float, config: Config) -> None:
        return None
