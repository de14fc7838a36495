"""Two `actorstate serve --http` nodes on one PostgreSQL database, as the README starts them:
a call for a session the other node serves is refused naming that node, and a node that
stops hands its sessions over with everything acknowledged."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.transport.test_http import call, client

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
        "pytest.PytestUnraisableExceptionWarning"
    ),
]
LISTENING = re.compile(r"serving MCP over HTTP at (http://\S+)")
START_TIMEOUT = 60.0


class Node:
    """One `actorstate serve --http 127.0.0.1:0 --db URL --node-id NAME` process."""

    def __init__(self, database: str, name: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actorstate",
                "serve",
                "--http",
                "127.0.0.1:0",
                "--db",
                database,
                "--node-id",
                name,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.stderr = b""
        self.url = self._listening()

    def _listening(self) -> str:
        assert self.process.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = LISTENING.search(self.stderr.decode(errors="replace"))
            if found:
                return found.group(1)
            ready, _, _ = select.select([self.process.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(self.process.stderr.fileno(), 65536)
                if not chunk:
                    break
                self.stderr += chunk
        self.process.kill()
        raise AssertionError(f"the node never listened; its stderr:\n{self.stderr.decode()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=60)
        self.stderr += rest
        return self.process.returncode


async def test_two_http_nodes_share_sessions_one_owner_at_a_time(postgres_url: str) -> None:
    """n1 serves a session; n2 refuses calls for it naming n1 and telling the caller to retry;
    n1 stopped (SIGTERM: it commits and gives up its leases), n2 serves the session at once with
    n1's acknowledged writes."""
    n1, n2 = Node(postgres_url, "n1"), Node(postgres_url, "n2")
    try:
        async with client(n1.url, None) as on_n1:
            _, created = await call(on_n1, "create_session", {})
            session_id = created["sessionId"]
            for expected in (1, 2):
                _, counted = await call(on_n1, "increment_counter", {"sessionId": session_id})
                assert counted["value"] == expected
        async with client(n2.url, None) as on_n2:
            refused, text = await call(on_n2, "increment_counter", {"sessionId": session_id})
            assert refused
            assert "node n1" in text
            assert "retry" in text
        assert n1.stop() == 0, n1.stderr.decode()
        async with client(n2.url, None) as on_n2:
            _, counted = await call(on_n2, "increment_counter", {"sessionId": session_id})
            assert counted["value"] == 3
    finally:
        n1.stop()
        assert n2.stop() == 0, n2.stderr.decode()
