"""A fault hook that kills one session's loop on its next increments, and says when it did."""

from __future__ import annotations

import anyio

from actorstate.model.messages import Increment, Message


class InjectedCrash(Exception):
    """Raised by a fault hook: the actor's loop dies outside any turn."""


class CrashOn:
    """Kills the loop of one session on its next ``crashes`` increments.

    Make it inside the test (its event belongs to the running loop);
    ``await hook.first_crash.wait()`` returns once the loop has died, with
    the crashed call already back in the mailbox.
    """

    def __init__(self, crashes: int) -> None:
        self.session_id: str | None = None
        self.crashes_left = crashes
        self.crashed = 0
        self.first_crash = anyio.Event()

    def __call__(self, session_id: str, client_id: str | None, message: Message) -> None:
        if session_id == self.session_id and isinstance(message, Increment) and self.crashes_left:
            self.crashes_left -= 1
            self.crashed += 1
            self.first_crash.set()
            raise InjectedCrash(f"injected crash {self.crashed}")
