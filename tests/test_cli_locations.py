"""Every command finds its database the same way: ``--db``, then ``ACTORSTATE_DB``, then the default."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import pytest

import actorstate
from actorstate.cli import main
from actorstate.locations import DATABASE_VARIABLE, find_database

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ACTORSTATE_DB from outside; the default database lives under tmp_path."""
    monkeypatch.delenv(DATABASE_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data"


async def _fill(path: str, client_id: str) -> str:
    async with actorstate.open_state(path) as state:
        return (await state.create_session(client_id)).id


def _database(path: Path, client_id: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    return anyio.run(_fill, str(path), client_id)


# -- the rule --------------------------------------------------------------------


def test_the_flag_wins_then_the_variable_then_the_default(data_home: Path) -> None:
    """find_database: the flag, else ACTORSTATE_DB (empty counts as unset), else the data directory."""
    environ = {DATABASE_VARIABLE: "/from/env.db"}
    assert find_database("/given.db", environ=environ) == ("/given.db", "--db")
    assert find_database(None, environ=environ) == ("/from/env.db", DATABASE_VARIABLE)
    default = str(data_home / "actorstate" / "state.db")
    assert find_database(None, environ={DATABASE_VARIABLE: ""}) == (default, None)
    assert find_database(None, environ={}) == (default, None)
    assert find_database("~/x.db", flag="PATH", environ={}) == (os.path.expanduser("~/x.db"), "PATH")


@pytest.mark.parametrize("command", [["sessions", "list"], ["sessions", "export"], ["doctor"]])
def test_looking_commands_follow_the_rule(
    command: list[str],
    tmp_path: Path,
    data_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sessions and doctor read the default database, then ACTORSTATE_DB's, then --db's."""
    in_default = _database(data_home / "actorstate" / "state.db", "default")
    in_variable = _database(tmp_path / "variable.db", "variable")
    in_flag = _database(tmp_path / "flag.db", "flag")

    def run(*extra: str) -> str:
        main([*command, *extra])
        return capsys.readouterr().out

    doctor = command == ["doctor"]
    assert ("state.db" if doctor else in_default) in run()
    monkeypatch.setenv(DATABASE_VARIABLE, str(tmp_path / "variable.db"))
    assert ("variable.db" if doctor else in_variable) in run()
    assert ("flag.db" if doctor else in_flag) in run("--db", str(tmp_path / "flag.db"))


def _serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``actorstate serve`` on an empty stdin: it opens its database, finds no request and closes."""
    return subprocess.run(
        [sys.executable, "-m", "actorstate", "serve", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_serve_follows_the_rule(tmp_path: Path) -> None:
    """serve takes ACTORSTATE_DB when --db is not given, and --db over it."""
    variable, flag = tmp_path / "variable.db", tmp_path / "flag.db"
    done = _serve(env={DATABASE_VARIABLE: str(variable)})
    assert done.returncode == 0, done.stderr
    assert f"database {variable}" in done.stderr
    assert variable.exists()
    done = _serve("--db", str(flag), env={DATABASE_VARIABLE: str(variable)})
    assert done.returncode == 0, done.stderr
    assert f"database {flag}" in done.stderr
    assert flag.exists()


# -- doctor's two forms ----------------------------------------------------------------


def test_doctor_takes_db_and_keeps_its_positional_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """doctor --db PATH and doctor PATH check the same file; both at once must agree."""
    path = tmp_path / "state.db"
    _database(path, "alice")
    for args in (["--db", str(path)], [str(path)], [str(path), "--db", str(tmp_path / "." / "state.db")]):
        assert main(["doctor", *args]) == 0
        assert f"database: {path}" in capsys.readouterr().out.replace("/./", "/")


def test_doctor_given_two_different_files_refuses_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PATH and --db naming different files: exit 2, one line naming both, nothing checked."""
    one, other = tmp_path / "one.db", tmp_path / "other.db"
    _database(one, "alice")
    assert main(["doctor", str(one), "--db", str(other)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("actorstate: doctor got two databases")
    assert str(one) in captured.err
    assert str(other) in captured.err
    assert len(captured.err.splitlines()) == 1


# -- errors name what the user gave ---------------------------------------------------


def test_a_missing_database_says_what_named_it(
    tmp_path: Path, data_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file is reported with its source: --db as before, ACTORSTATE_DB, or the default."""
    missing = tmp_path / "none.db"
    assert main(["sessions", "list", "--db", str(missing)]) == 2
    assert capsys.readouterr().err == f"actorstate: {missing} does not exist\n"
    assert main(["doctor"]) == 2
    default = data_home / "actorstate" / "state.db"
    assert capsys.readouterr().err == (
        f"actorstate: {default} does not exist "
        f"(the default database; name another with --db or {DATABASE_VARIABLE})\n"
    )
    monkeypatch.setenv(DATABASE_VARIABLE, str(missing))
    for command in (["sessions", "list"], ["sessions", "purge"], ["doctor"]):
        assert main(command) == 2
        assert (
            capsys.readouterr().err
            == f"actorstate: {missing} does not exist (named by {DATABASE_VARIABLE})\n"
        )
    assert not missing.exists()
    assert not default.exists()


@pytest.mark.parametrize(
    ("command", "advice"),
    [
        (["sessions", "list", "--db", "{notes}"], "Point --db at an actorstate database."),
        (["sessions", "list"], f"Point {DATABASE_VARIABLE} (or --db) at an actorstate database."),
        (["doctor", "--db", "{notes}"], "Point --db at an actorstate database."),
        (["doctor", "{notes}"], "Name an actorstate database: actorstate doctor PATH."),
        (["doctor"], f"Point {DATABASE_VARIABLE} (or --db) at an actorstate database."),
    ],
)
def test_refusal_advice_names_what_the_user_gave(
    command: list[str],
    advice: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file that is not a database: the advice names the flag, PATH or variable that named it."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    monkeypatch.setenv(DATABASE_VARIABLE, str(notes))
    assert main([part.format(notes=notes) for part in command]) == 2
    error = capsys.readouterr().err
    assert "is not an SQLite database" in error
    assert error.rstrip().endswith(advice)
    assert notes.read_text() == "mine"
