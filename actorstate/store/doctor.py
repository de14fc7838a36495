"""``actorstate doctor``: look a database over without changing it."""

from __future__ import annotations

import dataclasses

from ..errors import StoreError
from ..model.codec import SnapshotDecodeError, decode_session
from .sqlite import SCHEMA_VERSION
from .view import DatabaseView

__all__ = ["Diagnosis", "diagnose"]


@dataclasses.dataclass
class Diagnosis:
    path: str
    sessions: int = 0
    ended: int = 0
    bytes: int = 0
    schema_version: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

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
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def diagnose(path: str) -> Diagnosis:
    """Integrity check, counts, and every snapshot decoded; changes nothing (see DatabaseView).

    Error handling:
        StoreError: the file is missing, not SQLite, or cannot be opened.
    """
    diagnosis = Diagnosis(path)
    with DatabaseView(path) as view:
        diagnosis.notes = view.notes
        try:
            _look_over(view, diagnosis)
        except StoreError as error:
            diagnosis.problems.append(f"unreadable: {error}")
    return diagnosis


def _look_over(view: DatabaseView, diagnosis: Diagnosis) -> None:
    diagnosis.schema_version = view.schema_version()
    if diagnosis.schema_version > SCHEMA_VERSION:
        diagnosis.problems.append(
            f"schema {diagnosis.schema_version} is newer than this actorstate knows ({SCHEMA_VERSION})"
        )
        return
    diagnosis.problems.extend(f"integrity: {problem}" for problem in view.integrity_problems())
    diagnosis.bytes = view.size_bytes()
    if diagnosis.schema_version == 0:
        diagnosis.problems.append("no actorstate schema: this database was never opened by actorstate")
        return
    for row in view.sessions(include_ended=True):
        if row.ended_at is None:
            diagnosis.sessions += 1
        else:
            diagnosis.ended += 1
        try:
            state = decode_session(row.state)
        except SnapshotDecodeError as error:
            diagnosis.problems.append(f"session {row.id}: {error}")
            continue
        if state.id != row.id or state.client_id != row.client_id:
            diagnosis.problems.append(f"session {row.id}: its snapshot names another session or client")
