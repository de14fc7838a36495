"""While the store fails, every write fails at once: no backoff stands between a call and its error."""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import actorstate
from actorstate import StoreError

if TYPE_CHECKING:
    from pathlib import Path


class FailingCommits(sqlite3.Connection):
    """Every COMMIT fails while armed, as on a full disk; reads keep working."""

    armed = False

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if FailingCommits.armed and sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args, **kwargs)


def _connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    return sqlite3.connect(*args, factory=FailingCommits, **kwargs)


def test_writes_during_a_store_fault_fail_without_waiting_on_the_clock(tmp_path: Path) -> None:
    """Fifteen writes against a failing store each get StoreError while the clock stands still.

    Time is trio's MockClock, frozen: any backoff between failed commits
    would leave a write waiting for good. A real-time watchdog only turns
    such a hang into a failure; nothing is timed.
    """
    clock = trio.testing.MockClock()
    failures: list[str] = []

    async def main() -> None:
        with trio.CancelScope() as watchdog_scope:
            token = trio.lowlevel.current_trio_token()
            watchdog = threading.Timer(30, token.run_sync_soon, (watchdog_scope.cancel,))
            watchdog.start()
            try:
                async with actorstate.open_state(tmp_path / "failing.db", connect=_connect) as state:
                    session = await state.create_session()
                    await session.increment()
                    FailingCommits.armed = True
                    try:
                        for _ in range(15):
                            with pytest.raises(StoreError) as failure:
                                await session.increment()
                            failures.append(str(failure.value))
                    finally:
                        FailingCommits.armed = False
                    assert await session.increment() == 2
                    clock.autojump_threshold = 0  # closing may wait for reloads still in flight
            finally:
                watchdog.cancel()
        assert not watchdog_scope.cancelled_caught, f"writes waited on the clock after {len(failures)}"

    trio.run(main, clock=clock)
    assert len(failures) == 15
    assert all("database or disk is full" in failure for failure in failures)


@pytest.fixture(autouse=True)
def _disarm() -> None:
    FailingCommits.armed = False
