"""``actorstate doctor``: counts and problems, without touching the file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio

import actorstate


async def _fill(path: str) -> list[str]:
    async with actorstate.open_state(path) as state:
        sessions = [await state.create_session() for _ in range(3)]
        await sessions[0].set_preference("k", "v")
        await sessions[2].end()
        return [s.id for s in sessions]


def _doctor(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorstate", "doctor", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_doctor_counts_a_healthy_database(tmp_path: Path) -> None:
    path = str(tmp_path / "ok.db")
    anyio.run(_fill, path)
    done = _doctor(path)
    assert done.returncode == 0, done.stderr
    assert "live sessions: 2" in done.stdout
    assert "ended sessions: 1" in done.stdout
    assert "problems: none" in done.stdout


def test_doctor_names_an_undecodable_snapshot(tmp_path: Path) -> None:
    path = str(tmp_path / "bad.db")
    ids = anyio.run(_fill, path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE sessions SET state = x'09ff' WHERE id = ?", (ids[1],))
    before = Path(path).read_bytes()
    done = _doctor(path)
    assert done.returncode == 1
    assert f"session {ids[1]}: snapshot format 9" in done.stdout
    assert Path(path).read_bytes() == before


def test_doctor_refuses_what_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    done = _doctor(str(path))
    assert done.returncode == 2
    assert "is not an SQLite database" in done.stderr
    missing = _doctor(str(tmp_path / "missing.db"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert not (tmp_path / "missing.db").exists()
