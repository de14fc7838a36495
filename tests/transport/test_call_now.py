"""``call_now`` keeps ``call_tool``'s accounts: what a held call's caller hears and what it counts.

A call answered without awaiting may have its reply held for its commit
(:class:`HeldCall`). Cancelled meanwhile, it counts as cancelled, as a call
cancelled while it waits in ``call_tool`` does; and a change listener that
raises reaches its caller as an error, as it does from ``call_tool``.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actorstate
from actorstate.transport.fast_path import reply_line
from actorstate.transport.tools import HeldCall, ToolContext, call_now, call_tool

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def _figures(ctx: ToolContext, tool: str) -> dict[str, int]:
    """The tool's calls by outcome, those that happened."""
    return {outcome: count for (name, outcome), count in ctx.calls.calls().items() if name == tool and count}


def _held(ctx: ToolContext, session_id: str) -> HeldCall:
    held = call_now(ctx, "increment_counter", {"sessionId": session_id})
    assert isinstance(held, HeldCall)
    return held


async def test_a_call_cancelled_while_it_waits_for_its_commit_counts_as_cancelled(tmp_path: Path) -> None:
    """Held (call_now) or parked in a task (call_tool): cancelled before its commit, a call counts
    once, as cancelled, and its caller hears nothing."""
    path = tmp_path / "cancel.db"
    async with actorstate.open_state(str(path)) as state:
        ctx = ToolContext(state)
        session = await state.create_session()
        await session.increment()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the next commit waits for this lock
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call_tool, ctx, "increment_counter", {"sessionId": session.id})
                await anyio.wait_all_tasks_blocked()  # its turn ran; it waits for the commit
                tg.cancel_scope.cancel()
            assert _figures(ctx, "increment_counter") == {"cancelled": 1}
            held = _held(ctx, session.id)
            delivered: list[Any] = []
            held.then(delivered.append)
            held.cancel()
            held.cancel()  # counted once
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        assert await session.increment() == 4  # both cancelled calls' turns were committed
        assert delivered == []
        assert _figures(ctx, "increment_counter") == {"cancelled": 2}


async def test_a_raising_change_listener_reaches_a_held_calls_caller(tmp_path: Path) -> None:
    """A listener that raises after a held call's commit: its caller gets that error (which the
    transport answers as the SDK answers a raising handler), not silence; the call counts ok."""

    def broken(session_id: str) -> None:
        raise RuntimeError("listener broke")

    async with actorstate.open_state(str(tmp_path / "listener.db")) as state:
        ctx = ToolContext(state)
        session = await state.create_session()
        ctx.add_change_listener(broken)
        with pytest.raises(RuntimeError, match="listener broke"):
            await call_tool(ctx, "increment_counter", {"sessionId": session.id})
        held = _held(ctx, session.id)
        delivered: list[Any] = []
        arrived = anyio.Event()

        def deliver(outcome: Any) -> None:
            delivered.append(outcome)
            arrived.set()

        held.then(deliver)
        with anyio.fail_after(30):
            await arrived.wait()
        assert len(delivered) == 1
        assert isinstance(delivered[0], RuntimeError)
        with pytest.raises(RuntimeError, match="listener broke"):
            reply_line(7, delivered[0])
        assert _figures(ctx, "increment_counter") == {"ok": 2}
