"""The operations endpoints as a user runs them, in real server processes: a stdio server's
--metrics side listener (health, readiness, metrics that count its calls; loopback unless
allowed), and an HTTP server draining on SIGTERM (/readyz 503 while calls are still answered,
until a second signal stops it)."""

from __future__ import annotations

import re
import signal
import time
from typing import TYPE_CHECKING

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actorstate.cli import main
from tests.transport.raw_client import RawClient
from tests.transport.test_http_serve import Server

if TYPE_CHECKING:
    from pathlib import Path

SIDE_LISTENING = re.compile(r"answering /healthz, /readyz and /metrics at (http://\S+)")
DEADLINE = 60.0


def wait_for_log(log: Path, pattern: re.Pattern[str]) -> re.Match[str]:
    """Read the server's log file until ``pattern`` shows (a timeout, not a measurement)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = pattern.search(log.read_text(errors="replace"))
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"never logged {pattern.pattern!r}:\n{log.read_text()}")


def calls_counted(metrics: str, tool: str, outcome: str) -> float:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "actorstate_calls_total" and sample.labels == {
                "tool": tool,
                "outcome": outcome,
            }:
                return sample.value
    raise AssertionError(f"no actorstate_calls_total for {tool} {outcome}")


def test_stdio_server_answers_on_its_side_listener(tmp_path: Path) -> None:
    """`serve --metrics 127.0.0.1:0` answers /healthz and /readyz 200, /metrics counting the
    calls made over stdio, 404 elsewhere and 405 to a POST; the listener closes when the
    server exits cleanly at end of input."""
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        server = RawClient("--db", str(tmp_path / "state.db"), "--metrics", "127.0.0.1:0", stderr=stderr)
    try:
        base = wait_for_log(log, SIDE_LISTENING).group(1)
        with httpx2.Client() as http:
            assert (http.get(base + "/healthz").status_code, http.get(base + "/healthz").text) == (
                200,
                "ok\n",
            )
            assert (http.get(base + "/readyz").status_code, http.get(base + "/readyz").text) == (
                200,
                "ready\n",
            )
            server.initialize()
            created = server.call("create_session")["structuredContent"]
            for _ in range(3):
                server.call("increment_counter", sessionId=created["sessionId"])
            metrics = http.get(base + "/metrics")
            assert metrics.status_code == 200
            assert calls_counted(metrics.text, "increment_counter", "ok") == 3
            assert calls_counted(metrics.text, "create_session", "ok") == 1
            assert "actorstate_database_bytes" in metrics.text
            assert http.get(base + "/nowhere").status_code == 404
            refused = http.post(base + "/metrics")
            assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
    finally:
        code, _ = server.close()
    assert code == 0, log.read_text()
    with httpx2.Client() as http, pytest.raises(httpx2.ConnectError):
        http.get(base + "/healthz")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--metrics", "0.0.0.0:9100"], "refusing to answer /metrics on 0.0.0.0"),
        (["--metrics", "9100"], "--metrics must be HOST:PORT"),
        (["--http", "127.0.0.1:0", "--metrics", "127.0.0.1:9100"], "--metrics is for a stdio server"),
        (["--metrics-access", "everyone"], "--metrics-access must be one of operator, open"),
        (["--http", "127.0.0.1:0", "--drain-period", "-1"], "--drain-period must be a number of seconds"),
    ],
)
def test_bad_operations_flags_are_refused_in_one_line(
    flags: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each unusable operations setting stops serve with exit status 2 and one line saying what
    to do; a side listener beyond loopback names the flag that allows it."""
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--durability", "memory", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1, err
    if "0.0.0.0" in flags[1]:
        assert "--metrics-remote on" in err


def test_side_listener_beyond_loopback_when_allowed(tmp_path: Path) -> None:
    """With --metrics-remote on, the side listener takes a non-loopback address (0.0.0.0) and
    answers there."""
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        server = RawClient(
            "--durability", "memory", "--metrics", "0.0.0.0:0", "--metrics-remote", "on", stderr=stderr
        )
    try:
        base = wait_for_log(log, SIDE_LISTENING).group(1)
        port = base.rsplit(":", 1)[1]
        with httpx2.Client() as http:
            assert http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    finally:
        code, _ = server.close()
    assert code == 0, log.read_text()


@pytest.mark.slow
@pytest.mark.anyio
async def test_http_server_drains_on_sigterm_before_intake_stops(tmp_path: Path) -> None:
    """A probed HTTP server getting SIGTERM logs that it drains; /readyz then answers 503 while
    /healthz and MCP calls are still answered; a second SIGTERM stops it, exit status 0, with
    everything stored."""
    server = Server(tmp_path, "--drain-period", "3600")
    base = server.url.removesuffix("/mcp")
    try:
        async with httpx2.AsyncClient() as http:
            assert (await http.get(base + "/readyz")).status_code == 200
            server.signal(signal.SIGTERM, "draining: /readyz answers 503")
            ready = await http.get(base + "/readyz")
            assert (ready.status_code, ready.text) == (503, "not ready: draining: the server is stopping\n")
            assert (await http.get(base + "/healthz")).status_code == 200
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
            listed = await http.post(server.url, json=body, headers=HEADERS)
            assert listed.status_code == 200
            assert "increment_counter" in listed.text
    finally:
        code = server.stop()
    assert code == 0, server.stderr.decode()
    assert "everything acknowledged is stored" in server.stderr.decode()


META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
}
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/list",
}
