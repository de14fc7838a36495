"""``--json`` output for scripts: sessions list and purge, doctor, tokens list.

Lists are JSON lines (one object a line, streamed as they are read, like
``sessions export``); doctor's findings and purge's count are one object.
Exit statuses are those of the text output.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import anyio
import pytest

import actorstate
from actorstate.cli import main
from actorstate.locations import DATABASE_VARIABLE
from actorstate.store.sqlite import SCHEMA_VERSION

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _no_outside_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


async def _fill(path: str) -> tuple[str, str, str]:
    async with actorstate.open_state(path) as state:
        alice = await state.create_session("alice")
        await alice.add_context("topic", "billing")
        bob = await state.create_session("bob")
        gone = await state.create_session("alice")
        await gone.end()
        return alice.id, bob.id, gone.id


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_sessions_list_json_is_one_object_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each session's id, client, status, version and times, as the text line has them; filters apply."""
    path = str(tmp_path / "state.db")
    alice, bob, gone = anyio.run(_fill, path)

    assert main(["sessions", "list", "--json", "--db", path]) == 0
    captured = capsys.readouterr()
    rows = {row["sessionId"]: row for row in _lines(captured.out)}
    assert set(rows) == {alice, bob}
    assert rows[alice]["clientId"] == "alice"
    assert rows[alice]["status"] == "live"
    assert rows[alice]["version"] == 2
    assert rows[alice]["endedAt"] is None
    assert isinstance(rows[alice]["lastActivity"], str)
    assert captured.err == "2 sessions\n"  # the count stays on stderr, out of the JSON

    assert main(["sessions", "list", "--json", "--ended", "--client", "alice", "--db", path]) == 0
    rows = {row["sessionId"]: row for row in _lines(capsys.readouterr().out)}
    assert set(rows) == {alice, gone}
    assert rows[gone]["status"] == "ended"
    assert isinstance(rows[gone]["endedAt"], str)


def test_sessions_list_json_of_an_empty_database_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No sessions: no lines (JSON lines has no empty array), exit 0."""
    path = str(tmp_path / "state.db")
    anyio.run(_fill, path)
    assert main(["sessions", "list", "--json", "--client", "nobody", "--db", path]) == 0
    assert capsys.readouterr().out == ""


def test_sessions_list_json_reports_an_unreadable_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot that does not decode: the row still appears, with its error and no lastActivity."""
    path = str(tmp_path / "state.db")
    alice, _, _ = anyio.run(_fill, path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE sessions SET state = x'c1' WHERE id = ?", (alice,))
    connection.close()
    assert main(["sessions", "list", "--json", "--db", path]) == 0
    rows = {row["sessionId"]: row for row in _lines(capsys.readouterr().out)}
    assert rows[alice]["lastActivity"] is None
    assert isinstance(rows[alice]["error"], str)


def test_sessions_purge_json_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "state.db")
    anyio.run(_fill, path)
    assert main(["sessions", "purge", "--json", "--db", path]) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 1}


def test_doctor_json_healthy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A healthy database: the counts, no problems, exit 0."""
    path = str(tmp_path / "state.db")
    anyio.run(_fill, path)
    assert main(["doctor", "--json", "--db", path]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["database"] == path
    assert report["schemaVersion"] == SCHEMA_VERSION
    assert report["liveSessions"] == 2
    assert report["endedSessions"] == 1
    assert report["bytes"] > 0
    assert report["problems"] == []
    assert report["notes"] == []


def test_doctor_json_with_problems_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A snapshot that does not decode is a problem in the list, and the exit status is 1 as in text."""
    path = str(tmp_path / "state.db")
    alice, _, _ = anyio.run(_fill, path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE sessions SET state = x'c1' WHERE id = ?", (alice,))
    connection.close()
    assert main(["doctor", path, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["problems"]) == 1
    assert report["problems"][0].startswith(f"session {alice}:")


def test_doctor_json_refusal_is_still_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not a database: exit 2, nothing on stdout for the script to misread."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["doctor", "--json", "--db", str(notes)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1


def test_tokens_list_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One object a line: name, created, operator; never the hash."""
    tokens = str(tmp_path / "tokens.json")
    assert main(["tokens", "add", "alice", "--tokens-file", tokens]) == 0
    assert main(["tokens", "add", "root", "--operator", "--tokens-file", tokens]) == 0
    capsys.readouterr()
    assert main(["tokens", "list", "--json", "--tokens-file", tokens]) == 0
    rows = _lines(capsys.readouterr().out)
    assert [(row["name"], row["operator"]) for row in rows] == [("alice", False), ("root", True)]
    assert all(set(row) == {"name", "created", "operator"} for row in rows)
