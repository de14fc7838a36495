"""A read-only look at a database, for ``actorstate sessions`` and ``actorstate doctor``.

Looking changes nothing, in the file or beside it, and works on read-only
media. A plain read-only SQLite connection does neither on a database in WAL
mode: it creates ``-wal`` and ``-shm`` files beside the database (and leaves
them there), and where it cannot create them it cannot read at all.

So a database that no process has open is read as *immutable*: no locks, no
``-wal`` or ``-shm``. SQLite keeps the ``-wal`` file while any connection
has the database open in WAL mode (actorstate always does) and a
``-journal`` file while a rollback-mode write is unfinished; without either,
the file alone holds every committed change. A database with either file is
read through an ordinary read-only connection, which reads the WAL and takes
the locks a live database needs. Those files were there already; only a
``-wal`` left by a crash without its ``-shm`` gets a new ``-shm``.

A server that starts while an immutable look is reading is not seen: its
writes go to its new WAL, and only a checkpoint during the look could
mislead it.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatabaseRefused, StoreError
from .sqlite import SCHEMA_VERSION, check_database_file

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

__all__ = ["DatabaseView", "SessionRow"]

_ROW = "SELECT id, client_id, version, state, ended_at FROM sessions"


@dataclasses.dataclass(frozen=True, slots=True)
class SessionRow:
    """One stored session as the table holds it; ``state`` is the encoded snapshot."""

    id: str
    client_id: str
    version: int
    state: bytes
    ended_at: float | None


class DatabaseView:
    """A database file opened for reading only; use it as a context manager.

    ``notes`` says what the look could not see (a WAL that read-only media
    kept it from reading).

    Error handling:
        StoreError: the file is missing or cannot be opened or read.
        DatabaseRefused: it is not an SQLite database (on opening), or holds
            no actorstate sessions this version can read (on reading them).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.exists(path):
            raise StoreError(f"{path} does not exist")
        check_database_file(path)
        self.notes: list[str] = []
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        uri = Path(self.path).resolve().as_uri()
        beside = [self.path + suffix for suffix in ("-wal", "-journal") if os.path.exists(self.path + suffix)]
        try:
            if not beside:
                return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True)
            db = sqlite3.connect(uri + "?mode=ro", uri=True)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open {self.path}: {error}") from error
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL
        except sqlite3.OperationalError as error:
            # Read-only media: the WAL index (or the journal's rollback) needs
            # a file that cannot be made or written. What the database file
            # holds can still be read, without what the file beside it adds.
            db.close()
            self.notes.append(f"changes still in {beside[0]} are not shown: it cannot be read here ({error})")
            try:
                return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True)
            except sqlite3.Error as again:
                raise StoreError(f"cannot open {self.path}: {again}") from again
        return db

    def __enter__(self) -> DatabaseView:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _read(self, doing: str, sql: str, *args: object) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"{doing} failed on {self.path}: {error}") from error

    def schema_version(self) -> int:
        return int(self._read("reading the schema version", "PRAGMA user_version")[0][0])

    def size_bytes(self) -> int:
        rows = self._read(
            "measuring the database", "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"
        )
        return int(rows[0][0])

    def integrity_problems(self) -> list[str]:
        """What ``PRAGMA integrity_check`` finds wrong; empty when the file is sound."""
        rows = self._read("checking integrity", "PRAGMA integrity_check")
        return [str(row[0]) for row in rows if row[0] != "ok"]

    def sessions(self, *, client_id: str | None = None, include_ended: bool = False) -> Iterator[SessionRow]:
        """The stored sessions in id order: live ones, or all with ``include_ended``.

        Rows are read as the iterator advances, so a million sessions are
        never all in memory.
        """
        self._require_sessions()
        where, values = [], []
        if not include_ended:
            where.append("ended_at IS NULL")
        if client_id is not None:
            where.append("client_id = ?")
            values.append(client_id)
        sql = _ROW + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        try:
            cursor = self._db.execute(sql, values)
        except sqlite3.Error as error:
            raise StoreError(f"reading sessions failed on {self.path}: {error}") from error
        return self._rows(cursor)

    def _rows(self, cursor: sqlite3.Cursor) -> Iterator[SessionRow]:
        try:
            for row in cursor:
                yield SessionRow(*row)
        except sqlite3.Error as error:
            raise StoreError(f"reading sessions failed on {self.path}: {error}") from error

    def session(self, session_id: str) -> SessionRow | None:
        """One stored session, live or ended; None if the database has none with that id."""
        self._require_sessions()
        rows = self._read(f"reading session {session_id}", _ROW + " WHERE id = ?", session_id)
        return SessionRow(*rows[0]) if rows else None

    def _require_sessions(self) -> None:
        version = self.schema_version()
        if version == 0:
            raise DatabaseRefused(
                f"{self.path} holds no actorstate sessions (it was never opened by actorstate)"
            )
        if version > SCHEMA_VERSION:
            raise DatabaseRefused(
                f"{self.path} was written by a newer actorstate (schema {version}; this one reads "
                f"up to {SCHEMA_VERSION}); upgrade actorstate to read it"
            )
