"""The fault seam of a real server process: store I/O errors, slow commits, a full disk and
a squeezed memory, on demand.

The chaos runner attacks a running ``actorstate serve`` through it. When the
server's environment names a control file (``ACTORSTATE_FAULT_CONTROL``, a
FIFO the runner made; nothing else sets it), a daemon thread reads commands
from it, one per line:

- ``fail SECONDS``: every commit for that long fails as an I/O error would
  (raised inside the transaction, so it is rolled back and mapped like any
  SQLite error);
- ``slow SECONDS DELAY``: every commit for that long holds its transaction
  ``DELAY`` seconds before COMMIT (the write lock held, as a slow disk would);
- ``full SECONDS``: for that long the database may not grow by a page
  (SQLite's ``max_page_count`` set to its size), so writes fail with
  SQLite's own "database or disk is full": the disk-full fault where no small
  file system can be mounted;
- ``squeeze SECONDS MAX_RESIDENT``: for that long the server keeps at most
  ``MAX_RESIDENT`` sessions in memory (read by the runtime's residency, so
  sessions are evicted and reloaded in storms).

Without the variable there is no seam and no thread.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time

__all__ = ["CONTROL_VARIABLE", "FaultSeam", "process_seam"]

CONTROL_VARIABLE = "ACTORSTATE_FAULT_CONTROL"

logger = logging.getLogger("actorstate.faults")


class FaultSeam:
    """What the commands asked for, read where it matters; times are ``time.monotonic``."""

    def __init__(self) -> None:
        self._fail_until = 0.0
        self._slow_until = 0.0
        self._slow_by = 0.0
        self._squeeze_until = 0.0
        self._squeeze_to = 0
        self._full_until = 0.0

    def command(self, line: str) -> None:
        """Apply one command line (see the module docstring); ValueError for a bad one."""
        words = line.split()
        now = time.monotonic()
        try:
            match words:
                case ["fail", seconds]:
                    self._fail_until = now + float(seconds)
                    return
                case ["slow", seconds, delay]:
                    self._slow_by, self._slow_until = float(delay), now + float(seconds)
                    return
                case ["full", seconds]:
                    self._full_until = now + float(seconds)
                    return
                case ["squeeze", seconds, max_resident]:
                    self._squeeze_to, self._squeeze_until = int(max_resident), now + float(seconds)
                    return
        except ValueError as error:
            raise ValueError(f"bad fault command {line.strip()!r}: {error}") from None
        raise ValueError(
            f"bad fault command {line.strip()!r}: use fail, slow, full or squeeze (see actorstate.fault_seam)"
        )

    def commit_fails(self) -> bool:
        """Called in a transaction before COMMIT: waits out a slow commit; True if it must fail."""
        now = time.monotonic()
        if now < self._slow_until:
            time.sleep(self._slow_by)
        return now < self._fail_until

    def disk_full(self) -> bool:
        """Whether the database may not grow now (checked as each transaction begins)."""
        return time.monotonic() < self._full_until

    def max_resident(self) -> int | None:
        """The squeezed cap on resident sessions, while a squeeze lasts."""
        return self._squeeze_to if time.monotonic() < self._squeeze_until else None


_seam: FaultSeam | None = None
_seam_lock = threading.Lock()


def process_seam() -> FaultSeam | None:
    """This process's seam, its reader thread started on first use; None without the variable."""
    global _seam
    path = os.environ.get(CONTROL_VARIABLE)
    if not path:
        return None
    with _seam_lock:
        if _seam is None:
            _seam = FaultSeam()
            threading.Thread(
                target=_read_commands, args=(path, _seam), name="actorstate-faults", daemon=True
            ).start()
            logger.warning("the fault seam is on, controlled through %s: for the chaos runner only", path)
        return _seam


def _read_commands(path: str, seam: FaultSeam) -> None:
    try:
        is_fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError as error:
        logger.error("fault control %s: %s", path, error)
        return
    if not is_fifo:  # a regular file would be read again and again, its commands applied forever
        logger.error("fault control %s is not a FIFO: the fault seam takes no commands", path)
        return
    while True:  # a FIFO reaches end of file whenever its writer closes it: open it again
        try:
            with open(path, encoding="utf-8") as control:
                for line in control:
                    if line.strip():
                        try:
                            seam.command(line)
                        except ValueError as error:
                            logger.error("%s", error)
        except OSError as error:
            logger.error("fault control %s: %s", path, error)
            return
