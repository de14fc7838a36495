"""Several processes opening one new database file at the same moment (two MCP
clients launching the server at once): every one of them opens it."""

from __future__ import annotations

import multiprocessing
import sqlite3
from typing import TYPE_CHECKING

import anyio

import actorstate
from actorstate.store.sqlite import _MIGRATIONS, SCHEMA_VERSION, SQLiteStore

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier
    from pathlib import Path

PROCESSES = 6
ROUNDS = 8


async def _open_and_create(path: str) -> None:
    async with actorstate.open_state(path) as state:
        await state.create_session(client_id="racer")


def _race(directory: str, worker: int, barrier: Barrier, results: multiprocessing.Queue[str | None]) -> None:
    """One racer: in every round, wait for the others, then open that round's file."""
    for round_number in range(ROUNDS):
        path = f"{directory}/{round_number}.db"
        barrier.wait(timeout=60)
        try:
            if worker % 2:
                anyio.run(_open_and_create, path)
            else:
                SQLiteStore(path).close()
        except Exception as error:
            results.put(f"round {round_number}, worker {worker}: {error!r}")
        else:
            results.put(None)


def _run_racers(directory: Path) -> list[str]:
    """Start the racers, let them race through every round, return their failures."""
    # spawn: forking a process that runs threads is unsafe, and the racers
    # start once and meet at the barrier before every round.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results: multiprocessing.Queue[str | None] = context.Queue()
    racers = [
        context.Process(target=_race, args=(str(directory), worker, barrier, results))
        for worker in range(PROCESSES)
    ]
    for racer in racers:
        racer.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(PROCESSES * ROUNDS)]
    finally:
        for racer in racers:
            racer.join(timeout=60)
            if racer.is_alive():
                racer.kill()
    return [failure for failure in outcomes if failure is not None]


def _assert_every_round_migrated(directory: Path) -> None:
    for round_number in range(ROUNDS):
        with sqlite3.connect(directory / f"{round_number}.db") as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            racers_sessions = db.execute("SELECT count(*) FROM sessions WHERE client_id = 'racer'").fetchone()
            assert racers_sessions[0] == PROCESSES // 2


def test_processes_opening_a_new_file_at_once_all_open(tmp_path: Path) -> None:
    """Racing processes all open a fresh file: one creates the schema, none sees it half made."""
    assert _run_racers(tmp_path) == []
    _assert_every_round_migrated(tmp_path)


def test_processes_upgrading_an_old_schema_at_once_all_open(tmp_path: Path) -> None:
    """Racing processes all open a file at schema 1: one upgrades it, the others find it upgraded."""
    for round_number in range(ROUNDS):
        with sqlite3.connect(tmp_path / f"{round_number}.db") as db:
            db.execute("PRAGMA journal_mode = WAL")
            for statement in filter(str.strip, _MIGRATIONS[0].split(";")):
                db.execute(statement)
            db.execute("PRAGMA user_version = 1")
    assert _run_racers(tmp_path) == []
    _assert_every_round_migrated(tmp_path)
