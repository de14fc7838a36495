"""Flow control on the wire: requests in flight are bounded, and stopping answers every request read."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from typing import TYPE_CHECKING

import pytest

from .raw_client import RawClient

if TYPE_CHECKING:
    from pathlib import Path


def _unread_bytes(fd: int) -> int:
    """Bytes written into a pipe and not read from it yet (asked through either end)."""
    count: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
    return count


class _PipeWriter:
    """Writes one block of bytes into the server's stdin from a thread, counting what went in."""

    def __init__(self, server: RawClient, data: bytes) -> None:
        assert server.process.stdin is not None
        self.fd = server.process.stdin.fileno()
        self.data = data
        self.written = 0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        view = memoryview(self.data)
        try:
            while self.written < len(view):
                # At most PIPE_BUF bytes a write: each goes in whole or waits, so
                # `written` never counts bytes still held by a blocked write.
                self.written += os.write(self.fd, view[self.written : self.written + select.PIPE_BUF])
        except BrokenPipeError:
            pass  # the server stopped reading for good
        finally:
            self.done.set()

    def consumed(self) -> int:
        """Bytes the server has read so far."""
        return self.written - _unread_bytes(self.fd)

    def wait_until_stalled(self, polls: int = 50, deadline: float = 60.0) -> None:
        """Return once everything is written, or the server read nothing over ``polls`` checks in a row."""
        last, unchanged = -1, 0
        stop = time.monotonic() + deadline
        while not self.done.is_set() and unchanged < polls and time.monotonic() < stop:
            consumed = self.consumed()
            unchanged = unchanged + 1 if consumed == last else 0
            last = consumed
            time.sleep(0.01)

    def join(self) -> None:
        self._thread.join(timeout=60)


def _tools_list_flood(count: int) -> bytes:
    """Small requests with large replies (about 5.6 KB each): a handful fill the pipe back to the client."""
    return b"".join(
        json.dumps(
            {"jsonrpc": "2.0", "id": i, "method": "tools/list", "params": {"_meta": {"pad": "x" * 700}}}
        ).encode()
        + b"\n"
        for i in range(count)
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_client_that_reads_no_replies_stops_the_server_reading(backend: str) -> None:
    """Past --max-in-flight unanswered requests the server stops reading; reading replies lets all finish."""
    server = RawClient("--durability", "memory", "--max-in-flight", "8", "--backend", backend)
    server.initialize()
    count = 4000
    requests = _tools_list_flood(count)
    writer = _PipeWriter(server, requests)
    writer.wait_until_stalled()
    assert not writer.done.is_set(), "the server read every request while no reply was read"
    # Requests in flight (8), replies in the pipe to the client (about 12) and one read's worth of input.
    assert writer.consumed() < len(requests) // 10

    ids = sorted(server.receive()["id"] for _ in range(count))
    assert ids == list(range(count))
    writer.join()
    assert writer.written == len(requests)
    assert server.close()[0] == 0


@pytest.mark.parametrize(
    ("args", "env", "complaint"),
    [
        (["--max-in-flight", "0"], {}, b"--max-in-flight must be at least 1"),
        ([], {"ACTORSTATE_MAX_IN_FLIGHT": "0"}, b"ACTORSTATE_MAX_IN_FLIGHT must be at least 1"),
        (["--stop-grace", "-1"], {}, b"--stop-grace must be a number of seconds, 0 or more"),
        ([], {"ACTORSTATE_STOP_GRACE": "nan"}, b"ACTORSTATE_STOP_GRACE must be a number of seconds"),
    ],
)
def test_flow_settings_are_checked_before_serving(
    args: list[str], env: dict[str, str], complaint: bytes
) -> None:
    """A bad --max-in-flight or --stop-grace (flag or environment) is refused before serving, naming it."""
    done = subprocess.run(
        [sys.executable, "-m", "actorstate", "serve", "--durability", "memory", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert complaint in done.stderr
    assert done.stdout == b""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_answers_every_request_already_read(
    tmp_path: Path, signum: signal.Signals, backend: str
) -> None:
    """A signal under load stops reading; every request read is answered and stored, none other; exit 0."""
    db = tmp_path / "stop.db"
    server = RawClient("--db", str(db), "--backend", backend)
    server.initialize()
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    increment = {"name": "increment_counter", "arguments": {"sessionId": session_id}}
    requests = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": f"inc-{i}", "method": "tools/call", "params": increment}).encode()
        + b"\n"
        for i in range(3000)
    )
    writer = _PipeWriter(server, requests)
    replies = [server.receive()]  # the server is working through the requests
    server.process.send_signal(signum)
    while True:
        try:
            replies.append(server.receive())
        except EOFError:
            break
    assert server.process.wait(timeout=60) == 0
    writer.join()
    read = requests[: writer.consumed()].count(b"\n")
    server.kill()

    assert all("result" in reply for reply in replies), [reply for reply in replies if "result" not in reply][
        :3
    ]
    assert len(replies) == read
    assert len({reply["id"] for reply in replies}) == read
    values = sorted(reply["result"]["structuredContent"]["value"] for reply in replies)
    assert values == list(range(1, read + 1))
    restarted = RawClient("--db", str(db))
    restarted.initialize()
    stored = restarted.call("get_context", sessionId=session_id)["structuredContent"]["metadata"]
    assert stored == {"counter": read}
    assert restarted.close()[0] == 0


def test_a_stop_while_the_client_reads_nothing_ends_after_the_grace() -> None:
    """SIGTERM with replies piling up unread: the server waits --stop-grace for answers, then exits 0."""
    server = RawClient("--durability", "memory", "--max-in-flight", "8", "--stop-grace", "1")
    server.initialize()
    writer = _PipeWriter(server, _tools_list_flood(4000))
    writer.wait_until_stalled()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    writer.join()
    server.kill()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_second_stop_signal_stops_at_once_and_still_commits(tmp_path: Path, backend: str) -> None:
    """Two signals: serving stops without waiting; the exit is clean and every answered write is stored."""
    db = tmp_path / "twice.db"
    server = RawClient("--db", str(db), "--backend", backend)
    server.initialize()
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    increment = {"name": "increment_counter", "arguments": {"sessionId": session_id}}
    writer = _PipeWriter(
        server,
        b"".join(
            json.dumps(
                {"jsonrpc": "2.0", "id": f"inc-{i}", "method": "tools/call", "params": increment}
            ).encode()
            + b"\n"
            for i in range(3000)
        ),
    )
    replies = [server.receive()]
    # Two different signals: two of one kind sent together may arrive as one.
    server.process.send_signal(signal.SIGTERM)
    server.process.send_signal(signal.SIGINT)
    while True:
        try:
            replies.append(server.receive())
        except EOFError:
            break
    assert server.process.wait(timeout=60) == 0
    assert server.process.stderr is not None
    assert "a second stop signal: stopping at once" in server.process.stderr.read().decode()
    writer.join()
    server.kill()

    values = [reply["result"]["structuredContent"]["value"] for reply in replies if "result" in reply]
    restarted = RawClient("--db", str(db))
    restarted.initialize()
    stored = restarted.call("get_context", sessionId=session_id)["structuredContent"]["metadata"]["counter"]
    assert len(values) <= stored
    assert max(values) <= stored
    assert restarted.close()[0] == 0
