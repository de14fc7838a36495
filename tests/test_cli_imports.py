"""Commands that do not serve MCP start without the SDK and the HTTP stack.

Each command runs in a fresh interpreter under ``-X importtime``, which lists
every module the process imports; the test reads that list (never a time).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import pytest

import actorstate
from actorstate.transport.tokens import add_token

if TYPE_CHECKING:
    from pathlib import Path

# Top-level packages only serve (or chaos) may import.
_SERVE_ONLY = frozenset(
    {"mcp", "pydantic", "pydantic_core", "starlette", "hypercorn", "httpx", "httpx2", "jwt", "trio", "orjson"}
)


def _imported(*args: str, tmp_path: Path) -> set[str]:
    """The modules ``python -m actorstate ARGS`` imports, from ``-X importtime``'s report on stderr."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ACTORSTATE_")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "actorstate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "XDG_DATA_HOME": str(tmp_path / "data")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # "import time: self [us] | cumulative | module", the module indented by its depth.
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "cumulative" not in line
    }


async def _fill(path: str) -> None:
    async with actorstate.open_state(path) as state:
        await state.create_session("alice")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A tiny database and a tiny tokens file."""
    directory = tmp_path_factory.mktemp("imports")
    database = str(directory / "state.db")
    anyio.run(_fill, database)
    tokens = str(directory / "tokens.json")
    add_token(tokens, "alice")
    return database, tokens


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("--version",), id="version"),
        pytest.param(("sessions", "list", "--db", "{db}"), id="sessions-list"),
        pytest.param(("sessions", "list", "--json", "--db", "{db}"), id="sessions-list-json"),
        pytest.param(("sessions", "export", "--db", "{db}"), id="sessions-export"),
        pytest.param(("doctor", "{db}"), id="doctor"),
        pytest.param(("doctor", "--json", "--db", "{db}"), id="doctor-json"),
        pytest.param(("tokens", "list", "--tokens-file", "{tokens}"), id="tokens-list"),
        pytest.param(("tokens", "list", "--json", "--tokens-file", "{tokens}"), id="tokens-list-json"),
        pytest.param(("serve", "--help"), id="serve-help"),
    ],
)
def test_command_imports_nothing_serve_needs(
    command: tuple[str, ...], files: tuple[str, str], tmp_path: Path
) -> None:
    """--version, sessions, doctor, tokens and serve --help import no MCP SDK, pydantic, HTTP stack,
    JWT library, trio or orjson."""
    database, tokens = files
    imported = _imported(*(part.format(db=database, tokens=tokens) for part in command), tmp_path=tmp_path)
    assert "actorstate.cli" in imported  # the report was read: the list is not empty by mistake
    unwanted = sorted(name for name in imported if name.split(".")[0] in _SERVE_ONLY)
    assert unwanted == []


def test_the_check_sees_a_serve_import(tmp_path: Path) -> None:
    """The import list does show the SDK when a command imports it (so the test above can fail)."""
    pytest.importorskip("mcp")
    env = {name: value for name, value in os.environ.items() if not name.startswith("ACTORSTATE_")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import actorstate.cli, mcp.types"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "mcp.types" in imported
    assert "pydantic" in imported
