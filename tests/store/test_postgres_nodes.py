"""Two actorstate nodes (two open_state on one PostgreSQL database), as an application sees them:
one owner per session, the other told to retry, and an old owner fenced."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

import actorstate
from actorstate import Config, InvalidInput, SessionMoved, SessionNotFound, StoreUnavailable
from actorstate.model.codec import decode_session

if TYPE_CHECKING:
    from pathlib import Path

    from actorstate.store.postgres_cluster import PostgresCluster

pytestmark = pytest.mark.anyio
# Fails a test that would otherwise poll forever; nothing is timed against it.
HANG_GUARD = 30


def expire_leases(url: str) -> None:
    """Every lease runs out, by the database's clock (as if its owner had paused past it)."""
    with psycopg.connect(url) as connection:
        # Rows locked in id order, as the store locks them: no deadlock with its writes.
        connection.execute(
            "UPDATE actorstate_sessions SET lease_expires = now() - interval '1 second' "
            "WHERE id IN (SELECT id FROM actorstate_sessions ORDER BY id FOR UPDATE)"
        )


def _stored_counter(url: str, session_id: str) -> int:
    """The counter as the database holds it (read without claiming the session)."""
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT state FROM actorstate_sessions WHERE id = %s", (session_id,)
        ).fetchone()
    assert row is not None
    counter: int = decode_session(bytes(row[0])).metadata["n"]
    return counter


async def test_a_session_is_served_by_its_owner_and_moves_when_its_lease_expires(postgres_url: str) -> None:
    """Node b's call on a's session is refused with SessionMoved while a's lease lives; once it
    has expired b serves it from what a committed; a's next write is fenced (its caller gets
    SessionMoved, nothing of it is kept), and a serves the session again only after b let go."""
    async with (
        actorstate.open_state(postgres_url) as a,
        actorstate.open_state(postgres_url) as b,
    ):
        created = await a.create_session("alice")
        assert await created.increment("n") == 1
        on_a = a.session(created.id, "alice")
        on_b = b.session(created.id, "alice")

        with pytest.raises(SessionMoved, match="retry"):
            await on_b.increment("n")
        assert _stored_counter(postgres_url, created.id) == 1

        expire_leases(postgres_url)
        assert await on_b.increment("n") == 2

        with pytest.raises(SessionMoved, match="retry"):
            await on_a.increment("n", by=100)  # a still holds the session in memory: fenced
        assert _stored_counter(postgres_url, created.id) == 2
        assert await on_b.increment("n") == 3
        with pytest.raises(SessionMoved):
            await on_a.context()  # a dropped its copy; b's lease still lives
    async with actorstate.open_state(postgres_url) as c:  # b closed: its lease was given up
        assert (await c.session(created.id, "alice").context())["metadata"] == {"n": 3}


async def test_reads_never_return_state_older_than_another_nodes_acknowledged_write(
    postgres_url: str,
) -> None:
    """With short leases, a node whose lease lapsed renews before it answers: a read on a after
    b took the session and wrote either gets b's value or SessionMoved, never a's stale copy."""
    config = Config(lease_duration=0.2)
    async with (
        actorstate.open_state(postgres_url, config=config) as a,
        actorstate.open_state(postgres_url, config=config) as b,
    ):
        created = await a.create_session("alice")
        await created.increment("n")
        on_a = a.session(created.id, "alice")
        on_b = b.session(created.id, "alice")
        with anyio.fail_after(HANG_GUARD):
            while True:  # until a's lease has expired by the database's clock
                try:
                    value = await on_b.increment("n", by=10)
                    break
                except SessionMoved:
                    await anyio.sleep(0.01)
        assert value == 11
        try:
            context = await on_a.context()
        except SessionMoved:
            pass
        else:
            assert context["metadata"] == {"n": 11}


async def test_a_node_restarted_under_its_name_takes_its_sessions_back_at_once(postgres_url: str) -> None:
    """A second process with the first one's node id (the first never let go, as after a crash)
    serves its sessions at once, where a node of another name is refused; the first, were it
    still running, is fenced."""
    async with actorstate.open_state(postgres_url, node_id="n1") as old:
        created = await old.create_session("alice")
        await created.increment("n")
        async with actorstate.open_state(postgres_url, node_id="n2") as other:
            with pytest.raises(SessionMoved, match="node n1"):
                await other.session(created.id, "alice").context()
        async with actorstate.open_state(postgres_url, node_id="n1") as restarted:
            assert await restarted.session(created.id, "alice").increment("n") == 2
            with pytest.raises(SessionMoved):
                await old.session(created.id, "alice").increment("n")
    assert _stored_counter(postgres_url, created.id) == 2


async def test_node_id_without_a_postgres_url_is_refused(tmp_path: Path) -> None:
    """node_id names a node sharing PostgreSQL: with a file (or no database) it is refused."""
    for path in (str(tmp_path / "state.db"), None):
        with pytest.raises(InvalidInput, match="postgresql://"):
            async with actorstate.open_state(path, node_id="n1"):
                pass


async def test_concurrent_increments_through_two_nodes_end_exact_while_owners_are_fenced(
    postgres_url: str,
) -> None:
    """Clients increment shared sessions through either node, retrying on the other when told
    the session moved, while every lease is expired again and again (as if the owners kept
    pausing): sessions change owners and old owners are fenced mid-load, yet each counter ends
    equal to the increments acknowledged, none lost and none applied twice."""
    sessions, clients, calls = 6, 12, 25
    async with (
        actorstate.open_state(postgres_url) as a,
        actorstate.open_state(postgres_url) as b,
    ):
        nodes = (a, b)
        ids = [(await a.create_session("alice")).id for _ in range(sessions)]
        acknowledged = dict.fromkeys(ids, 0)
        moved = 0

        async def client(number: int) -> None:
            nonlocal moved
            choices = random.Random(number)
            for call in range(calls):
                if call % 5 == 4:  # every owner's leases run out, as if it had paused
                    await anyio.to_thread.run_sync(expire_leases, postgres_url)
                session_id = choices.choice(ids)
                node = choices.randrange(2)
                with anyio.fail_after(HANG_GUARD):
                    while True:
                        try:
                            await nodes[node].session(session_id, "alice").increment("n")
                            break
                        except SessionMoved:
                            moved += 1
                            node = 1 - node
                            await anyio.sleep(0.001)
                acknowledged[session_id] += 1

        async with anyio.create_task_group() as tasks:
            for number in range(clients):
                tasks.start_soon(client, number)
        fenced = a.stats()["fenced"] + b.stats()["fenced"]
    assert moved > 0
    assert fenced > 0  # about thirty in a run: owners did change under load
    assert sum(acknowledged.values()) == clients * calls
    for session_id in ids:
        assert _stored_counter(postgres_url, session_id) == acknowledged[session_id]


async def test_a_postgres_crash_mid_load_loses_no_acknowledged_write(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    """PostgreSQL stopped in immediate mode (as a crash) and started again while clients
    increment: calls fail with StoreUnavailable meanwhile and the clients retry, service resumes,
    and each counter holds every acknowledged increment (plus at most the failed attempts, whose
    commit may have landed before the answer was lost)."""
    sessions, clients, calls = 4, 8, 30
    async with actorstate.open_state(postgres_url) as state:
        ids = [(await state.create_session("alice")).id for _ in range(sessions)]
        acknowledged = dict.fromkeys(ids, 0)
        failed = dict.fromkeys(ids, 0)
        halfway = anyio.Event()

        async def client(number: int) -> None:
            choices = random.Random(number)
            for _ in range(calls):
                session_id = choices.choice(ids)
                with anyio.fail_after(HANG_GUARD):
                    while True:
                        try:
                            await state.session(session_id, "alice").increment("n")
                            break
                        except StoreUnavailable:
                            failed[session_id] += 1
                            await anyio.sleep(0.01)
                acknowledged[session_id] += 1
                if sum(acknowledged.values()) >= clients * calls // 2:
                    halfway.set()

        async def crash_postgres() -> None:
            await halfway.wait()
            await anyio.to_thread.run_sync(postgres_cluster.restart, "immediate")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(crash_postgres)
            for number in range(clients):
                tasks.start_soon(client, number)
    assert sum(failed.values()) > 0  # the crash was felt
    for session_id in ids:
        stored = _stored_counter(postgres_url, session_id)
        assert acknowledged[session_id] <= stored <= acknowledged[session_id] + failed[session_id]


async def test_another_clients_call_waiting_with_the_owners_on_a_moved_session_hears_not_found(
    postgres_url: str,
) -> None:
    """On node b, the owner's call and another client's call on a session node a holds wait for
    the same load: the owner is told the session moved (retry on a), the other client hears
    "not found", as for an id never minted, not which node serves the session."""
    async with (
        actorstate.open_state(postgres_url) as a,
        actorstate.open_state(postgres_url) as b,
    ):
        created = await a.create_session("alice")
        await created.increment("n")
        answers: dict[str, Exception] = {}

        async def call_on_b(client_id: str) -> None:
            try:
                await b.session(created.id, client_id).context()
            except (SessionMoved, SessionNotFound) as error:
                answers[client_id] = error

        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as callers:
                callers.start_soon(call_on_b, "alice")
                callers.start_soon(call_on_b, "mallory")
        assert isinstance(answers["alice"], SessionMoved)
        assert type(answers["mallory"]) is SessionNotFound
        with pytest.raises(SessionNotFound) as never_minted:
            await b.session("00000000-0000-4000-8000-000000000000", "mallory").context()
        assert str(answers["mallory"]) == str(never_minted.value)
