"""Listing a client's sessions page by page, oldest first.

A client may own hundreds of thousands of sessions, so a listing is never
one reply: each page holds at most ``Config.max_list_page_size`` sessions
and a cursor for the next. Pages are ordered by ``(created_at, id)``, a key
that never changes for a session, so a cursor stays valid however the
sessions change between pages: a session created meanwhile appears on a
later page, an ended one disappears, none is listed twice.

The cursor is opaque to callers (base64 of the last key listed); a cursor
that does not decode is refused with :class:`InvalidInput`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ListingKey", "SessionPage", "SessionRow", "decode_cursor", "encode_cursor", "merge_page"]

# Where a page starts: after this (created_at, session id).
ListingKey = tuple[float, str]
# One listed session: (id, created_at, last_activity).
SessionRow = tuple[str, float, float]


@dataclasses.dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of a client's sessions; ``next_cursor`` is None on the last page."""

    sessions: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(key: ListingKey) -> str:
    raw = json.dumps([key[0], key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object) -> ListingKey:
    """The key a cursor stands for; InvalidInput for anything this module did not make."""
    refusal = InvalidInput("cursor is not one a listing gave out; start again without a cursor")
    if type(cursor) is not str or not 0 < len(cursor) <= 200:
        raise refusal
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, session_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise refusal from None
    if type(created_at) not in (int, float) or not math.isfinite(created_at) or type(session_id) is not str:
        raise refusal
    return float(created_at), session_id


def _key(row: SessionRow) -> ListingKey:
    return row[1], row[0]


def merge_page(
    stored: list[SessionRow],
    stored_truncated: bool,
    in_memory: Iterable[SessionRow],
    gone: set[str],
    limit: int,
) -> tuple[list[SessionRow], ListingKey | None]:
    """Join a page read from the store with what memory knows; return the page and the next key.

    ``stored`` is the store's page (already after the cursor, in key order);
    ``stored_truncated`` says the store has rows beyond it. ``in_memory``
    holds the sessions memory knows after the cursor (resident or
    passivated; newer than their rows, or not stored yet) and ``gone`` the
    ones ending. Rows memory knows win over stored ones. When the store was
    cut short, nothing past its last row may enter the page: stored rows
    between it and the cursor would be skipped for good.
    """
    bound = _key(stored[-1]) if stored_truncated and stored else None
    merged = {row[0]: row for row in stored}
    for row in in_memory:
        if bound is None or _key(row) <= bound:
            merged[row[0]] = row
    rows = sorted((row for row in merged.values() if row[0] not in gone), key=_key)
    if len(rows) > limit:
        page = rows[:limit]
        return page, _key(page[-1])
    return rows, bound
