"""`actorstate serve --db postgresql://...`: the server keeps its sessions in PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import psycopg

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


def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorstate", *arguments],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _owners(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT id, owner_node, owner_epoch, lease_expires, version FROM actorstate_sessions ORDER BY id"
        ).fetchall()


def test_sessions_and_doctor_read_a_postgres_database_without_changing_it(postgres_url: str) -> None:
    """sessions list/show/export and doctor read a PostgreSQL database as they read a file
    (the URL's password hidden in what they print), claiming and renewing nothing; sessions
    purge deletes ended sessions there."""
    url = postgres_url.replace("actorstate@", "actorstate:hunter2@")
    server = RawClient("--db", url)
    try:
        server.initialize()
        live = server.call("create_session", clientId="alice")["structuredContent"]["sessionId"]
        server.call("increment_counter", sessionId=live)
        ended = server.call("create_session", clientId="bob")["structuredContent"]["sessionId"]
        server.call("end_session", sessionId=ended)
        before = _owners(postgres_url)

        listed = _cli("sessions", "list", "--json", "--db", url)
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["sessionId"] for line in listed.stdout.splitlines()] == [live]
        shown = _cli("sessions", "show", live, "--db", url)
        assert json.loads(shown.stdout)["metadata"] == {"counter": 1}
        missing = _cli("sessions", "show", "00000000-0000-4000-8000-000000000000", "--db", url)
        assert missing.returncode == 1
        assert "hunter2" not in missing.stderr
        exported = _cli("sessions", "export", "--ended", "--db", url)
        assert sorted(json.loads(line)["sessionId"] for line in exported.stdout.splitlines()) == sorted(
            [live, ended]
        )
        doctor = _cli("doctor", "--json", "--db", url)
        assert doctor.returncode == 0, doctor.stdout
        report = json.loads(doctor.stdout)
        assert (report["liveSessions"], report["endedSessions"], report["problems"]) == (1, 1, [])
        assert "hunter2" not in report["database"]
        assert _owners(postgres_url) == before
    finally:
        server.close()
    purged = _cli("sessions", "purge", "--older-than-days", "0", "--json", "--db", url)
    assert json.loads(purged.stdout) == {"purged": 1}
    assert [row[0] for row in _owners(postgres_url)] == [live]


def test_looking_at_a_database_that_is_not_actorstates_is_refused(postgres_url: str) -> None:
    """sessions list and doctor on a PostgreSQL database without actorstate's tables: sessions
    is refused in one line; doctor reports the missing schema as a problem."""
    listed = _cli("sessions", "list", "--db", postgres_url)
    assert listed.returncode == 2
    assert "holds no actorstate sessions" in listed.stderr
    doctor = _cli("doctor", "--db", postgres_url)
    assert doctor.returncode == 1
    assert "no actorstate schema" in doctor.stdout


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
