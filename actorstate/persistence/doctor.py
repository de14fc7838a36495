"""``actorstate doctor``: look a database over without changing it."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path

from ..errors import StoreError
from .codec import SnapshotDecodeError, decode_session
from .store import SCHEMA_VERSION, check_database_file

__all__ = ["Diagnosis", "diagnose"]


@dataclasses.dataclass
class Diagnosis:
    path: str
    sessions: int = 0
    ended: int = 0
    bytes: int = 0
    schema_version: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    def report(self) -> str:
        lines = [
            f"database: {self.path}",
            f"schema version: {self.schema_version}",
            f"live sessions: {self.sessions}",
            f"ended sessions: {self.ended}",
            f"size: {self.bytes:,} bytes",
        ]
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines.extend(f"  - {problem}" for problem in self.problems)
        else:
            lines.append("problems: none")
        return "\n".join(lines)


def diagnose(path: str) -> Diagnosis:
    """Integrity check, counts, and every snapshot decoded; opens the file read-only.

    Error handling:
        StoreError: the file is missing, not SQLite, or cannot be opened.
    """
    if not os.path.exists(path):
        raise StoreError(f"{path} does not exist")
    check_database_file(path)
    diagnosis = Diagnosis(path)
    try:
        db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open {path}: {error}") from error
    try:
        diagnosis.schema_version = db.execute("PRAGMA user_version").fetchone()[0]
        if diagnosis.schema_version > SCHEMA_VERSION:
            diagnosis.problems.append(
                f"schema {diagnosis.schema_version} is newer than this actorstate knows ({SCHEMA_VERSION})"
            )
            return diagnosis
        diagnosis.problems.extend(
            f"integrity: {row[0]}" for row in db.execute("PRAGMA integrity_check") if row[0] != "ok"
        )
        page_count = db.execute("PRAGMA page_count").fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        diagnosis.bytes = page_count * page_size
        if diagnosis.schema_version == 0:
            diagnosis.problems.append("no actorstate schema: this database was never opened by actorstate")
            return diagnosis
        for session_id, client_id, blob, ended_at in db.execute(
            "SELECT id, client_id, state, ended_at FROM sessions"
        ):
            if ended_at is None:
                diagnosis.sessions += 1
            else:
                diagnosis.ended += 1
            try:
                state = decode_session(blob)
            except SnapshotDecodeError as error:
                diagnosis.problems.append(f"session {session_id}: {error}")
                continue
            if state.id != session_id or state.client_id != client_id:
                diagnosis.problems.append(
                    f"session {session_id}: its snapshot names another session or client"
                )
    except sqlite3.DatabaseError as error:
        diagnosis.problems.append(f"unreadable: {error}")
    finally:
        db.close()
    return diagnosis
