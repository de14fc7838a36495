"""The requests read and not answered yet, keyed as the SDK keys its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["InFlight", "request_key"]


def request_key(request_id: int | str) -> int | str:
    """The key of a request id, as the SDK's ``coerce_request_id`` makes it: ``"7"`` and ``7`` are one id."""
    if isinstance(request_id, str):
        try:
            return int(request_id)
        except ValueError:
            pass
    return request_id


class InFlight:
    """Requests read (by either path) and not answered yet.

    Keyed by :func:`request_key`, as the SDK keys its table, so a reply or a
    settled request always finds its entry.
    """

    def __init__(self) -> None:
        self._keys: set[int | str] = set()
        self._changed: anyio.Event | None = None

    def __contains__(self, request_id: int | str) -> bool:
        return request_key(request_id) in self._keys

    def started(self, request_id: int | str) -> None:
        self._keys.add(request_key(request_id))

    def answered(self, request_id: int | str) -> None:
        self._keys.discard(request_key(request_id))
        if self._changed is not None:
            self._changed.set()

    def settled_unanswered(self, request_id: int | str) -> Callable[[], Awaitable[None]]:
        async def settled() -> None:
            self.answered(request_id)

        return settled

    async def wait_for_fewer_than(self, count: int) -> None:
        """Return once fewer than ``count`` requests are in flight (one waiter at a time: the reader)."""
        while len(self._keys) >= count:
            self._changed = anyio.Event()
            await self._changed.wait()
