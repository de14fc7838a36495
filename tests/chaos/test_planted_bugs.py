"""The checkers can fail: each planted server bug is caught by a short run (``--inject-bug``).

The runs go side by side, each a runner and its servers: on a loaded
machine they are slower, and still each catches its bug.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from actorstate.planted import PLANTED_BUGS, check_names

if TYPE_CHECKING:
    from pathlib import Path

# Generous: a hung run fails the test instead of the suite; nothing here times the run.
_RUN_LIMIT = 300

# Each bug with the fault that brings it out, and the checkers expected to catch it.
_CAUGHT_BY = {
    "ack-before-commit": ("kill", {"counter", "list-append", "preference"}),
    "lose-update-on-conflict": ("second", {"counter", "list-append", "preference"}),
    "apply-retry-twice": ("drop", {"counter", "list-append"}),
    "reorder-events": ("none", {"list-append"}),
    "leak-across-principals": ("none", {"cross-principal"}),
    "claim-keeps-epoch": ("stop", {"one-owner-per-epoch"}),
}
# The bugs only a run over HTTP can bring out (principals exist only there), or only nodes
# sharing a PostgreSQL database (epochs exist only there).
_OVER_HTTP = {
    "leak-across-principals": ["--transport", "http"],
    "claim-keeps-epoch": ["--store", "postgres", "--nodes", "2"],
}
_CLUSTER = {"claim-keeps-epoch"}


def test_every_planted_bug_has_a_run_that_catches_it() -> None:
    """The table below covers every planted bug there is."""
    assert set(_CAUGHT_BY) == set(PLANTED_BUGS)


def test_every_planted_bug_is_caught(tmp_path: Path) -> None:
    """A 6-second run of servers with each planted bug exits 1, its checkers report violations,
    and its replay line names the bug. The single-server runs go side by side; the cluster's
    (a PostgreSQL and two nodes) after them, so its load cannot starve theirs of the faults'
    timing."""
    command = [sys.executable, "-m", "actorstate", "chaos", "--seed", "1", "--duration", "6"]

    def start(bug: str) -> subprocess.Popen[str]:
        faults = _CAUGHT_BY[bug][0]
        return subprocess.Popen(
            [
                *command,
                *_OVER_HTTP.get(bug, []),
                *["--faults", faults, "--inject-bug", bug, "--out", str(tmp_path / bug)],
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    outputs: dict[str, tuple[str, str]] = {}
    returncodes: dict[str, int] = {}
    for group in ([bug for bug in sorted(_CAUGHT_BY) if bug not in _CLUSTER], sorted(_CLUSTER)):
        runs = {bug: start(bug) for bug in group}
        for bug, run in runs.items():
            outputs[bug] = run.communicate(timeout=_RUN_LIMIT)
            returncodes[bug] = run.returncode
    for bug, (stdout, stderr) in outputs.items():
        assert returncodes[bug] == 1, f"{bug} was not caught:\n{stdout}{stderr}"
        found = re.search(r"^violations: (\d+) \((.*)\)$", stdout, re.MULTILINE)
        assert found, stdout
        caught = {part.rsplit(" ", 1)[0] for part in found.group(2).split(", ")}
        assert caught & _CAUGHT_BY[bug][1], f"{bug} was caught only by {caught}"
        assert f"--inject-bug {bug}" in stdout.splitlines()[-1]


def test_unknown_planted_bugs_are_refused_naming_the_known_ones() -> None:
    """A name that is not a planted bug is refused, listing those there are."""
    assert check_names("reorder-events,ack-before-commit") == ("reorder-events", "ack-before-commit")
    with pytest.raises(ValueError, match=r"unknown planted bug.*nonsense.*choose from ack-before-commit"):
        check_names("reorder-events,nonsense")
