"""Every limit and default of actorstate, in one place.

Everything else reads these values from the :class:`Config` it was given;
no module keeps a limit of its own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import ConfigError

__all__ = ["Config"]

# max_restarts = 0 quarantines a session at its first crash.
_MAY_BE_ZERO = frozenset({"max_restarts"})


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Limits and timings of one :func:`actorstate.open_state`.

    Times are in seconds. Build a variant with :func:`dataclasses.replace` or
    ``Config(field=value, ...)``; every field is checked on construction.
    """

    # Mailboxes: a caller waits at most ask_timeout for room, then Overloaded.
    mailbox_size: int = 1024
    ask_timeout: float = 5.0

    # Restart intensity (Erlang/OTP style): more than max_restarts crashes
    # within restart_window quarantines the session.
    max_restarts: int = 3
    restart_window: float = 5.0
    restart_backoff: float = 0.01
    restart_backoff_max: float = 1.0

    # Residency: how many actors stay in memory, and for how long.
    max_resident: int = 10_000
    memory_budget_mb: float = 256.0
    memory_high_watermark: float = 0.90
    memory_low_watermark: float = 0.75
    idle_timeout: float = 30 * 60.0
    session_ttl: float = 24 * 3600.0
    maintenance_interval: float = 1.0

    # The session model.
    max_events: int = 100
    max_key_length: int = 256
    max_value_bytes: int = 64 * 1024
    max_session_bytes: int = 1024 * 1024
    max_turns_limit: int = 50
    default_max_turns: int = 10
    # Idempotency keys (a write's requestId): a session remembers the outcome
    # of its last max_request_ids keyed writes, so a retry among them returns
    # the first outcome instead of applying twice; older keys are forgotten.
    max_request_ids: int = 256
    max_request_id_length: int = 128

    # Listing a client's sessions goes page by page: one page never holds more.
    list_page_size: int = 100
    max_list_page_size: int = 1000

    # Persistence.
    flush_interval: float = 0.05
    ended_retention: float = 7 * 24 * 3600.0
    housekeeping_interval: float = 60.0
    busy_timeout: float = 5.0
    # PostgreSQL shared by several nodes: a session stays this node's for
    # lease_duration (by the database's clock) after its last claim, write or
    # renewal; a node that dies or pauses loses its sessions after that long.
    lease_duration: float = 30.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value: Any = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"Config.{field.name} must be a number, not {value!r}")
            if field.name in _MAY_BE_ZERO and value == 0:
                continue
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"Config.{field.name} must be a positive number, not {value!r}")
        if not self.memory_low_watermark < self.memory_high_watermark <= 1.0:
            raise ConfigError(
                "Config needs 0 < memory_low_watermark < memory_high_watermark <= 1, got "
                f"{self.memory_low_watermark} and {self.memory_high_watermark}"
            )
        if self.default_max_turns > self.max_turns_limit:
            raise ConfigError("Config.default_max_turns must not exceed Config.max_turns_limit")
        if self.list_page_size > self.max_list_page_size:
            raise ConfigError("Config.list_page_size must not exceed Config.max_list_page_size")

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.memory_budget_mb * 1024 * 1024)
