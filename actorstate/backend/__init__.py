"""The backend seam: parking a caller and waking it, from the loop or another thread.

trio and asyncio each have a module of their own, imported only when a state
opens on that backend, so a program on asyncio never imports trio.
"""

from __future__ import annotations

import sniffio

from .parking import Envelope, Parking, ToldEnvelope
from .tasks import Cancellable, TaskSet, open_task_set, run_detached

__all__ = [
    "Cancellable",
    "Envelope",
    "Parking",
    "TaskSet",
    "ToldEnvelope",
    "open_task_set",
    "parking_for_current_backend",
    "run_detached",
]


def parking_for_current_backend() -> Parking:
    """The parking of the event loop running this task (trio or asyncio)."""
    library = sniffio.current_async_library()
    if library == "trio":
        from ._trio import TrioParking

        return TrioParking()
    if library == "asyncio":
        from ._asyncio import AsyncioParking

        return AsyncioParking()
    raise RuntimeError(f"actorstate runs on trio or asyncio, not {library}")
