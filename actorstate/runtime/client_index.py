"""Each client's sessions in listing order, for memory mode (a store has its own index).

Without it, one page of a client's sessions would scan every session in
memory: 200 ms per page at 300,000 sessions, with the event loop blocked.
With it a page costs a binary search and the page itself.

Per session the index holds one list slot (the id string is shared with the
resident and passivated maps) and one 8-byte float. Sessions that leave
(ended, expired, evicted) are not removed one by one: a page skips them,
and the whole list is compacted when it has doubled since the last
compaction, so dead entries never outnumber live ones by much and each
session costs O(1) amortized.
"""

from __future__ import annotations

import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..model.listing import ListingKey

__all__ = ["ClientIndex"]

_MIN_COMPACTION = 1024


class _Sessions:
    __slots__ = ("compacted_at", "created", "ids")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.created = array.array("d")  # sorted, with ids as the tie-breaker
        self.compacted_at = 0


class ClientIndex:
    """Session ids per client, ordered by (created_at, id)."""

    def __init__(self, is_live: Callable[[str], bool]) -> None:
        self._clients: dict[str, _Sessions] = {}
        self._is_live = is_live

    def add(self, client_id: str, created_at: float, session_id: str) -> None:
        sessions = self._clients.get(client_id)
        if sessions is None:
            sessions = self._clients[client_id] = _Sessions()
        if len(sessions.ids) >= 2 * max(_MIN_COMPACTION, sessions.compacted_at):
            self._compact(sessions)
        ids, created = sessions.ids, sessions.created
        if not ids or (created[-1], ids[-1]) < (created_at, session_id):
            ids.append(session_id)  # the usual case: the newest session goes last
            created.append(created_at)
            return
        # The wall clock went back: insert in order.
        at = _first_after(sessions, (created_at, session_id))
        ids.insert(at, session_id)
        created.insert(at, created_at)

    def page(
        self, client_id: str, after: ListingKey | None, limit: int
    ) -> tuple[list[str], ListingKey | None]:
        """Up to ``limit`` live session ids after ``after``, and the key to go on from (None: done)."""
        sessions = self._clients.get(client_id)
        if sessions is None:
            return [], None
        ids, created = sessions.ids, sessions.created
        index = 0 if after is None else _first_after(sessions, after)
        page: list[str] = []
        last = -1
        is_live = self._is_live
        while index < len(ids):
            session_id = ids[index]
            if is_live(session_id):
                if len(page) == limit:
                    return page, (created[last], ids[last])
                page.append(session_id)
                last = index
            index += 1
        return page, None

    def _compact(self, sessions: _Sessions) -> None:
        is_live = self._is_live
        keep = [i for i, session_id in enumerate(sessions.ids) if is_live(session_id)]
        sessions.ids = [sessions.ids[i] for i in keep]
        sessions.created = array.array("d", (sessions.created[i] for i in keep))
        sessions.compacted_at = len(keep)


def _first_after(sessions: _Sessions, key: ListingKey) -> int:
    """Index of the first entry whose (created_at, id) is greater than ``key``."""
    ids, created = sessions.ids, sessions.created
    low, high = 0, len(ids)
    while low < high:
        middle = (low + high) // 2
        if (created[middle], ids[middle]) <= key:
            low = middle + 1
        else:
            high = middle
    return low
