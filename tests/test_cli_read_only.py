"""``actorstate sessions`` and ``doctor`` only look: they change nothing in the database
or beside it, and they work where nothing can be written (read-only media)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import pytest

import actorstate
from actorstate.store.sqlite import SCHEMA_VERSION

if TYPE_CHECKING:
    from pathlib import Path


async def _fill(path: str) -> str:
    async with actorstate.open_state(path) as state:
        alice = await state.create_session("alice")
        await alice.add_context("topic", "billing")
        await state.create_session("bob")
        return alice.id


def _contents(directory: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in sorted(directory.iterdir())}


def _actorstate(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "actorstate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _user_namespaces_work() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, check=False, timeout=30)
    return probe.returncode == 0


@pytest.fixture
def read_only_media(tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    """A directory, and a command prefix under which it is read-only media.

    A read-only bind mount in a new user and mount namespace needs no
    privileges: every write under it fails with EROFS, as on a read-only
    disk, root or not. Where user namespaces are off, a non-root user gets
    file modes that refuse writes instead; root would ignore those, so
    there the test is skipped.
    """
    directory = tmp_path / "media"
    directory.mkdir()
    if _user_namespaces_work():
        mount = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        return directory, ("unshare", "-Urm", "sh", "-c", mount, "sh", str(directory))
    if os.geteuid() == 0:
        pytest.skip("needs user namespaces (for a read-only mount) or a non-root user (for file modes)")
    return directory, ()


def _make_read_only(directory: Path, prefix: tuple[str, ...]) -> None:
    if not prefix:  # file modes instead of a mount, see read_only_media
        for entry in directory.iterdir():
            entry.chmod(0o444)
        directory.chmod(0o555)


def test_looking_at_a_cleanly_closed_database_changes_nothing(tmp_path: Path) -> None:
    """list, show, export and doctor leave the directory listing and every byte as they were."""
    path = tmp_path / "state.db"
    alice = anyio.run(_fill, str(path))
    before = _contents(tmp_path)
    assert list(before) == ["state.db"]  # closed cleanly: no -wal, no -shm
    for args in (
        ("sessions", "list", "--db", str(path)),
        ("sessions", "list", "--db", str(path), "--ended", "--client", "alice"),
        ("sessions", "show", alice, "--db", str(path)),
        ("sessions", "export", "--db", str(path)),
        ("doctor", str(path)),
    ):
        done = _actorstate(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert _contents(tmp_path) == before, args


def test_doctor_and_sessions_work_on_read_only_media(read_only_media: tuple[Path, tuple[str, ...]]) -> None:
    """A valid database on read-only media is read in full, not reported as schema 0 and unreadable."""
    directory, prefix = read_only_media
    path = directory / "state.db"
    alice = anyio.run(_fill, str(path))
    _make_read_only(directory, prefix)
    doctor = _actorstate("doctor", str(path), prefix=prefix)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"schema version: {SCHEMA_VERSION}" in doctor.stdout
    assert "live sessions: 2" in doctor.stdout
    assert "problems: none" in doctor.stdout
    listed = _actorstate("sessions", "list", "--db", str(path), prefix=prefix)
    assert listed.returncode == 0, listed.stderr
    assert alice in listed.stdout
    shown = _actorstate("sessions", "show", alice, "--db", str(path), prefix=prefix)
    assert '"topic": "billing"' in shown.stdout


def test_doctor_on_read_only_media_says_what_a_leftover_wal_hides(
    read_only_media: tuple[Path, tuple[str, ...]],
) -> None:
    """A crash's -wal without its -shm cannot be read on read-only media: doctor reads the file and says so."""
    directory, prefix = read_only_media
    path = directory / "state.db"
    child = (
        "import os, sys, anyio, actorstate\n"
        "async def main():\n"
        "    async with actorstate.open_state(sys.argv[1]) as state:\n"
        "        await state.create_session('alice')\n"
        "        os.kill(os.getpid(), 9)\n"
        "anyio.run(main)\n"
    )
    subprocess.run([sys.executable, "-c", child, str(path)], timeout=60, check=False)
    assert (directory / "state.db-wal").exists()
    (directory / "state.db-shm").unlink()
    _make_read_only(directory, prefix)
    doctor = _actorstate("doctor", str(path), prefix=prefix)
    assert doctor.returncode in (0, 1), doctor.stderr
    assert f"note: changes still in {path}-wal are not shown" in doctor.stdout
