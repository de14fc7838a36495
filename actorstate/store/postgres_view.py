"""A read-only look at a PostgreSQL database, for ``actorstate sessions`` and ``actorstate doctor``.

The same questions as :class:`~.view.DatabaseView` asks of a file, asked in
read-only transactions: looking claims no session, renews no lease and
changes no row, so it is safe beside running nodes. Sessions are read
through a server-side cursor, so a million of them are never all in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from ..errors import DatabaseRefused, StoreError
from ..locations import shown_location
from .postgres import SCHEMA_VERSION, refuses_actorstate
from .view import SessionRow

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

__all__ = ["PostgresView"]

_ROW = "SELECT id, client_id, version, state, ended_at FROM actorstate_sessions"
# Rows fetched from the server-side cursor at a time.
_BATCH = 1000


class PostgresView:
    """A PostgreSQL database opened for reading only; use it as a context manager.

    Error handling:
        DatabaseRefused: the database does not exist or refuses the
            credentials (on opening), or holds no actorstate sessions this
            version can read (on reading them).
        StoreError: the server cannot be reached or read.
    """

    KNOWN_SCHEMA = SCHEMA_VERSION

    def __init__(self, url: str) -> None:
        self.path = shown_location(url)
        self.notes: list[str] = []
        try:
            self._db: psycopg.Connection[Any] = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as error:
            message = str(error).strip()
            if refuses_actorstate(error):
                raise DatabaseRefused(f"{self.path} refused actorstate: {message}") from error
            raise StoreError(f"cannot connect to {self.path}: {message}") from error
        self._db.read_only = True

    def __enter__(self) -> PostgresView:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _read(self, doing: str, sql: str, *args: object) -> list[Any]:
        try:
            with self._db.transaction():
                return self._db.execute(sql, args).fetchall()
        except psycopg.Error as error:
            raise StoreError(f"{doing} failed on {self.path}: {error}") from error

    def schema_version(self) -> int:
        """actorstate's schema version in this database; 0 when it holds none."""
        doing = "reading the schema version"
        if self._read(doing, "SELECT to_regclass('actorstate_schema')")[0][0] is None:
            return 0
        return int(self._read(doing, "SELECT coalesce(max(version), 0) FROM actorstate_schema")[0][0])

    def size_bytes(self) -> int:
        rows = self._read(
            "measuring the database",
            "SELECT coalesce(pg_total_relation_size(to_regclass('actorstate_sessions')), 0)",
        )
        return int(rows[0][0])

    def integrity_problems(self) -> list[str]:
        """None to report: PostgreSQL checks its pages itself (with data checksums, when on)."""
        return []

    def sessions(self, *, client_id: str | None = None, include_ended: bool = False) -> Iterator[SessionRow]:
        """The stored sessions in id order: live ones, or all with ``include_ended``."""
        self._require_sessions()
        where: list[str] = []
        values: list[object] = []
        if not include_ended:
            where.append("ended_at IS NULL")
        if client_id is not None:
            where.append("client_id = %s")
            values.append(client_id)
        sql = _ROW + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return self._rows(sql, values)

    def _rows(self, sql: str, values: list[object]) -> Iterator[SessionRow]:
        try:
            with self._db.transaction(), self._db.cursor(name="actorstate_sessions_view") as cursor:
                cursor.itersize = _BATCH
                cursor.execute(sql, values)
                for session_id, client, version, state, ended_at in cursor:
                    yield SessionRow(session_id, client, version, bytes(state), ended_at)
        except psycopg.Error as error:
            raise StoreError(f"reading sessions failed on {self.path}: {error}") from error

    def session(self, session_id: str) -> SessionRow | None:
        """One stored session, live or ended; None if the database has none with that id."""
        self._require_sessions()
        rows = self._read(f"reading session {session_id}", _ROW + " WHERE id = %s", session_id)
        if not rows:
            return None
        found, client, version, state, ended_at = rows[0]
        return SessionRow(found, client, version, bytes(state), ended_at)

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
