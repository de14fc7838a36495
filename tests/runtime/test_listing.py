"""Listing a client's sessions page by page: every live session once, in creation order, however they change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import actorstate
from actorstate import Config, InvalidInput
from actorstate.model.listing import decode_cursor, encode_cursor, merge_page
from actorstate.transport.tools import ToolContext, ToolError, call_tool

if TYPE_CHECKING:
    from pathlib import Path


def test_cursor_round_trips_and_foreign_cursors_are_refused() -> None:
    """A cursor stands for its key exactly; anything a listing did not give out is InvalidInput."""
    key = (1764090000.123456789, "e7b3bf69-c346-4a9b-861e-f9ad8ce0fc93")
    assert decode_cursor(encode_cursor(key)) == key
    for bad in ["", "x" * 500, "not base64!", encode_cursor(key)[:-3], "WzEsMl0", 42, None]:
        with pytest.raises(InvalidInput, match="cursor is not one a listing gave out"):
            decode_cursor(bad)


def test_merge_never_skips_stored_rows_past_a_truncated_store_page() -> None:
    """Memory's rows beyond the store's last row wait for a later page; ending rows leave the page."""
    stored = [("a", 1.0, 1.0), ("b", 2.0, 2.0), ("c", 3.0, 3.0)]
    page, next_key = merge_page(stored, True, [("z", 9.0, 9.0)], {"a", "b", "c"}, 3)
    assert page == []
    assert next_key == (3.0, "c")  # the store's rows after c come next, then z
    page, next_key = merge_page(stored, False, [("b", 2.0, 5.0), ("z", 9.0, 9.0)], {"a"}, 2)
    assert page == [("b", 2.0, 5.0), ("c", 3.0, 3.0)]  # memory's newer row wins
    assert next_key == (3.0, "c")
    assert merge_page(stored, False, [], set(), 3) == (stored, None)


async def _all_pages(state: actorstate.State, client_id: str, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = await state.describe_sessions(client_id, cursor=cursor, limit=limit)
        assert len(page.sessions) <= limit
        ids.extend(row["sessionId"] for row in page.sessions)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


@pytest.mark.anyio
@pytest.mark.parametrize("durability", ["commit", "interval", "memory"])
async def test_pages_list_every_live_session_once_in_creation_order(tmp_path: Path, durability: Any) -> None:
    """2,500 sessions of one client (some passivated, some not stored yet): pages cover each once, in order."""
    config = Config(max_resident=300, max_list_page_size=1000)
    async with actorstate.open_state(tmp_path / "many.db", durability=durability, config=config) as state:
        alice = [(await state.create_session("alice")).id for _ in range(2500)]
        bob = [(await state.create_session("bob")).id for _ in range(5)]
        await state.session(alice[10], "alice").end()
        live = alice[:10] + alice[11:]
        assert await _all_pages(state, "alice", 1000) == live
        assert await _all_pages(state, "alice", 7) == live
        assert await state.list_sessions("alice") == live
        assert await state.list_sessions("bob") == bob
        first = await state.describe_sessions("alice")
        assert len(first.sessions) == config.list_page_size
        assert first.sessions[0]["sessionId"] == alice[0]
        assert first.sessions[0]["createdAt"] <= first.sessions[0]["lastActivity"]


@pytest.mark.anyio
async def test_sessions_created_and_ended_between_pages(tmp_path: Path) -> None:
    """A session created after the first page shows up later; one ended meanwhile does not; none twice."""
    async with actorstate.open_state(tmp_path / "moving.db") as state:
        ids = [(await state.create_session("alice")).id for _ in range(30)]
        page = await state.describe_sessions("alice", limit=10)
        seen = [row["sessionId"] for row in page.sessions]
        await state.session(ids[20], "alice").end()
        newer = (await state.create_session("alice")).id
        while page.next_cursor is not None:
            page = await state.describe_sessions("alice", cursor=page.next_cursor, limit=10)
            seen.extend(row["sessionId"] for row in page.sessions)
        assert seen == ids[:20] + ids[21:] + [newer]


@pytest.mark.anyio
async def test_page_limits_are_enforced_with_a_clear_error() -> None:
    """A limit outside 1..max_list_page_size is refused naming the range; so is a forged cursor."""
    async with actorstate.open_state(config=Config(max_list_page_size=50, list_page_size=20)) as state:
        for bad in (0, 51, "10", 2.5):
            with pytest.raises(InvalidInput, match="limit must be an integer from 1 to 50"):
                await state.describe_sessions("alice", limit=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="cursor"):
            await state.describe_sessions("alice", cursor="bogus")


@pytest.mark.anyio
async def test_list_sessions_tool_pages_with_next_cursor(tmp_path: Path) -> None:
    """The tool answers one page (default list_page_size) and a nextCursor until the last page."""
    async with actorstate.open_state(tmp_path / "tool.db", config=Config(list_page_size=4)) as state:
        ids = [(await state.create_session("carol")).id for _ in range(10)]
        context = ToolContext(state)
        listed: list[str] = []
        arguments: dict[str, Any] = {"clientId": "carol"}
        pages = 0
        while True:
            result = (await call_tool(context, "list_sessions", arguments)).structured
            pages += 1
            listed.extend(row["sessionId"] for row in result["sessions"])
            if "nextCursor" not in result:
                break
            arguments = {"clientId": "carol", "cursor": result["nextCursor"]}
        assert (listed, pages) == (ids, 3)
        one = (await call_tool(context, "list_sessions", {"clientId": "carol", "limit": 10})).structured
        assert [row["sessionId"] for row in one["sessions"]] == ids
        assert "nextCursor" not in one
        with pytest.raises(ToolError, match="cursor is not one a listing gave out"):
            await call_tool(context, "list_sessions", {"clientId": "carol", "cursor": "nope"})


def test_client_index_keeps_order_when_the_clock_goes_back_and_skips_the_dead() -> None:
    """Memory mode's index: insertion out of time order lands in key order; dead ids are skipped and compacted."""
    from actorstate.runtime.client_index import ClientIndex

    live: set[str] = set()
    index = ClientIndex(live.__contains__)
    for n in range(3000):
        session_id = f"s{n:05d}"
        live.add(session_id)
        index.add("c", 1000.0 + n, session_id)
        if n % 3 == 0:
            live.discard(session_id)  # ended: the index learns it only when it looks
    index.add("c", 500.0, "early")  # the wall clock went back
    live.add("early")
    expected = ["early"] + [f"s{n:05d}" for n in range(3000) if n % 3]
    listed: list[str] = []
    after = None
    while True:
        page, after = index.page("c", after, 333)
        listed.extend(page)
        if after is None:
            break
    assert listed == expected
    assert index.page("nobody", None, 10) == ([], None)
