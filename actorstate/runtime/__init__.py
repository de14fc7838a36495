"""The runtime: session actors, the supervisor that schedules, restarts and
evicts them, durability (group commit, replies held until commit) and housekeeping."""

from .supervisor import FaultHook, Supervisor, open_supervisor

__all__ = ["FaultHook", "Supervisor", "open_supervisor"]
