"""The messages a session actor understands: one frozen dataclass per operation.

A message carries arguments that were already checked by the caller (the
checks that do not depend on the session's state), and knows how to apply
itself to a :class:`SessionState` inside a turn. ``writes`` tells the
supervisor whether a successful turn changed the state.

A write may carry the caller's idempotency key (:class:`Keyed`): applied once
per key and session; a retry with the same key gets the first outcome.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import msgpack

from ..planted import active
from .values import copy_json_like

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
    "Keyed",
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

    def remembered(self, result: Any) -> Any:
        """What a keyed write remembers of its result (small: it lives in the snapshot)."""
        return result

    def replayed(self, state: SessionState, remembered: Any) -> R:
        """The reply to a retry, from what was remembered."""
        result: R = remembered
        return result


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

    # The reply is the whole metadata: a retry gets the metadata as it is now
    # (the preference set once) instead of a copy kept per key.
    def remembered(self, result: Any) -> Any:
        return None

    def replayed(self, state: SessionState, remembered: Any) -> dict[str, Any]:
        metadata: dict[str, Any] = copy_json_like(state.metadata)
        return metadata


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


_packb = msgpack.Packer(use_bin_type=True).pack
# Planted bug (see actorstate.planted): off unless the chaos runner asks.
_APPLY_RETRY_TWICE = active("apply-retry-twice")


@dataclasses.dataclass(frozen=True, slots=True)
class Keyed(Message[T]):
    """``write`` under the caller's idempotency key ``request_id``.

    The first time the session sees the key, ``write`` is applied and its
    outcome remembered with a fingerprint of the call; a retry (same key,
    same call) gets that outcome and changes nothing; the same key on a
    different call is refused. Build with :meth:`of`.
    """

    request_id: str
    fingerprint: str
    write: Message[T]

    @classmethod
    def of(cls, request_id: str, write: Message[T]) -> Keyed[T]:
        fields = [_in_key_order(getattr(write, field.name)) for field in dataclasses.fields(write)]  # type: ignore[arg-type]
        call = _packb([type(write).__name__, *fields])
        return cls(request_id, hashlib.blake2b(call, digest_size=8).hexdigest(), write)

    def apply(self, state: SessionState, now: float, config: Config) -> T:
        seen, remembered = state.recall(self.request_id, self.fingerprint)
        if seen and not _APPLY_RETRY_TWICE:
            return self.write.replayed(state, remembered)
        result = self.write.apply(state, now, config)
        state.remember(self.request_id, self.fingerprint, self.write.remembered(result), config)
        return result


def _in_key_order(value: Any) -> Any:
    """``value`` with every object's keys sorted: one call, one fingerprint, whatever order the
    caller wrote its keys in."""
    if type(value) is dict:
        return {key: _in_key_order(value[key]) for key in sorted(value)}
    if type(value) is list:
        return [_in_key_order(item) for item in value]
    return value
