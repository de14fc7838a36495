"""The runtime: session actors and what runs them.

From the top down: the supervisor (routes calls, owns the lifetime), the
scheduler (the one turn runner; crashes, restarts, quarantine), residency
(which actors are in memory), durability (group commit, replies held until
commit) and housekeeping (the store's periodic pass), then the leaves: the
actor record, the restart policy, memory estimates and memory mode's
listing index. Each imports only what is below it.
"""

from .supervisor import FaultHook, Supervisor, open_supervisor

__all__ = ["FaultHook", "Supervisor", "open_supervisor"]
