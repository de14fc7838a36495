"""The SQLite store: one row per session, written only over the version it was based on.

Everything here is synchronous and runs on the :class:`DatabaseThread`.
``sqlite3`` errors are translated into :class:`StoreUnavailable` at this boundary;
what the store refuses to open raises :class:`DatabaseRefused` (both are
:class:`StoreError`).

Schema (``PRAGMA user_version`` holds its version; see ``_MIGRATIONS``)::

    sessions(id TEXT PRIMARY KEY, client_id TEXT, version INTEGER,
             state BLOB, created_at REAL, last_activity REAL, ended_at REAL)

``version`` grows by one per committed change. A write says which version
it was based on (``UPDATE ... WHERE id = ? AND version = ?``); a write based
on a stale version changes nothing and is reported as a conflict, so two
processes on one file never overwrite each other's updates.

The store remembers which file it opened (device and inode). A transaction
commits only if the path still names that file: once the file is deleted
or replaced, a commit would land in a file nobody can open again, so it is
refused with :class:`StoreUnavailable` instead of being acknowledged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from typing import TYPE_CHECKING

from ..errors import DatabaseRefused, StoreUnavailable
from ..fault_seam import FaultSeam, process_seam
from .interface import ExpiryStep, SnapshotWrite, StoredSession, WriteOutcome
from .sqlite_changes import ChangeWatch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "check_database_file"]

SCHEMA_VERSION = 2
_SQLITE_HEADER = b"SQLite format 3\x00"
_NOT_A_DATABASE = (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)
_COMMITTED, _CONFLICT = WriteOutcome.COMMITTED, WriteOutcome.CONFLICT

# Each entry upgrades the schema from its index to index + 1.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        state BLOB NOT NULL,
        created_at REAL NOT NULL,
        last_activity REAL NOT NULL,
        ended_at REAL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_client ON sessions (client_id) WHERE ended_at IS NULL;
    CREATE INDEX sessions_by_end ON sessions (ended_at) WHERE ended_at IS NOT NULL;
    """,
    # Listing a client's sessions page by page, oldest first: each page is
    # one range of this index (it holds the id too, the table's key), so a
    # page costs the same whether the client has ten sessions or a million.
    # Neither column ever changes, so writes do not maintain it.
    """
    DROP INDEX sessions_by_client;
    CREATE INDEX sessions_by_client ON sessions (client_id, created_at) WHERE ended_at IS NULL;
    """,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION


def check_database_file(path: str) -> None:
    """Refuse, naming the file, anything that exists and is not an SQLite database.

    Runs before SQLite opens the file, so a foreign file is never touched.
    The message gives no advice: what to do depends on the command that
    named the file.

    Error handling:
        DatabaseRefused: the path is a directory, unreadable, or not SQLite.
    """
    try:
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise DatabaseRefused(f"{path} is a directory, not a database file") from None
    except OSError as error:
        raise DatabaseRefused(f"cannot read {path}: {error.strerror}") from None
    if header and header != _SQLITE_HEADER:
        raise DatabaseRefused(
            f"{path} is not an SQLite database (its first bytes are {header[:16]!r}); refusing to open it"
        )


@contextlib.contextmanager
def _translated(path: str, doing: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        code = getattr(error, "sqlite_errorname", type(error).__name__)
        raise StoreUnavailable(f"{doing} failed on {path}: {error} ({code})") from error


# SQLite's largest max_page_count: no limit short of the file format's.
_NO_PAGE_LIMIT = 4294967294
# A batch's updates go as one UPDATE ... FROM (VALUES ...) (SQLite 3.33 and
# later), at most this many rows a statement (4 parameters each, well under
# SQLite's limit of 32,766); older SQLite takes them one row at a time.
_UPDATES_PER_STATEMENT = 500
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


class SQLiteStore:
    """The session table of one database file, used from one thread only."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        connect: Callable[..., sqlite3.Connection] = sqlite3.connect,
        faults: FaultSeam | None = None,
    ) -> None:
        self.path = os.fspath(path)
        # The fault seam: given by a test, or the process's own when the chaos runner set one up.
        self._faults = faults if faults is not None else process_seam()
        self._page_limited = False
        check_database_file(self.path)
        with _translated(self.path, "opening the database"):
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE).
            self._db = connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Refuse a database that is not ours before changing anything
            # in it (switching to WAL rewrites the file header).
            version = self._check_schema()
            self._switch_to_wal(busy_timeout)
            self._db.execute(f"PRAGMA synchronous = {synchronous}")
            if version != SCHEMA_VERSION:
                self._migrate()
            self._opened = self._file_identity()
            self.changes = ChangeWatch(self.path, self._db)
            self._changes_at_begin = 0  # the connection's total_changes when its transaction began
        except sqlite3.Error as error:
            self._db.close()
            if getattr(error, "sqlite_errorcode", 0) & 0xFF in _NOT_A_DATABASE:
                raise DatabaseRefused(
                    f"{self.path} is not a usable SQLite database: {error}; refusing to open it"
                ) from error
            code = getattr(error, "sqlite_errorname", type(error).__name__)
            raise StoreUnavailable(f"opening the database failed on {self.path}: {error} ({code})") from error
        except BaseException:
            self._db.close()
            raise

    def _check_schema(self) -> int:
        """The schema version, after refusing a newer schema or another application's tables.

        Both are read in one statement, hence one snapshot: read apart, they
        could straddle another process's migration and see its tables
        without its version.
        """
        version, tables = self._db.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        if version > SCHEMA_VERSION:
            raise DatabaseRefused(
                f"{self.path} was written by a newer actorstate (schema {version}; this one knows "
                f"up to {SCHEMA_VERSION}); upgrade actorstate to open it"
            )
        if version == 0 and tables:
            raise DatabaseRefused(
                f"{self.path} holds tables that are not actorstate's; refusing to change it"
            )
        return int(version)

    def _switch_to_wal(self, busy_timeout: float) -> None:
        deadline = time.monotonic() + busy_timeout
        pause = 0.001
        while True:
            try:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as error:
                # Two connections switching one file at once both hold a read
                # lock and want the write lock; SQLite answers one of them
                # SQLITE_BUSY at once, without its busy handler (waiting could
                # deadlock), so the waiting happens here.
                busy = getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        if mode.lower() != "wal":
            raise DatabaseRefused(f"{self.path}: cannot switch to WAL journaling (got {mode})")

    def _migrate(self) -> None:
        """Bring the schema up to date in one exclusive transaction.

        The version is read again under the lock: another process opening
        the same new file at the same moment may have migrated it already.
        """
        self._db.execute("BEGIN EXCLUSIVE")
        try:
            version = self._check_schema()
            for step in range(version, SCHEMA_VERSION):
                for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                    self._db.execute(statement)
            if version != SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _file_identity(self) -> tuple[int, int]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise StoreUnavailable(
                f"{self.path} was deleted or moved away while open; refusing to write: the changes "
                "would be lost with the deleted file (restart actorstate to create a new database there)"
            ) from None
        except OSError as error:
            raise StoreUnavailable(f"cannot check {self.path}: {error.strerror}") from None
        return stat.st_dev, stat.st_ino

    def check_file(self) -> None:
        """Raise :class:`StoreUnavailable` unless the path still names the file that was opened.

        A stat costs microseconds; every commit and every checkpoint call
        this before writing, so nothing is acknowledged into a deleted file.
        """
        if self._file_identity() != self._opened:
            raise StoreUnavailable(
                f"{self.path} was replaced by another file while open; refusing to write: the "
                "changes would not reach the file now at that path (restart actorstate to open it)"
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, committed only into the file that was opened."""
        db = self._db
        self._begin()
        try:
            yield
            self.check_file()
            if self._faults is not None and self._faults.commit_fails():
                raise sqlite3.OperationalError("disk I/O error (injected through the fault seam)")
            if db.total_changes == self._changes_at_begin:
                # No row changed: SQLite commits nothing and the counter stays
                # put, so a move seen before after_own_commit is another's.
                self.changes.own_write_ended()
            db.execute("COMMIT")
        except BaseException:
            self.changes.own_write_ended()
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        self.changes.after_own_commit()

    def _begin(self) -> None:
        """BEGIN IMMEDIATE: holding the write lock, tell the change watch a commit of ours may come."""
        if self._faults is not None:
            self._limit_pages(self._faults.disk_full())
        self._db.execute("BEGIN IMMEDIATE")
        self._changes_at_begin = self._db.total_changes
        self.changes.own_write_began()

    def _limit_pages(self, full: bool) -> None:
        """The fault seam's full disk: the file may not grow by a page while it lasts."""
        if full == self._page_limited:
            return
        if full:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {int(pages)}")
        else:
            self._db.execute(f"PRAGMA max_page_count = {_NO_PAGE_LIMIT}")
        self._page_limited = full

    # -- sessions -------------------------------------------------------------

    def load(self, session_id: str) -> StoredSession | None:
        with _translated(self.path, f"loading session {session_id}"):
            row = self._db.execute(
                "SELECT client_id, version, state, ended_at FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        if row is None:
            return None
        return StoredSession(session_id, row[0], row[1], row[2], row[3] is not None)

    def owner_of(self, session_id: str) -> str | None:
        with _translated(self.path, f"looking up session {session_id}"):
            row = self._db.execute("SELECT client_id FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def name(self) -> str:
        return self.path

    def write(self, writes: Sequence[SnapshotWrite], now: float) -> list[WriteOutcome]:
        """Commit ``writes`` in one transaction; per write, COMMITTED or CONFLICT.

        A conflicting write changes nothing; the others commit. Any other
        failure rolls the whole transaction back and raises StoreError. One
        owner writes a SQLite file (epoch 0), so no write is ever FENCED.
        """
        db = self._db
        with _translated(self.path, f"committing {len(writes)} sessions"), self._transaction():
            applied = self._write_all(writes, now)
            if applied is None:  # a conflict somewhere: redo row by row to find it
                db.execute("ROLLBACK")
                self.changes.own_write_ended()
                self._begin()
                applied = [self._write_one(write, now) for write in writes]
        return [_COMMITTED if ok else _CONFLICT for ok in applied]

    # last_activity has no index on purpose: every write changes it, and an
    # index on it doubled the cost of a group commit. TTL expiry scans the
    # table in primary-key chunks instead (see expire). For the same reason
    # the common UPDATE leaves ended_at alone; ending is its own statement.
    _INSERT = "INSERT OR IGNORE INTO sessions VALUES (?, ?, 1, ?, ?, ?, ?)"
    _UPDATE = (
        "UPDATE sessions SET version = version + 1, state = ?, last_activity = ? "
        "WHERE id = ? AND version = ? AND ended_at IS NULL"
    )
    _END = (
        "UPDATE sessions SET version = version + 1, state = ?, last_activity = ?, ended_at = ? "
        "WHERE id = ? AND version = ? AND ended_at IS NULL"
    )

    def _write_all(self, writes: Sequence[SnapshotWrite], now: float) -> list[bool] | None:
        """The fast path: two executemany calls; None if any row did not apply."""
        db = self._db
        before = db.total_changes
        inserts = [
            (w.id, w.client_id, w.state, w.created_at, w.last_activity, now if w.ended else None)
            for w in writes
            if w.base_version == 0
        ]
        updates = [
            (w.state, w.last_activity, w.id, w.base_version) for w in writes if w.base_version and not w.ended
        ]
        ends = [
            (w.state, w.last_activity, now, w.id, w.base_version)
            for w in writes
            if w.base_version and w.ended
        ]
        if inserts:
            db.executemany(self._INSERT, inserts)
        if updates:
            self._update_all(updates)
        if ends:
            db.executemany(self._END, ends)
        if db.total_changes - before != len(writes):
            return None
        return [True] * len(writes)

    def _update_all(self, updates: list[tuple[bytes, float, str, int]]) -> None:
        """Apply ``updates`` (state, last_activity, id, base version) in as few statements as may be.

        ``executemany`` runs one step per row, and sqlite3 lets go of the GIL
        around each and takes it back after: behind a busy event loop each
        taking waits for the loop's thread to yield it (up to the switch
        interval). Measured with a thread keeping the GIL busy and the
        server's 1 ms interval, a commit of 32 updated sessions took 8-10 ms
        one row at a time and 5 ms as one statement (0.3 ms either way with
        the GIL free).
        """
        db = self._db
        if not _UPDATE_FROM:
            db.executemany(self._UPDATE, updates)
            return
        for start in range(0, len(updates), _UPDATES_PER_STATEMENT):
            chunk = updates[start : start + _UPDATES_PER_STATEMENT]
            db.execute(_update_from(len(chunk)), [value for update in chunk for value in update])

    def _write_one(self, write: SnapshotWrite, now: float) -> bool:
        ended_at = now if write.ended else None
        if write.base_version == 0:
            row = (write.id, write.client_id, write.state, write.created_at, write.last_activity, ended_at)
            return self._db.execute(self._INSERT, row).rowcount == 1
        if write.ended:
            ending = (write.state, write.last_activity, now, write.id, write.base_version)
            return self._db.execute(self._END, ending).rowcount == 1
        update = (write.state, write.last_activity, write.id, write.base_version)
        return self._db.execute(self._UPDATE, update).rowcount == 1

    def list_client(
        self, client_id: str, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[str, float, float]]:
        """(id, created_at, last_activity) of up to ``limit`` of the client's live sessions
        after the key ``after`` = (created_at, id), in key order."""
        with _translated(self.path, "listing sessions"):
            if after is None:
                return self._db.execute(
                    "SELECT id, created_at, last_activity FROM sessions "
                    "WHERE client_id = ? AND ended_at IS NULL ORDER BY created_at, id LIMIT ?",
                    (client_id, limit),
                ).fetchall()
            created_at, session_id = after
            return self._db.execute(
                "SELECT id, created_at, last_activity FROM sessions "
                "WHERE client_id = ? AND ended_at IS NULL AND created_at >= ? "
                "AND (created_at > ? OR id > ?) ORDER BY created_at, id LIMIT ?",
                (client_id, created_at, created_at, session_id, limit),
            ).fetchall()

    def expire(
        self, after_id: str, limit: int, idle_before: float, now: float, resident: frozenset[str]
    ) -> ExpiryStep:
        """End live sessions last active before ``idle_before``, scanning one chunk.

        Scans at most ``limit`` rows with ids above ``after_id``; returns how
        many it ended, how many live ones it left, and the id to continue from
        ("" once the table is done): a full pass also counts the live sessions. Resident sessions are skipped: one may be in use with only reads
        since its last write, and the supervisor judges those by its own clock.
        Small chunks keep each call short, so commits queued behind it wait
        milliseconds, not the length of a full scan.
        """
        with _translated(self.path, "expiring idle sessions"):
            rows = self._db.execute(
                "SELECT id, last_activity, ended_at FROM sessions WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
            stale = [
                (now, session_id, idle_before)
                for session_id, last_activity, ended_at in rows
                if ended_at is None and last_activity < idle_before and session_id not in resident
            ]
            ended = 0
            if stale:
                with self._transaction():
                    # Idleness is checked again: another process sharing the
                    # file may have used the session since the scan read it.
                    ended = self._db.executemany(
                        "UPDATE sessions SET ended_at = ?, version = version + 1 "
                        "WHERE id = ? AND ended_at IS NULL AND last_activity < ?",
                        stale,
                    ).rowcount
        next_id = rows[-1][0] if len(rows) == limit else ""
        live = sum(1 for _, _, ended_at in rows if ended_at is None) - ended
        return ExpiryStep(ended, live, next_id)

    def end(self, session_id: str, now: float) -> None:
        """Mark one session ended, whatever its snapshot holds."""
        with _translated(self.path, f"ending session {session_id}"), self._transaction():
            self._db.execute(
                "UPDATE sessions SET ended_at = ?, version = version + 1 WHERE id = ? AND ended_at IS NULL",
                (now, session_id),
            )

    def touch(self, last_uses: Sequence[tuple[str, float]]) -> None:
        """Move last_activity forward for sessions that were read since their last write."""
        with _translated(self.path, "recording session activity"), self._transaction():
            # Only rows it moves: a row set to what it holds counts as changed
            # but writes nothing (see _transaction).
            self._db.executemany(
                "UPDATE sessions SET last_activity = ? WHERE id = ? AND last_activity < ?",
                [(at, session_id, at) for session_id, at in last_uses],
            )

    def size_bytes(self) -> int:
        with _translated(self.path, "measuring the database"):
            page_count = self._db.execute("PRAGMA page_count").fetchone()[0]
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int(page_count * page_size)

    def purge(self, ended_before: float) -> int:
        with _translated(self.path, "purging ended sessions"), self._transaction():
            return self._db.execute("DELETE FROM sessions WHERE ended_at < ?", (ended_before,)).rowcount

    def maintain(self) -> None:
        """Housekeeping of the file itself: the WAL checkpoint."""
        self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it, so the file stops growing.

        Runs on every housekeeping tick, so a deleted database is noticed
        (and logged) even while nothing is written.
        """
        self.check_file()
        with _translated(self.path, "checkpointing the WAL"):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.changes.after_own_commit()

    def moved(self, versions: Mapping[str, int]) -> list[str]:
        """Sessions whose stored version is no longer the one given (another process wrote them)."""
        with _translated(self.path, "looking for changes by other processes"):
            return self.changes.moved(versions)

    def release(self, leases: Sequence[tuple[str, int]]) -> None:
        """Processes sharing a file hold no leases (optimistic versions decide): nothing to give up."""

    def close(self) -> None:
        """Close the connection.

        Error handling:
            StoreUnavailable: the file was deleted or replaced while open.
                Everything acknowledged before that is in it, every write
                since was refused, and the caller should hear it rather than
                "everything acknowledged is stored".
        """
        self.changes.close()
        try:
            self.check_file()
        finally:
            with _translated(self.path, "closing the database"):
                self._db.close()


@functools.lru_cache(maxsize=64)
def _update_from(rows: int) -> str:
    """One UPDATE of ``rows`` sessions, each matched on its id and base version (as ``_UPDATE``)."""
    values = ",".join(["(?,?,?,?)"] * rows)
    return (
        "UPDATE sessions AS s SET version = s.version + 1, state = v.column1, last_activity = v.column2 "
        f"FROM (VALUES {values}) AS v WHERE s.id = v.column3 AND s.version = v.column4 AND s.ended_at IS NULL"
    )
