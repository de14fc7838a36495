"""Two `actorstate serve` processes on one PostgreSQL database: a node killed or paused past its
lease loses its sessions to the other, and no acknowledged write is lost."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.transport.raw_client import RawClient

# Short leases, so that a node's death is noticed quickly; every wait below is
# a poll for an outcome, under a guard against a hang, never a timing.
LEASE = "0.5"
HANG_GUARD = 30.0
WRITES = 30


def _node(url: str, name: str) -> RawClient:
    client = RawClient("--db", url, "--node-id", name, "--lease-duration", LEASE, "--log-level", "ERROR")
    client.initialize()
    return client


def _counter(reply: dict[str, Any]) -> int | None:
    """The counter an increment_counter reply gives, or None for an error reply."""
    if reply.get("isError"):
        return None
    text: str = reply["content"][0]["text"]
    return int(text.removeprefix("Counter: "))


def _until_served(node: RawClient, session_id: str) -> tuple[int, list[str]]:
    """Increment on ``node`` until it serves the session; the counter, and the refusals before."""
    refusals: list[str] = []
    deadline = time.monotonic() + HANG_GUARD
    while True:
        reply = node.call("increment_counter", sessionId=session_id)
        value = _counter(reply)
        if value is not None:
            return value, refusals
        refusals.append(reply["content"][0]["text"])
        assert time.monotonic() < deadline, f"never served: {refusals[-1]}"
        time.sleep(0.02)


def test_a_killed_node_loses_its_sessions_and_no_acknowledged_write(postgres_url: str) -> None:
    """Node n1 acknowledges writes, then is killed (SIGKILL): n2, refused while n1's lease lived
    (told which node serves the session), serves it once the lease expired, with every write
    n1 acknowledged."""
    n1 = _node(postgres_url, "n1")
    n2 = _node(postgres_url, "n2")
    try:
        session_id = n1.call("create_session")["structuredContent"]["sessionId"]
        refused = n2.call("increment_counter", sessionId=session_id)
        assert refused["isError"] is True
        assert "node n1" in refused["content"][0]["text"]
        for expected in range(1, WRITES + 1):
            assert _counter(n1.call("increment_counter", sessionId=session_id)) == expected
        n1.kill()
        value, refusals = _until_served(n2, session_id)
        assert value == WRITES + 1
        assert all("node n1" in text for text in refusals)
    finally:
        n1.kill()
        n2.close()


def test_a_paused_node_that_wakes_is_fenced_and_never_answers_stale(postgres_url: str) -> None:
    """n1 paused (SIGSTOP) past its lease; n2 takes the session and writes; n1 woken (SIGCONT)
    either refuses the call (the session moved) or serves it on top of n2's writes, never on
    its own stale copy; the stored counter counts every acknowledged increment once."""
    n1 = _node(postgres_url, "n1")
    n2 = _node(postgres_url, "n2")
    try:
        session_id = n1.call("create_session")["structuredContent"]["sessionId"]
        for _ in range(5):
            n1.call("increment_counter", sessionId=session_id)
        os.kill(n1.process.pid, signal.SIGSTOP)
        try:
            value, _ = _until_served(n2, session_id)
            assert value == 6
            assert _counter(n2.call("increment_counter", sessionId=session_id)) == 7
        finally:
            os.kill(n1.process.pid, signal.SIGCONT)
        acknowledged = 7
        woken = n1.call("increment_counter", sessionId=session_id)
        woken_value = _counter(woken)
        if woken_value is None:
            assert "node n2" in woken["content"][0]["text"] or "retry" in woken["content"][0]["text"]
        else:
            acknowledged += 1
            assert woken_value == acknowledged
        n2_value, _ = _until_served(n2, session_id)
        assert n2_value == acknowledged + 1
    finally:
        n1.kill()
        n2.close()
