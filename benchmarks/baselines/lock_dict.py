"""The usual design: every session's state in a dict, one anyio lock per session.

It runs the very operations actorstate's actors run (``SessionState``'s
methods, the same argument checks), so a comparison measures the design
around them: mailboxes and turns against locks.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from actorstate.config import Config
from actorstate.model.session_state import SessionState, check_key

CONFIG = Config()


class LockedSessions:
    """Sessions in a dict, each behind its own lock."""

    def __init__(self, count: int) -> None:
        now = time.time()
        self.ids = [f"{index:08x}-0000-4000-8000-000000000000" for index in range(count)]
        self.states = {session_id: SessionState(session_id, "bench", now) for session_id in self.ids}
        self.locks = {session_id: anyio.Lock() for session_id in self.ids}

    async def increment(self, session_id: str, key: str = "counter", by: int = 1) -> int:
        check_key(key, CONFIG)
        async with self.locks[session_id]:
            return self.states[session_id].increment(key, by, time.time(), CONFIG)

    async def context(self, session_id: str) -> dict[str, Any]:
        async with self.locks[session_id]:
            return self.states[session_id].context(CONFIG.default_max_turns)

    def counter(self, session_id: str) -> int:
        value: int = self.states[session_id].metadata.get("counter", 0)
        return value
