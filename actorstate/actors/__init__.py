"""Session actors, their messages, and the supervisor that runs them."""

from .supervisor import FaultHook, Supervisor, open_supervisor

__all__ = ["FaultHook", "Supervisor", "open_supervisor"]
