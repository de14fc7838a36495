"""Parking on trio: a parked caller is rescheduled directly by the turn that answers it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio

from .parking import Envelope, Parking

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TrioParking"]

R = TypeVar("R")


class TrioParking(Parking):
    name = "trio"
    misleading = (*Parking.misleading, trio.Cancelled)
    checkpoint = staticmethod(trio.lowlevel.checkpoint)

    async def park(self, envelope: Envelope[R]) -> R:
        if envelope.done:  # resolved before the caller got to park
            await trio.lowlevel.checkpoint()
            return envelope.unwrap()
        envelope.waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            envelope.cancelled = True
            return trio.lowlevel.Abort.SUCCEEDED

        result: R = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _wake(self, envelope: Envelope[Any], value: Any, error: BaseException | None) -> None:
        result = outcome.Value(value) if error is None else outcome.Error(error)
        trio.lowlevel.reschedule(envelope.waiter, result)

    def threadsafe_scheduler(self) -> Callable[..., None]:
        return trio.lowlevel.current_trio_token().run_sync_soon
