"""The ``actorstate`` command, run as a user would run it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import msgpack
import pytest

import actorstate
from tests.transport.raw_client import RawClient

if TYPE_CHECKING:
    from pathlib import Path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorstate", *args],
        input="",  # serve reads requests from stdin: an empty one ends it
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


async def _fill(path: str) -> list[str]:
    async with actorstate.open_state(path) as state:
        alice = await state.create_session("alice")
        await alice.add_context("topic", "billing")
        bob = await state.create_session("bob")
        gone = await state.create_session("alice")
        await gone.end()
        return [alice.id, bob.id, gone.id]


def test_sessions_list_show_export_purge(tmp_path: Path) -> None:
    path = str(tmp_path / "look.db")
    alice, bob, gone = anyio.run(_fill, path)

    listed = _run("sessions", "list", "--db", path)
    assert listed.returncode == 0, listed.stderr
    assert alice in listed.stdout
    assert bob in listed.stdout
    assert gone not in listed.stdout
    only_bob = _run("sessions", "list", "--db", path, "--client", "bob")
    assert bob in only_bob.stdout
    assert alice not in only_bob.stdout
    with_ended = _run("sessions", "list", "--db", path, "--ended")
    assert gone in with_ended.stdout

    shown = _run("sessions", "show", alice, "--db", path)
    detail = json.loads(shown.stdout)
    assert detail["metadata"] == {"topic": "billing"}
    assert detail["events"][0]["payload"] == {"key": "topic", "value": "billing"}
    assert _run("sessions", "show", "00000000-0000-4000-8000-000000000000", "--db", path).returncode == 1

    exported = [json.loads(line) for line in _run("sessions", "export", "--db", path).stdout.splitlines()]
    assert sorted(row["sessionId"] for row in exported) == sorted([alice, bob])

    purged = _run("sessions", "purge", "--db", path)
    assert purged.stdout.strip() == "purged 1 ended sessions"
    assert gone not in _run("sessions", "list", "--db", path, "--ended").stdout


def test_missing_database_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    done = _run("sessions", "list", "--db", str(missing))
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert not missing.exists()


def test_serve_reads_its_settings_from_the_environment(tmp_path: Path) -> None:
    """ACTORSTATE_* variables configure serve; the default database lives in the data directory."""
    data_home = tmp_path / "data"
    client = RawClient(env={"XDG_DATA_HOME": str(data_home), "ACTORSTATE_MAX_LINE_BYTES": "2000"})
    client.initialize()
    session_id = client.call("create_session")["structuredContent"]["sessionId"]
    client.send_raw(b'{"jsonrpc":"2.0","id":9,"method":"ping","params":{"pad":"' + b"x" * 3000 + b'"}}\n')
    assert "2000-byte limit" in client.receive()["error"]["message"]
    code, stderr = client.close()
    assert code == 0, stderr
    database = data_home / "actorstate" / "state.db"
    assert database.exists()
    assert str(database) in stderr  # the lifecycle log names the file, on stderr
    assert session_id in _run("sessions", "list", "--db", str(database)).stdout


def test_bad_settings_are_refused_clearly(tmp_path: Path) -> None:
    done = _run("serve", "--durability", "sometimes")
    assert done.returncode == 2
    assert "--durability must be one of commit, interval, memory, not 'sometimes'" in done.stderr
    done = _run("serve", "--max-line-bytes", "0")
    assert done.returncode == 2
    assert "--max-line-bytes must be at least 1024 bytes" in done.stderr
    # A bad variable for serve does not trouble the other commands.
    other = _run("sessions", "list", "--db", str(tmp_path / "none.db"), env={"ACTORSTATE_MAX_RESIDENT": "x"})
    assert "does not exist" in other.stderr
    done = _run("serve", env={"ACTORSTATE_MAX_RESIDENT": "many"})
    assert done.returncode != 0
    assert "ACTORSTATE_MAX_RESIDENT='many' is not a valid int" in done.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    done = _run("serve", "--db", str(notes))
    assert done.returncode == 2
    assert "is not an SQLite database" in done.stderr
    assert notes.read_text() == "mine"


def test_serve_refuses_writes_once_its_database_is_deleted(tmp_path: Path) -> None:
    """A served database deleted under the server: the next write is an error naming the file,
    and the server exits 2 saying so instead of claiming everything acknowledged is stored."""
    path = tmp_path / "state.db"
    client = RawClient("--db", str(path))
    try:
        client.initialize()
        session_id = client.call("create_session")["structuredContent"]["sessionId"]
        assert client.call("increment_counter", sessionId=session_id)["content"][0]["text"] == "Counter: 1"
        for suffix in ("", "-wal", "-shm"):
            os.unlink(f"{path}{suffix}")
        refused = client.call("increment_counter", sessionId=session_id)
        assert refused["isError"] is True
        assert f"{path} was deleted or moved away while open" in refused["content"][0]["text"]
    finally:
        code, stderr = client.close()
    # Its exit says what happened, not that everything acknowledged is stored.
    assert code == 2
    assert "was deleted or moved away while open" in stderr
    assert "everything acknowledged is stored" not in stderr


def test_served_snapshot_holding_bytes_is_quarantined_not_a_protocol_error(tmp_path: Path) -> None:
    """get_context and resources/read on a stored snapshot holding bytes say the session is
    quarantined, instead of failing with JSON-RPC error 0 (bytes are not JSON serializable)."""
    path = str(tmp_path / "state.db")
    session_id = anyio.run(_fill, path)[0]
    fields = [session_id, "alice", 1_780_000_000.0, 1_780_000_000.0, 0, {"blob": b"raw"}, []]
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE sessions SET state = ? WHERE id = ?",
            (b"\x01" + msgpack.packb(fields, use_bin_type=True), session_id),
        )
    client = RawClient("--db", path)
    try:
        client.initialize()
        result = client.call("get_context", sessionId=session_id)
        assert result["isError"] is True
        assert "quarantined: its stored snapshot cannot be read" in result["content"][0]["text"]
        reply = client.request("resources/read", {"uri": f"session://{session_id}"})
        assert reply["error"]["code"] != 0
        assert "quarantined" in reply["error"]["message"]
    finally:
        client.close()


async def _fill_many(path: str, count: int) -> None:
    async with actorstate.open_state(path, durability="interval") as state:
        for _ in range(count):
            session = await state.create_session("alice")
            await session.set_preference("notes", "x" * 200)


@pytest.mark.parametrize("action", [["list"], ["list", "--json"], ["export"]], ids=" ".join)
def test_output_cut_short_by_its_reader_ends_quietly(tmp_path: Path, action: list[str]) -> None:
    """`sessions list [--json] | head -1` and `sessions export | head -1`: no traceback, exit 0."""
    path = str(tmp_path / "many.db")
    # Far more output than a pipe holds: the command is still writing when
    # the reader goes away, so it meets the closed pipe for real.
    anyio.run(_fill_many, path, 2000)
    command = subprocess.Popen(
        [sys.executable, "-m", "actorstate", "sessions", *action, "--db", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert command.stdout is not None
    assert command.stderr is not None
    assert command.stdout.readline()  # like head -1: one line, then the pipe is closed
    command.stdout.close()
    code = command.wait(timeout=60)
    stderr = command.stderr.read().decode()
    command.stderr.close()
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert code == 0


def test_serve_names_a_database_directory_it_cannot_create(tmp_path: Path) -> None:
    """serve --db under a path that cannot become a directory: one line and exit 2, no traceback."""
    blocker = tmp_path / "plain-file"
    blocker.write_text("in the way")
    done = _run("serve", "--db", str(blocker / "sub" / "state.db"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("actorstate: cannot create ")
    assert str(blocker) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_refusal_advice_fits_the_command(tmp_path: Path) -> None:
    """A file that is not a database gets advice each command can follow: only serve and sessions take --db."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    doctor = _run("doctor", str(notes))
    assert doctor.returncode == 2
    assert "is not an SQLite database" in doctor.stderr
    assert "--db" not in doctor.stderr
    assert "actorstate doctor PATH" in doctor.stderr
    listed = _run("sessions", "list", "--db", str(notes))
    assert listed.returncode == 2
    assert "Point --db at an actorstate database" in listed.stderr
    served = _run("serve", "--db", str(notes))
    assert served.returncode == 2
    assert "Point --db at another file" in served.stderr
    assert notes.read_text() == "mine"
