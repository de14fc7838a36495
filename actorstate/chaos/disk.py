"""A small file system of the run's own, so the ``full`` fault fills a real disk.

The database lives on a tmpfs mounted for the run; the fault writes a filler
file until the file system answers ENOSPC, holds it full, then deletes the
filler. SQLite sees the real error (``SQLITE_FULL``) on the real write path.
Mounting needs the privilege to mount (root in most containers); without it
the run is refused before it starts, saying why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SmallFileSystem"]

# Room for the database and its WAL over a long run, and little enough to fill in a moment.
SIZE_MB = 64
_CHUNK = 1024 * 1024


class SmallFileSystem:
    """A tmpfs of ``SIZE_MB`` at ``path``: :meth:`mount` it, :meth:`fill` and :meth:`drain` it,
    :meth:`unmount` it (keeping copies of its files in ``keep``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"
        self.mounted = False

    def mount(self) -> None:
        """Mount the tmpfs.

        Error handling:
            Raises ``ValueError`` saying why it cannot be mounted.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        command = ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(self.path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ValueError(self._refusal(str(error))) from None
        if done.returncode != 0:
            raise ValueError(self._refusal(done.stderr.strip() or f"mount exited with {done.returncode}"))
        self.mounted = True

    def _refusal(self, reason: str) -> str:
        return (
            f"the disk-full fault needs a small file system of its own, and mounting a tmpfs at "
            f"{self.path} failed ({reason}); run where mounting is allowed (as root), or leave out 'full'"
        )

    def fill(self) -> int:
        """Write a filler file until the file system is full; the bytes written."""
        written = 0
        with open(self._filler, "wb", buffering=0) as filler:
            for size in (_CHUNK, 4096, 1):  # large pieces first, then the last corners
                chunk = b"\0" * size
                while True:
                    try:
                        count = filler.write(chunk)
                    except OSError as error:
                        if error.errno != errno.ENOSPC:
                            raise
                        break
                    if not count:
                        break
                    written += count
        return written

    def drain(self) -> None:
        """Delete the filler: the file system has room again."""
        with contextlib.suppress(FileNotFoundError):
            self._filler.unlink()

    def unmount(self, keep: Path) -> None:
        """Copy the files on it (the database, its WAL) into ``keep``, then unmount it."""
        if not self.mounted:
            return
        self.drain()
        for entry in self.path.iterdir():
            if entry.is_file():
                with contextlib.suppress(OSError):
                    shutil.copy2(entry, keep / entry.name)
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30, check=False)
        self.mounted = False
        with contextlib.suppress(OSError):
            os.rmdir(self.path)
