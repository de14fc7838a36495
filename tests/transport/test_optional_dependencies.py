"""trio and the MCP SDK are extras: the library runs on asyncio without them, and serve says what to install.

Each test runs a fresh interpreter in which importing the named packages
fails as if they were not installed (a finder first on ``sys.meta_path``),
since this test run itself has every extra installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def _without(*packages: str) -> str:
    """Python source that makes importing ``packages`` (and their submodules) fail from here on."""
    return f"""
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {packages!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

assert not [name for name in sys.modules if name.partition(".")[0] in {packages!r}], "imported at startup"
sys.meta_path.insert(0, _NotInstalled())
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


_EMBED = """
import asyncio, json

import actorstate

async def main(path):
    async with actorstate.open_state(path) as state:
        session = await state.create_session("alice")
        await session.increment("counter", by=2)
    async with actorstate.open_state(path) as state:
        context = await state.session(session.id, "alice").context()
    loaded = sorted({name.partition(".")[0] for name in sys.modules} & {"trio", "mcp"})
    print(json.dumps({"metadata": context["metadata"], "loaded": loaded}))

asyncio.run(main(sys.argv[1]))
"""


def test_the_missing_package_finder_hides_trio_and_mcp() -> None:
    """The finder the other tests use does make ``import trio`` and ``import mcp.types`` fail."""
    for package in ("trio", "mcp.types"):
        done = _run(_without("trio", "mcp") + f"import {package}")
        assert done.returncode == 1
        top = package.partition(".")[0]  # a submodule's import starts with its package's
        assert f"ModuleNotFoundError: No module named '{top}'" in done.stderr


def test_a_program_on_asyncio_needs_neither_trio_nor_mcp(tmp_path: Path) -> None:
    """Without trio and the SDK, an asyncio program opens a state, updates a session, and reads it back stored."""
    done = _run(_without("trio", "mcp") + _EMBED, str(tmp_path / "state.db"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"metadata": {"counter": 2}, "loaded": []}


def test_serve_without_the_mcp_extra_says_in_one_line_what_to_install() -> None:
    """``actorstate serve`` without the SDK exits 2 with one line naming actorstate[mcp], not a traceback."""
    done = _run(
        _without("mcp")
        + "from actorstate.cli import main\nsys.exit(main(['serve', '--durability', 'memory']))"
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("actorstate: serve needs the MCP SDK")
    assert "install actorstate[mcp]" in line


def test_serve_on_trio_without_the_trio_extra_says_in_one_line_what_to_install() -> None:
    """``serve --backend trio`` without trio exits 2 with one line naming actorstate[trio] and the way out."""
    done = _run(
        _without("trio")
        + "from actorstate.cli import main\n"
        + "sys.exit(main(['serve', '--durability', 'memory', '--backend', 'trio']))"
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("actorstate: --backend trio needs trio")
    assert "install actorstate[trio]" in line
    assert "--backend asyncio" in line
