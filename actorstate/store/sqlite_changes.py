"""Noticing commits by other processes on one SQLite file, cheaply enough to ask on every call.

Two processes may serve one database file. Versions keep their writes from
overwriting each other, but a session resident in this process would go on
answering from its copy after the other process changed it: a stale read.
So before a call, the runtime asks :meth:`ChangeWatch.maybe_changed`, which
reads one counter from the WAL index (the ``-shm`` file SQLite shares
between connections): SQLite bumps it on every committed transaction. While
it still holds the value seen after this process's own last commit, nobody
else has committed: the call goes on at the cost of one ``pread`` of four
bytes. (Not a memory map: SQLite truncates the file when it rebuilds the
index, and a mapped page past the end would kill the process with SIGBUS.) When it moved, :meth:`ChangeWatch.moved` (on
the database thread) asks SQLite itself: ``PRAGMA data_version`` changes
only when *another* connection committed; if it did, the stored versions of
the resident sessions are compared and the ones that moved are reloaded
before they answer.

The counter is a hint read without a lock: a torn or stale read can only
cause a needless check, never skip a needed one, because the order below
(counter first, then ``data_version``) makes any commit by another process
show up in one or the other. Where the WAL index cannot be opened, there is
no hint and no freshness check (reads may then be stale until the session
reloads; the README says so).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ChangeWatch"]

# WalIndexHdr: u32 iVersion, u32 unused, u32 iChange (bumped by each commit), ...
_CHANGE_COUNTER_AT = 8
_CHANGE_COUNTER_SIZE = 4
# Session ids per version query (under SQLite's default limit of host parameters).
_IDS_PER_QUERY = 500


class ChangeWatch:
    """The change counter of one SQLite file's WAL index, and what moved since it was last seen."""

    def __init__(self, path: str, db: sqlite3.Connection) -> None:
        self._db = db
        self._fd: int | None = None
        if hasattr(os, "pread"):  # not on Windows: there, no hint
            try:
                self._fd = os.open(path + "-shm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                self._fd = None
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
        return self._fd is not None

    def _counter(self) -> bytes:
        """The counter's bytes as they are now (short or empty while SQLite rebuilds the index)."""
        if self._fd is None:
            return b""
        try:
            return os.pread(self._fd, _CHANGE_COUNTER_SIZE, _CHANGE_COUNTER_AT)
        except OSError:
            return b""

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
        if self._fd is None:
            return False
        counter = self._counter()
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
        """The write lock was let go without a commit (rolled back)."""
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
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
