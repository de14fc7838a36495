"""Noticing commits by other processes on one SQLite file, cheaply enough to ask on every call.

Two processes may serve one database file. Versions keep their writes from
overwriting each other, but a session resident in this process would go on
answering from its copy after the other process changed it: a stale read.
So before a call, the runtime asks :meth:`ChangeWatch.maybe_changed`, which
reads one counter from the WAL index (the ``-shm`` file SQLite shares
between connections): SQLite bumps it on every committed transaction. While
it still holds the value seen after this process's own last commit, nobody
else has committed: the call goes on at the cost of reading four bytes of
a memory mapping of the file's first page. (A ``pread`` would cost a
system call that lets go of the interpreter lock, and under load the
database thread takes it: about 14 µs a call instead of 0.4.) When it moved, :meth:`ChangeWatch.moved` (on
the database thread) asks SQLite itself: ``PRAGMA data_version`` changes
only when *another* connection committed; if it did, the stored versions of
the resident sessions are compared and the ones that moved are reloaded
before they answer.

The mapping is safe to read while this process's connection is open:
SQLite truncates the file only when a process opens it while no other
holds its "DMS" lock, and an open connection holds that lock. Closing
*any* descriptor of a file drops every POSIX lock the process holds on it,
SQLite's own locks on the WAL index included, so the descriptors opened here
are never closed: one per WAL index file for the life of the process
(:func:`_wal_index`), shared by every watch on that file.

The counter is a hint read without a lock: a torn or stale read can only
cause a needless check, never skip a needed one, because the order below
(counter first, then ``data_version``) makes any commit by another process
show up in one or the other. Where the WAL index cannot be opened, there is
no hint and no freshness check (reads may then be stale until the session
reloads; the README says so).
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ChangeWatch"]

# WalIndexHdr: u32 iVersion, u32 unused, u32 iChange (bumped by each commit), ...
_CHANGE_COUNTER_AT = 8
_CHANGE_COUNTER_SIZE = 4
# Session ids per version query (under SQLite's default limit of host parameters).
_IDS_PER_QUERY = 500
# The header lives in the first page; SQLite sizes the file in 32 KB steps.
_MAPPED_BYTES = 4096


class _WalIndex:
    """One WAL index file, opened read-only: its change counter, read from a mapping when it can be."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map: mmap.mmap | None = None
        if os.fstat(fd).st_size >= _MAPPED_BYTES:
            try:
                self._map = mmap.mmap(fd, _MAPPED_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
            except (OSError, ValueError, AttributeError):  # AttributeError: no MAP_SHARED (Windows)
                self._map = None

    def unlinked(self) -> bool:
        """Whether the file was deleted (SQLite deletes it when the last connection to it closes)."""
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        os.close(self.fd)

    def counter(self) -> bytes:
        if self._map is not None:
            return self._map[_CHANGE_COUNTER_AT : _CHANGE_COUNTER_AT + _CHANGE_COUNTER_SIZE]
        try:
            return os.pread(self.fd, _CHANGE_COUNTER_SIZE, _CHANGE_COUNTER_AT)
        except OSError:
            return b""


# Closed only once their file is deleted, so SQLite's locks on a live file
# are never dropped (see the module docstring). A deleted WAL index has no
# connection left using it: SQLite deletes it only when the last one closes.
_INDEXES: dict[tuple[int, int], _WalIndex] = {}
_INDEXES_LOCK = threading.Lock()


def _wal_index(path: str) -> _WalIndex | None:
    """The process's reader of the WAL index at ``path``, opened on first use; None if it cannot be."""
    if not hasattr(os, "pread"):  # not on Windows: there, no hint
        return None
    with _INDEXES_LOCK:
        for key, held in list(_INDEXES.items()):
            if held.unlinked():
                held.close()
                del _INDEXES[key]
        try:
            identity = os.stat(path)
        except OSError:
            return None
        key = (identity.st_dev, identity.st_ino)
        index = _INDEXES.get(key)
        if index is None:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return None
            index = _INDEXES[key] = _WalIndex(fd)
        return index


class ChangeWatch:
    """The change counter of one SQLite file's WAL index, and what moved since it was last seen."""

    def __init__(self, path: str, db: sqlite3.Connection) -> None:
        self._db = db
        self._index: _WalIndex | None = _wal_index(path + "-shm")
        self._seen = self._counter()
        # While several processes open a new file at once, SQLite may answer
        # this read with SQLITE_PROTOCOL; then the version is unknown, which
        # counts as changed and costs one needless check at most.
        self._data_version: int | None
        try:
            self._data_version = self._read_data_version()
        except sqlite3.Error:
            self._data_version = None
        self._others_committed = False
        # While this connection holds the write lock: the counter its commit
        # will leave (nobody else can commit meanwhile), so the calls that
        # read it before after_own_commit runs do not take it for news.
        self._own_next: bytes | None = None
        self.checks = 0  # how many times another process's commit was looked for

    @property
    def available(self) -> bool:
        return self._index is not None

    def _counter(self) -> bytes:
        """The counter's bytes as they are now (short or empty while SQLite rebuilds the index)."""
        index = self._index
        return b"" if index is None else index.counter()

    def _read_data_version(self) -> int:
        version: int = self._db.execute("PRAGMA data_version").fetchone()[0]
        return version

    # -- from the event loop ---------------------------------------------------------

    def maybe_changed(self) -> bool:
        """True if some connection may have committed since this process last looked (cheap).

        The counter this process's own commit in flight will leave is not
        news: without this, every call between that commit and
        :meth:`after_own_commit` (the database thread waits for the
        interpreter lock meanwhile) would look for changes that are not there.
        """
        index = self._index
        if index is None:
            return False
        counter = index.counter()
        return counter != self._seen and counter != self._own_next

    # -- on the database thread ------------------------------------------------------

    def own_write_began(self) -> None:
        """This connection holds the write lock now: its commit will move the counter by one.

        Only if nobody committed since the counter was last seen: else that
        commit is news, and the counter it left must not be mistaken for ours.
        """
        counter = self._counter()
        if counter == self._seen and len(counter) == _CHANGE_COUNTER_SIZE and not self._others_committed:
            value = (int.from_bytes(counter, sys.byteorder) + 1) & 0xFFFFFFFF
            self._own_next = value.to_bytes(_CHANGE_COUNTER_SIZE, sys.byteorder)
        else:
            self._own_next = None

    def own_write_ended(self) -> None:
        """No commit of this connection will move the counter: the write lock was let go without
        one (rolled back), or the transaction changed no row (SQLite then writes nothing).

        Called before that commit: expecting a move that never comes would take
        the next commit by another process, until :meth:`after_own_commit`, for ours.
        """
        self._own_next = None

    def after_own_commit(self) -> None:
        """This connection committed: its commit moved the counter, which is not news.

        The counter is read before ``data_version``: a commit by another
        process in between changes ``data_version``, and one after both
        leaves the counter ahead of what is seen. Either way it is noticed.
        """
        counter = self._counter()
        version = self._read_data_version()
        self._own_next = None
        if version != self._data_version:
            self._data_version = version
            self._others_committed = True  # leave the counter unseen: the next call checks
        elif not self._others_committed:
            self._seen = counter

    def moved(self, versions: Mapping[str, int]) -> list[str]:
        """Of the sessions given with the version this process holds, those whose stored
        version is another now (or whose row is gone). Empty unless another connection committed."""
        counter = self._counter()
        version = self._read_data_version()
        others = self._others_committed or version != self._data_version
        self._data_version = version
        self._others_committed = False
        self._seen = counter
        if not others or not versions:
            return []
        self.checks += 1
        ids = list(versions)
        stored: dict[str, int] = {}
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            stored.update(self._db.execute(f"SELECT id, version FROM sessions WHERE id IN ({marks})", chunk))
        return [session_id for session_id, held in versions.items() if stored.get(session_id) != held]

    def close(self) -> None:
        """Stop watching (the file's descriptor stays open: see the module docstring)."""
        self._index = None
