"""actorstate: concurrent, durable session state built on actors.

Each session is an actor that alone owns its state; a supervisor activates,
passivates, evicts and restarts actors. See ``open_state``.
"""

from .config import Config
from .errors import (
    ActorStateError,
    ConfigError,
    DatabaseRefused,
    InvalidInput,
    Overloaded,
    SessionMoved,
    SessionNotFound,
    SessionQuarantined,
    StateClosed,
    StoreError,
    StoreUnavailable,
)
from .model.listing import SessionPage
from .runtime.events import SessionEvent
from .state import DEFAULT_CLIENT_ID, Durability, Session, State, open_state

__all__ = [
    "DEFAULT_CLIENT_ID",
    "ActorStateError",
    "Config",
    "ConfigError",
    "DatabaseRefused",
    "Durability",
    "InvalidInput",
    "Overloaded",
    "Session",
    "SessionEvent",
    "SessionMoved",
    "SessionNotFound",
    "SessionPage",
    "SessionQuarantined",
    "State",
    "StateClosed",
    "StoreError",
    "StoreUnavailable",
    "open_state",
]

__version__ = "0.1.0"
