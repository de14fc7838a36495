"""The messages a session actor understands: one frozen dataclass per operation.

A message carries arguments that were already checked by the caller (the
checks that do not depend on the session's state), and knows how to apply
itself to a :class:`SessionState` inside a turn. ``writes`` tells the
supervisor whether a successful turn changed the state.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Config
    from .session_state import SessionState

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


R = TypeVar("R", covariant=True)
T = TypeVar("T")


class Message(Generic[R]):
    """Base of all messages; ``apply`` runs inside the actor's turn and its result,
    of type ``R``, is the reply (so ``ask`` is typed by the message it sends)."""

    __slots__ = ()
    writes: ClassVar[bool] = True

    def apply(self, state: SessionState, now: float, config: Config) -> R:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, slots=True)
class CreateSession(Message[str]):
    """The first turn of a new actor: there is no state before it."""

    def apply(self, state: SessionState, now: float, config: Config) -> str:
        return state.id


@dataclasses.dataclass(frozen=True, slots=True)
class AddContext(Message[int]):
    key: str
    value: Any
    value_size: int

    def apply(self, state: SessionState, now: float, config: Config) -> int:
        return state.add_context(self.key, self.value, self.value_size, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class RecordAction(Message[int]):
    action: str
    details: str

    def apply(self, state: SessionState, now: float, config: Config) -> int:
        return state.record_action(self.action, self.details, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class SetPreference(Message[dict[str, Any]]):
    key: str
    value: Any
    value_size: int

    def apply(self, state: SessionState, now: float, config: Config) -> dict[str, Any]:
        return state.set_preference(self.key, self.value, self.value_size, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class Increment(Message[int]):
    key: str
    by: int

    def apply(self, state: SessionState, now: float, config: Config) -> int:
        return state.increment(self.key, self.by, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class Update(Message[T]):
    fn: Callable[[dict[str, Any]], T]

    def apply(self, state: SessionState, now: float, config: Config) -> T:
        return state.update(self.fn, now, config)


@dataclasses.dataclass(frozen=True, slots=True)
class GetContext(Message[dict[str, Any]]):
    writes: ClassVar[bool] = False
    max_turns: int

    def apply(self, state: SessionState, now: float, config: Config) -> dict[str, Any]:
        return state.context(self.max_turns)


@dataclasses.dataclass(frozen=True, slots=True)
class EndSession(Message[None]):
    """Ends the session: the supervisor removes the actor after this turn."""

    def apply(self, state: SessionState, now: float, config: Config) -> None:
        return None
