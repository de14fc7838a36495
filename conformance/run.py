"""Run the MCP conformance suite against ``actorstate serve --http``.

Usage (from the repository root, with the project's virtualenv)::

    .venv/bin/python conformance/run.py [--keep-results DIR] [--scenario NAME]

What it does:

1. installs the suite pinned in ``conformance/package.json`` (``npm ci``,
   first run only, under a lock on ``package-lock.json``);
2. starts ``python -m actorstate serve --http 127.0.0.1:0 --durability
   memory`` and waits for the URL it logs;
3. runs every server scenario of the suite (``--suite all``: the active ones
   and the pending ones) against that URL;
4. stops the server with SIGTERM and expects it to exit 0;
5. compares the checks with ``conformance/expected-failures.json`` and prints
   a table.

The suite needs Node.js 22 or later (it imports ``fs.globSync``).
``package.json`` pins a Node.js 22 binary for Linux (x64, arm64) as an
optional npm dependency, used when the ``node`` on PATH is older.

Exit status:

- 0: every failing check is listed in the expected-failures file, and every
  entry there still fails;
- 1: an unexpected failure, a stale expected-failure entry, or a server that
  did not stop cleanly;
- 2: the run itself broke (``npm ci`` failed, the server did not start, the
  suite produced no results);
- 3: not run, with the reason printed: node or npm is not on PATH, or no
  Node.js 22 is available for this machine. Nothing is reported as passing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE_PACKAGE = "@modelcontextprotocol/conformance"
SUITE_ENTRY = os.path.join(HERE, "node_modules", *SUITE_PACKAGE.split("/"), "dist", "index.js")
EXPECTED_FAILURES = os.path.join(HERE, "expected-failures.json")
MIN_NODE_MAJOR = 22

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BROKEN = 2
EXIT_NOT_RUN = 3

SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 30.0
SUITE_TIMEOUT = 600.0
URL_PATTERN = re.compile(r"serving MCP over HTTP at (http://\S+/mcp)")
# Result folders are named server-<scenario>-<ISO timestamp with - for :>.
RESULT_DIR_PATTERN = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
UNKNOWN_TOOL_PREFIX = "unknown tool '"


class NotRun(Exception):
    """The suite cannot run here (exit 3): the message says why."""


class Broken(Exception):
    """The run broke before it produced results (exit 2)."""


# -- installing the suite ---------------------------------------------------------


def _package_json() -> dict[str, Any]:
    with open(os.path.join(HERE, "package.json")) as file:
        loaded: dict[str, Any] = json.load(file)
    return loaded


def _installed_version(name: str) -> str | None:
    path = os.path.join(HERE, "node_modules", *name.split("/"), "package.json")
    try:
        with open(path) as file:
            version: str = json.load(file)["version"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None
    return version


def _platform_node_package() -> str | None:
    """The name of the npm package holding a Node.js binary for this machine, if package.json pins one."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    name = f"node-{sys.platform}-{arch}"
    return name if arch and name in _package_json().get("optionalDependencies", {}) else None


def _node_modules_current() -> bool:
    """Whether node_modules holds exactly the versions package.json pins (for this machine)."""
    package = _package_json()
    pinned: dict[str, str] = dict(package["dependencies"])
    own_node = _platform_node_package()
    if own_node is not None:
        pinned[own_node] = package["optionalDependencies"][own_node]
    return all(_installed_version(name) == version for name, version in pinned.items())


def _node_major(node: str) -> int | None:
    try:
        completed = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    match = re.match(r"v(\d+)\.", completed.stdout.strip())
    return int(match.group(1)) if match else None


def install_suite() -> str:
    """Install the pinned suite if needed; return the node binary to run it with."""
    system_node = shutil.which("node")
    npm = shutil.which("npm")
    if system_node is None or npm is None:
        missing = " and ".join(tool for tool, found in (("node", system_node), ("npm", npm)) if not found)
        raise NotRun(f"{missing} not found on PATH: the conformance suite is a Node.js package")
    # A lock on the lock file: two runs starting at once must not both rewrite node_modules.
    with open(os.path.join(HERE, "package-lock.json")) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _node_modules_current():
            print("installing the conformance suite: npm ci in conformance/", file=sys.stderr)
            completed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=HERE,
                capture_output=True,
                text=True,
                check=False,
            )
            if completed.returncode != 0:
                last = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise Broken(f"npm ci failed (exit {completed.returncode}): {last}")
    system_major = _node_major(system_node)
    if system_major is not None and system_major >= MIN_NODE_MAJOR:
        return system_node
    own_node = _platform_node_package()
    if own_node is not None:
        bundled = os.path.join(HERE, "node_modules", own_node, "bin", "node")
        if os.access(bundled, os.X_OK) and (_node_major(bundled) or 0) >= MIN_NODE_MAJOR:
            return bundled
    raise NotRun(
        f"the conformance suite needs Node.js {MIN_NODE_MAJOR} or later; node on PATH is "
        f"{'v' + str(system_major) if system_major else 'unusable'}, and package.json pins no "
        f"Node.js binary for {sys.platform}/{platform.machine()}"
    )


# -- the server -------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    process: subprocess.Popen[bytes]
    log_path: str
    url: str

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log_path, errors="replace") as file:
            return "".join(file.readlines()[-lines:])


def start_server(workdir: str) -> Server:
    """``actorstate serve --http 127.0.0.1:0 --durability memory``, once it logs its URL."""
    log_path = os.path.join(workdir, "server.log")
    # The server's own settings only: an ACTORSTATE_TOKENS_FILE (say) in the
    # caller's environment would turn on authentication the suite cannot pass.
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACTORSTATE_")}
    command = [
        sys.executable, "-m", "actorstate", "serve",
        "--http", "127.0.0.1:0", "--durability", "memory",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as file:
            match = URL_PATTERN.search(file.read())
        if match:
            return Server(process, log_path, match.group(1))
        if process.poll() is not None:
            with open(log_path, errors="replace") as file:
                tail = file.read()[-2000:]
            raise Broken(f"the server exited with status {process.returncode} before serving:\n{tail}")
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise Broken(f"the server logged no URL within {SERVER_START_TIMEOUT:.0f} s")


def stop_server(server: Server) -> int | None:
    """SIGTERM, then wait; the exit status, or None when it had to be killed."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        return None


# -- the suite --------------------------------------------------------------------


@dataclasses.dataclass
class Check:
    scenario: str
    id: str
    status: str  # SUCCESS | FAILURE | WARNING | INFO | SKIPPED
    message: str
    details: Any

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.id}"

    def vacuous(self) -> bool:
        """A pass that only saw our "unknown tool" error result (the fixture tool is missing)."""
        result = self.details.get("result") if isinstance(self.details, dict) else None
        if not isinstance(result, dict) or result.get("isError") is not True:
            return False
        content = result.get("content") or []
        return any(
            isinstance(item, dict) and str(item.get("text", "")).startswith(UNKNOWN_TOOL_PREFIX)
            for item in content
        )


def list_scenarios(node: str) -> list[str]:
    completed = subprocess.run(
        [node, SUITE_ENTRY, "list", "--server"], capture_output=True, text=True, timeout=60, check=False
    )
    if completed.returncode != 0:
        raise Broken(f"`conformance list --server` failed (exit {completed.returncode}): {completed.stderr}")
    return re.findall(r"^\s*- (\S+)", completed.stdout, flags=re.MULTILINE)


def run_suite(node: str, url: str, results_dir: str, scenario: str | None) -> tuple[int, str]:
    command = [node, SUITE_ENTRY, "server", "--url", url, "--output-dir", results_dir]
    command += ["--scenario", scenario] if scenario else ["--suite", "all"]
    try:
        completed = subprocess.run(
            command, cwd=HERE, capture_output=True, text=True, timeout=SUITE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise Broken(f"the suite did not finish within {SUITE_TIMEOUT:.0f} s") from error
    return completed.returncode, completed.stdout + completed.stderr


def read_checks(results_dir: str) -> dict[str, list[Check]]:
    by_scenario: dict[str, list[Check]] = {}
    for entry in sorted(os.listdir(results_dir)):
        match = RESULT_DIR_PATTERN.match(entry)
        path = os.path.join(results_dir, entry, "checks.json")
        if not match or not os.path.exists(path):
            continue
        scenario = match.group("scenario")
        with open(path) as file:
            raw = json.load(file)
        by_scenario[scenario] = [
            Check(
                scenario,
                str(item.get("id", "?")),
                str(item.get("status", "?")),
                str(item.get("errorMessage") or ""),
                item.get("details"),
            )
            for item in raw
        ]
    return by_scenario


# -- comparing with the expected failures -------------------------------------------


def load_expected() -> dict[str, str]:
    """``scenario/check`` -> reason, from expected-failures.json."""
    with open(EXPECTED_FAILURES) as file:
        loaded = json.load(file)
    expected: dict[str, str] = {}
    for entry in loaded["expected_failures"]:
        key = f"{entry['scenario']}/{entry['check']}"
        if not entry.get("reason"):
            raise Broken(f"{EXPECTED_FAILURES}: {key} has no reason")
        if key in expected:
            raise Broken(f"{EXPECTED_FAILURES}: {key} is listed twice")
        expected[key] = entry["reason"]
    return expected


@dataclasses.dataclass
class Outcome:
    rows: list[tuple[str, str, str, str]]  # scenario, check, verdict, note
    unexpected: list[Check]
    stale: list[str]
    missing_scenarios: list[str]
    counts: dict[str, int]


def compare(
    by_scenario: dict[str, list[Check]], scenarios: list[str], expected: dict[str, str], only: str | None
) -> Outcome:
    rows: list[tuple[str, str, str, str]] = []
    unexpected: list[Check] = []
    counts = {"pass": 0, "pass (vacuous)": 0, "expected failure": 0, "UNEXPECTED FAILURE": 0, "warning": 0}
    failed_keys: set[str] = set()
    for scenario in sorted(by_scenario):
        for check in by_scenario[scenario]:
            if check.status == "SUCCESS":
                if check.vacuous():
                    verdict, note = "pass (vacuous)", "the check accepted our unknown-tool error result"
                else:
                    verdict, note = "pass", ""
            elif check.status == "FAILURE":
                failed_keys.add(check.key)
                if check.key in expected:
                    verdict, note = "expected failure", expected[check.key]
                else:
                    verdict, note = "UNEXPECTED FAILURE", check.message
                    unexpected.append(check)
            elif check.status == "WARNING":
                verdict, note = "warning", check.message
            else:
                continue  # INFO: the suite's log of the exchange
            counts[verdict] += 1
            rows.append((scenario, check.id, verdict, note))
    wanted = [only] if only else scenarios
    missing = [name for name in wanted if name not in by_scenario]
    stale = [
        key for key in expected if key not in failed_keys and (only is None or key.split("/", 1)[0] == only)
    ]
    return Outcome(rows, unexpected, stale, missing, counts)


def print_table(outcome: Outcome) -> None:
    headers = ("scenario", "check", "verdict", "note")
    widths = [max(len(headers[i]), *(len(row[i]) for row in outcome.rows)) for i in range(3)]
    line = "  ".join(header.ljust(width) for header, width in zip(headers[:3], widths, strict=True))
    print(f"{line}  {headers[3]}")
    print("  ".join("-" * width for width in widths) + "  " + "-" * 4)
    for row in outcome.rows:
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        note = row[3] if len(row[3]) <= 100 else row[3][:97] + "..."
        print(f"{cells}  {note}".rstrip())
    print()
    print(", ".join(f"{count} {verdict}" for verdict, count in outcome.counts.items()))


# -- main -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scenario", help="run this scenario only")
    parser.add_argument("--keep-results", metavar="DIR", help="write the suite's checks.json files here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        expected = load_expected()
        node = install_suite()
        with tempfile.TemporaryDirectory(prefix="actorstate-conformance-") as workdir:
            results_dir = args.keep_results or os.path.join(workdir, "results")
            os.makedirs(results_dir, exist_ok=True)
            scenarios = list_scenarios(node)
            server = start_server(workdir)
            try:
                print(f"suite {SUITE_PACKAGE}@{_installed_version(SUITE_PACKAGE)} on node "
                      f"v{_node_major(node)} against {server.url}", flush=True)  # fmt: skip
                suite_status, suite_output = run_suite(node, server.url, results_dir, args.scenario)
            finally:
                server_status = stop_server(server)
                server_log = server.log_tail()
            by_scenario = read_checks(results_dir)
    except NotRun as reason:
        print(f"conformance suite NOT RUN: {reason}", file=sys.stderr)
        return EXIT_NOT_RUN
    except Broken as reason:
        print(f"conformance run broke: {reason}", file=sys.stderr)
        return EXIT_BROKEN
    if not by_scenario:
        print(suite_output, file=sys.stderr)
        print(f"conformance run broke: the suite (exit {suite_status}) wrote no results", file=sys.stderr)
        return EXIT_BROKEN
    outcome = compare(by_scenario, scenarios, expected, args.scenario)
    print_table(outcome)
    print(f"{len(by_scenario)} scenarios in {time.monotonic() - started:.1f} s")
    status = EXIT_OK
    if outcome.missing_scenarios:
        print(f"\nscenarios with no results: {', '.join(outcome.missing_scenarios)}")
        status = EXIT_FAILED
    if outcome.unexpected:
        print("\nunexpected failures:")
        for check in outcome.unexpected:
            details = json.dumps(check.details)[:1500] if check.details is not None else "(none)"
            print(f"  {check.key}: {check.message}\n    details: {details}")
        status = EXIT_FAILED
    if outcome.stale:
        print(f"\nstale entries in {os.path.relpath(EXPECTED_FAILURES)} (these no longer fail; remove them):")
        for key in outcome.stale:
            print(f"  {key}")
        status = EXIT_FAILED
    if server_status != 0:
        how = "had to be killed" if server_status is None else f"exited with status {server_status}"
        print(f"\nthe server {how} after SIGTERM (expected 0); its log ends:\n{server_log}")
        status = EXIT_FAILED
    if status != EXIT_OK and outcome.missing_scenarios:
        print(f"\nthe suite's output:\n{suite_output}")
    print("\nconformance: " + ("OK" if status == EXIT_OK else "FAILED"))
    return status


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
