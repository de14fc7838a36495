"""SQLite databases for the scenarios: made once through actorstate, copied per run, read back.

A run starts from a copy of a template database, so every repetition meets
the same rows; after it, the counters are read back from the file itself
(not from the process that wrote them), which is what "nothing lost" means.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from typing import TYPE_CHECKING

import anyio

import actorstate
from actorstate.config import Config
from actorstate.model.codec import decode_session

if TYPE_CHECKING:
    from benchmarks.suite import Plan


def make_sessions(path: str, count: int, payload_bytes: int = 0, backend: str = "trio") -> list[str]:
    """Create ``count`` sessions in a new database at ``path``; their ids in creation order.

    With ``payload_bytes``, each session's metadata holds a ``notes`` string
    of that size, so a session takes a realistic amount of memory.
    """

    async def create() -> list[str]:
        config = Config(max_resident=count + 1, memory_budget_mb=4096)
        async with actorstate.open_state(path, config=config) as state:
            ids = []
            for _ in range(count):
                session = await state.create_session("bench")
                if payload_bytes:
                    await session.add_context("notes", "n" * payload_bytes)
                ids.append(session.id)
            return ids

    return anyio.run(create, backend=backend)


def template(plan: Plan, name: str, count: int, payload_bytes: int = 0) -> tuple[str, list[str]]:
    """A template database of ``count`` sessions in the run's work folder, made once per run."""
    path = f"{plan.workdir}/{name}-{count}-{payload_bytes}.db"
    ids_path = path + ".ids"
    try:
        with open(ids_path) as file:
            return path, file.read().split()
    except FileNotFoundError:
        ids = make_sessions(path, count, payload_bytes)
        with open(ids_path, "w") as file:
            file.write("\n".join(ids))
        return path, ids


def copy(source: str, target: str) -> str:
    """A fresh copy of a closed database (a closed database has its WAL folded in)."""
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(target + suffix)
    shutil.copyfile(source, target)
    return target


def stored_counters(path: str) -> dict[str, int]:
    """Every session's ``counter`` as the database file holds it (0 when it has none)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, state FROM sessions").fetchall()
    finally:
        db.close()
    return {session_id: decode_session(blob).metadata.get("counter", 0) for session_id, blob in rows}
