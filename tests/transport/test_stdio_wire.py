"""The stdio wire: restarts, kills, bad input, and end of input, over raw pipes."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING

from .raw_client import INITIALIZE_REQUEST, RawClient

if TYPE_CHECKING:
    from pathlib import Path


def _server(path: Path, *extra: str) -> RawClient:
    client = RawClient("--db", str(path), *extra)
    client.initialize()
    return client


def test_state_survives_sigterm(tmp_path: Path) -> None:
    """SIGTERM stops intake, flushes and exits 0; a new server finds the counter."""
    db = tmp_path / "term.db"
    server = _server(db, "--durability", "interval", "--flush-interval", "3600")
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    for _ in range(25):
        server.call("increment_counter", sessionId=session_id)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    stderr = server.process.stderr.read().decode()  # type: ignore[union-attr]
    server.kill()
    assert "received SIGTERM" in stderr
    restarted = _server(db)
    context = restarted.call("get_context", sessionId=session_id)["structuredContent"]
    assert context["metadata"] == {"counter": 25}
    assert restarted.close()[0] == 0


def test_state_survives_sigkill_in_commit_mode(tmp_path: Path) -> None:
    """Every acknowledged increment is there after SIGKILL."""
    db = tmp_path / "kill.db"
    server = _server(db)
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    acked = [
        server.call("increment_counter", sessionId=session_id)["structuredContent"]["value"]
        for _ in range(40)
    ]
    server.process.send_signal(signal.SIGKILL)
    server.kill()
    restarted = _server(db)
    assert restarted.call("get_context", sessionId=session_id)["structuredContent"]["metadata"] == {
        "counter": acked[-1]
    }
    assert restarted.close()[0] == 0


def test_an_oversized_line_is_refused_with_its_size_or_what_came_of_it(tmp_path: Path) -> None:
    """A line over the limit read whole (its newline in the same read) is refused with its size;
    one cut off before its newline came, with "at least" what had come of it."""
    server = _server(tmp_path / "long.db", "--max-line-bytes", "1024")  # the smallest it takes
    server.send_raw(b"x" * 1025 + b"\n")
    assert server.receive()["error"]["message"] == (
        "Invalid Request: a line of 1025 bytes is over the 1024-byte limit and was dropped"
    )
    server.send_raw(b"y" * 1500)
    server.wait_consumed()  # read before the rest comes: only 1,500 bytes of it are known
    server.send_raw(b"y" * 500 + b"\n")
    assert server.receive()["error"]["message"] == (
        "Invalid Request: a line of at least 1500 bytes is over the 1024-byte limit and was dropped"
    )
    assert server.close()[0] == 0


def test_garbage_oversized_and_split_lines_do_not_stop_the_server(tmp_path: Path) -> None:
    server = _server(tmp_path / "wire.db", "--max-line-bytes", "100000")
    session_id = server.call("create_session")["structuredContent"]["sessionId"]

    server.send_raw(b"this is not json\n")
    assert server.receive()["error"]["code"] == -32700
    server.send_raw(b'{"jsonrpc": "1.0", "id": 77}\n')
    reply = server.receive()
    assert (reply["id"], reply["error"]["code"]) == (77, -32600)
    server.send_raw(b'{"jsonrpc":"2.0","id":5,"method":"x","params":"' + b"a" * 200_000 + b'"}\n')
    reply = server.receive()
    assert reply["error"]["code"] == -32600
    assert "limit" in reply["error"]["message"]

    # One request split over three writes, then two joined in one write.
    line = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 100,
            "method": "tools/call",
            "params": {"name": "increment_counter", "arguments": {"sessionId": session_id}},
        }
    ).encode()
    for part in (line[:10], line[10:50], line[50:] + b"\n"):
        server.send_raw(part)
        server.wait_consumed()  # each part is read on its own
    assert server.receive()["result"]["structuredContent"]["value"] == 1
    second = line.replace(b'"id": 100', b'"id": 101')
    third = line.replace(b'"id": 100', b'"id": 102')
    server.send_raw(second + b"\n" + third + b"\n")
    values = sorted(server.receive()["result"]["structuredContent"]["value"] for _ in range(2))
    assert values == [2, 3]
    assert server.close()[0] == 0


def test_end_of_input_answers_everything_then_exits_cleanly(tmp_path: Path) -> None:
    """Requests written just before stdin closes are all answered; the exit code is 0."""
    server = _server(tmp_path / "eof.db")
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    for _ in range(20):
        server.send("tools/call", {"name": "increment_counter", "arguments": {"sessionId": session_id}})
    assert server.process.stdin is not None
    server.process.stdin.close()
    values = sorted(server.receive()["result"]["structuredContent"]["value"] for _ in range(20))
    assert values == list(range(1, 21))
    assert server.process.wait(timeout=30) == 0
    server.kill()


def test_requests_from_a_regular_file_are_served(tmp_path: Path) -> None:
    """stdin may be a file (it cannot be polled): the server reads it through a thread."""
    import subprocess
    import sys

    requests = tmp_path / "requests.jsonl"
    lines = [
        INITIALIZE_REQUEST,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with requests.open("rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "actorstate", "serve", "--durability", "memory"],
            stdin=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [reply["id"] for reply in replies] == [1, 2]
    assert len(replies[1]["result"]["tools"]) == 9


def test_odd_ids_cancellations_and_a_last_line_without_newline(tmp_path: Path) -> None:
    """Every request gets an answer or a refusal; a cancelled one does not hold up the exit."""
    server = _server(tmp_path / "odd.db")
    for odd_id in ("true", "1.5", "null", "[1]"):
        server.send_raw(b'{"jsonrpc":"2.0","id":' + odd_id.encode() + b',"method":"ping"}\n')
        reply = server.receive()
        assert reply["error"]["code"] == -32600, reply
    # A request the client cancels is never answered by the SDK; end of input must not wait for it.
    server.send_raw(
        b'{"jsonrpc":"2.0","id":50,"method":"tools/call","params":{"name":"server_stats","arguments":{}}}\n'
    )
    server.send_raw(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":50}}\n')
    # The last request has no newline: end of input completes it.
    server.send_raw(b'{"jsonrpc":"2.0","id":51,"method":"ping"}')
    assert server.process.stdin is not None
    server.process.stdin.close()
    ids = set()
    while True:
        try:
            ids.add(server.receive(timeout=20)["id"])
        except EOFError:
            break
    assert 51 in ids
    assert server.process.wait(timeout=20) == 0
    server.kill()


def test_client_closing_its_end_stops_the_server_cleanly(tmp_path: Path) -> None:
    """With nobody reading replies, the server stops reading too and exits 0 at end of input."""
    server = _server(tmp_path / "gone.db")
    assert server.process.stdout is not None
    server.process.stdout.close()
    for request_id in range(3):
        server.send_raw(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % request_id)
    server.send_raw(b"garbage\n")
    assert server.process.stdin is not None
    server.process.stdin.close()
    assert server.process.wait(timeout=20) == 0
    server.process.stderr.close()  # type: ignore[union-attr]


def test_null_for_optional_arguments_means_the_default(tmp_path: Path) -> None:
    server = _server(tmp_path / "null.db")
    created = server.call("create_session", clientId=None)
    session_id = created["structuredContent"]["sessionId"]
    assert (
        server.call("increment_counter", sessionId=session_id, key=None, by=None)["content"][0]["text"]
        == "Counter: 1"
    )
    context = server.call("get_context", sessionId=session_id, maxTurns=None)
    assert context["structuredContent"]["metadata"] == {"counter": 1}
    huge = server.call("increment_counter", sessionId=session_id, by=1e300)
    assert huge["isError"]
    assert len(huge["content"][0]["text"]) < 200
    assert server.close()[0] == 0
