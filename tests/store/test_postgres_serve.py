"""`actorstate serve --db postgresql://...`: the server keeps its sessions in PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

from tests.transport.raw_client import RawClient

if TYPE_CHECKING:
    from pathlib import Path


def test_serve_keeps_sessions_in_postgres_across_restarts(postgres_url: str) -> None:
    """A session served by one server process over stdio is there, counter and all, for the next
    process on the same URL (the first gave up its leases when it stopped); the log names the
    database without its password."""
    url = postgres_url.replace("actorstate@", "actorstate:hunter2@")
    first = RawClient("--db", url, "--log-level", "INFO")
    try:
        first.initialize()
        session_id = first.call("create_session")["structuredContent"]["sessionId"]
        assert first.call("increment_counter", sessionId=session_id)["content"][0]["text"] == "Counter: 1"
    finally:
        code, stderr = first.close()
    assert code == 0
    assert "actorstate:***@" in stderr
    assert "hunter2" not in stderr

    second = RawClient("--db", url)
    try:
        second.initialize()
        answer = second.call("increment_counter", sessionId=session_id)
        assert answer["content"][0]["text"] == "Counter: 2"
    finally:
        code, _ = second.close()
    assert code == 0


def test_sessions_and_doctor_refuse_a_postgres_url(postgres_url: str) -> None:
    """The commands that read SQLite files refuse a PostgreSQL URL in one line, saying what to use."""
    for command in (["sessions", "list"], ["doctor"]):
        done = subprocess.run(
            [sys.executable, "-m", "actorstate", *command, "--db", postgres_url],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2
        assert "reads SQLite files" in done.stderr
        assert "psql" in done.stderr


def test_node_id_is_checked(postgres_url: str, tmp_path: Path) -> None:
    """--node-id is refused in one line without a PostgreSQL URL, and when it is not a plain name."""
    cases = [
        (["--db", str(tmp_path / "state.db"), "--node-id", "n1"], "give --db postgresql://"),
        (["--db", postgres_url, "--node-id", " n1"], "printable characters"),
        (["--db", postgres_url, "--node-id", "x" * 129], "1 to 128"),
    ]
    for arguments, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "actorstate", "serve", *arguments],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
