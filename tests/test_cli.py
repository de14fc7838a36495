"""The ``actorstate`` command, run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys


def test_serve_runs_and_reports_exact_counters() -> None:
    """`actorstate serve` exits 0, keeps stdout for its report and logs on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "actorstate", "serve"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["exact"] is True
    assert report["sum_of_counters"] == report["increments"] == 10_000
    assert "embedded demonstration" in done.stderr
