"""SQLite databases for the scenarios: made once per run, copied per measurement, read back.

- Templates made through actorstate (``template``): a run starts from a
  copy, so every repetition meets the same rows; after it, the counters
  are read back from the file itself (not from the process that wrote
  them), which is what "nothing lost" means.
- Big databases written straight into the table (``database``): N small
  sessions whose ids and counters follow from their index, so every answer
  can be checked without keeping a million ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING

import anyio

import actorstate
from actorstate.config import Config
from actorstate.model.codec import decode_session, encode_session
from actorstate.model.session_state import SessionState
from benchmarks.suite import BenchmarkFailure

if TYPE_CHECKING:
    from benchmarks.suite import Plan

CLIENT = actorstate.DEFAULT_CLIENT_ID


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


def check_stored(path: str, ids: list[str], expected: list[int], system: str) -> None:
    """Every session's counter in the file at ``path`` equals ``expected`` (by index in ``ids``).

    Read through a read-only connection of its own, so it sees what is
    committed and nothing else: called while the system still has the file
    open (before its close flushes anything), it proves every acknowledged
    write was committed when it was acknowledged.

    Error handling:
        BenchmarkFailure naming the first session whose counter differs.
    """
    stored = stored_counters(path)
    for index, session_id in enumerate(ids):
        if stored.get(session_id) != expected[index]:
            raise BenchmarkFailure(
                f"{system}: session {session_id} holds counter {stored.get(session_id)} in the database "
                f"after {expected[index]} acknowledged increments"
            )


def session_id(index: int) -> str:
    """Session ``index``'s id: a version-4 UUID spread like random ones, the same in every run."""
    digest = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def counter_of(index: int) -> int:
    """The counter session ``index`` holds in the database."""
    return index + 1


def build_database(path: str, count: int) -> None:
    """Write ``count`` small sessions (a topic and a counter) straight into a new database.

    The schema comes from actorstate itself; the rows are what it would
    write (``encode_session`` of a ``SessionState``), inserted in key order
    in one transaction, without the fsyncs a live server pays.
    """

    async def create_schema() -> None:
        async with actorstate.open_state(path):
            pass

    anyio.run(create_schema)
    now = time.time()
    template = SessionState("", CLIENT, now)
    rows = sorted((session_id(index), index) for index in range(count))
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("BEGIN")
        for start in range(0, count, 10_000):
            batch = []
            for identifier, index in rows[start : start + 10_000]:
                template.id = identifier
                template.metadata = {"topic": "billing", "counter": counter_of(index)}
                batch.append((identifier, CLIENT, 1, encode_session(template), now, now, None))
            db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def database(workdir: str, count: int) -> str:
    """The database of ``count`` sessions in ``workdir``, built on first use and kept for the run."""
    path = os.path.join(workdir, f"sessions-{count}.db")
    if not os.path.exists(path):
        building = os.path.join(workdir, f"building-{count}.db")
        for leftover in (building, building + "-wal", building + "-shm"):
            if os.path.exists(leftover):
                os.remove(leftover)
        build_database(building, count)
        os.replace(building, path)
    return path
