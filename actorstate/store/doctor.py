"""``actorstate doctor``: look a database over without changing it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..errors import StoreError
from ..locations import is_postgres_url, shown_location
from ..model.codec import SnapshotDecodeError, decode_session
from .sqlite import SCHEMA_VERSION
from .view import DatabaseView

if TYPE_CHECKING:
    from .postgres_view import PostgresView

__all__ = ["Diagnosis", "diagnose", "open_view"]


def open_view(location: str) -> DatabaseView | PostgresView:
    """A read-only look at the database file, or at the PostgreSQL database a URL names
    (psycopg is imported only then)."""
    if is_postgres_url(location):
        from .postgres_view import PostgresView

        return PostgresView(location)
    return DatabaseView(location)


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
    """Integrity check, counts, and every snapshot decoded; changes nothing (see DatabaseView
    and PostgresView). ``path``: a file, or a ``postgresql://`` URL.

    Error handling:
        StoreError: the file is missing, not SQLite, or cannot be opened
            (the database cannot be reached).
    """
    diagnosis = Diagnosis(shown_location(path))
    with open_view(path) as view:
        diagnosis.notes = view.notes
        try:
            _look_over(view, diagnosis)
        except StoreError as error:
            diagnosis.problems.append(f"unreadable: {error}")
    return diagnosis


def _look_over(view: DatabaseView | PostgresView, diagnosis: Diagnosis) -> None:
    known = SCHEMA_VERSION if isinstance(view, DatabaseView) else view.KNOWN_SCHEMA
    diagnosis.schema_version = view.schema_version()
    if diagnosis.schema_version > known:
        diagnosis.problems.append(
            f"schema {diagnosis.schema_version} is newer than this actorstate knows ({known})"
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
