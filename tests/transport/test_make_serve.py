"""`make serve` as an MCP client runs it: stdout carries the protocol and nothing else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .raw_client import INITIALIZE_REQUEST

REPO = Path(__file__).resolve().parents[2]
# The make to run (another build can be tried without installing it).
MAKE = os.environ.get("ACTORSTATE_TEST_MAKE", "make")


def _make_version() -> tuple[int, int]:
    done = subprocess.run([MAKE, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"GNU Make (\d+)\.(\d+)", done.stdout)
    assert found, done.stdout
    return int(found.group(1)), int(found.group(2))


@pytest.mark.skipif(
    shutil.which(MAKE) is None or not (REPO / ".venv" / "bin" / "actorstate").exists(),
    reason="needs GNU make and the repository's .venv",
)
def test_make_dash_c_serve_prints_only_protocol_on_stdout(tmp_path: Path) -> None:
    """`make -C REPO serve` from another directory: stdout holds the replies and no make chatter.

    From GNU make 4.4 the Makefile's own setting silences "Entering directory";
    older makes announce it before reading any makefile, so there the client
    has to pass --no-print-directory itself, and that is what runs.
    """
    # -o: the .venv counts as installed, so the test never reinstalls it.
    command = [MAKE, "-C", str(REPO), "-o", ".venv/.installed", "serve"]
    if _make_version() < (4, 4):
        command.insert(1, "--no-print-directory")
    done = subprocess.run(
        command,
        input=json.dumps(INITIALIZE_REQUEST).encode() + b"\n",
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "ACTORSTATE_DURABILITY": "memory"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"{"), done.stdout[:200]
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [reply["id"] for reply in replies] == [1]
    assert replies[0]["result"]["serverInfo"]["name"] == "actorstate"
