"""Restart intensity, Erlang/OTP style: a pure decision from the recent crash times.

An actor whose loop dies restarts after an exponential backoff
(``restart_backoff``, doubling up to ``restart_backoff_max``); more than
``max_restarts`` crashes within ``restart_window`` quarantine the session.
No clock, no I/O: the caller says when the crash happened.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..config import Config

__all__ = ["RestartDecision", "RestartPolicy"]


@dataclasses.dataclass(frozen=True, slots=True)
class RestartDecision:
    """The crashes that still count (this one last), and the wait before the restart;
    ``delay`` None means quarantine."""

    crash_times: list[float]
    delay: float | None

    @property
    def crashes(self) -> int:
        return len(self.crash_times)


class RestartPolicy:
    def __init__(self, config: Config) -> None:
        self._config = config

    def after_crash(self, earlier: Sequence[float] | None, now: float) -> RestartDecision:
        """Decide for a crash at ``now``, given the actor's earlier crash times."""
        config = self._config
        window_start = now - config.restart_window
        crash_times = [t for t in earlier or () if t > window_start]
        crash_times.append(now)
        if len(crash_times) > config.max_restarts:
            return RestartDecision(crash_times, None)
        delay = min(config.restart_backoff * 2 ** (len(crash_times) - 1), config.restart_backoff_max)
        return RestartDecision(crash_times, delay)
