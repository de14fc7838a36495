"""``actorstate serve`` imports the MCP SDK only when a message first needs it.

Each test runs a real server under ``python -X importtime``, which writes a
line to stderr for every module the process imports, and reads that list
once the server has exited.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .raw_client import RawClient

if TYPE_CHECKING:
    from pathlib import Path

# What the SDK brings: none of it is needed to shake hands, list and call tools.
SDK_PACKAGES = {"mcp", "mcp_types", "pydantic", "pydantic_core", "uvicorn", "starlette"}


def _server(tmp_path: Path) -> tuple[RawClient, Path]:
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        server = RawClient("--durability", "memory", python_flags=("-X", "importtime"), stderr=stderr)
    return server, log


def _imported(log: Path) -> set[str]:
    """The modules ``-X importtime`` reported imported."""
    modules = set()
    for line in log.read_text().splitlines():
        if line.startswith("import time:") and not line.endswith("| imported package"):
            modules.add(line.rsplit("|", 1)[1].strip())
    return modules


def _sdk_modules(modules: set[str]) -> set[str]:
    return {
        name
        for name in modules
        if name.partition(".")[0] in SDK_PACKAGES or name.partition(".")[0].startswith("httpx")
    }


def _replies(server: RawClient, count: int) -> dict[Any, dict[str, Any]]:
    replies = [server.receive() for _ in range(count)]
    by_id = {reply["id"]: reply for reply in replies}
    assert len(by_id) == count, replies  # each answered once
    return by_id


def test_handshake_listing_and_calls_do_not_import_the_sdk(tmp_path: Path) -> None:
    """initialize, tools/list, ping, tool calls and late cancellations are answered (or taken)
    without importing the SDK or pydantic."""
    server, log = _server(tmp_path)
    reply = server.initialize()
    assert reply["result"]["serverInfo"]["name"] == "actorstate"
    assert len(server.request("tools/list")["result"]["tools"]) == 9
    session_id = server.call("create_session", clientId="lazy")["structuredContent"]["sessionId"]
    for expected in (1, 2, 3):
        assert server.call("increment_counter", sessionId=session_id)["structuredContent"]["value"] == expected
    assert server.call("get_context", sessionId=session_id)["structuredContent"]["metadata"] == {"counter": 3}
    assert server.request("ping")["result"] == {}
    # A cancellation arriving after its call was answered (a client that gave up late), and one
    # for an id never sent: nothing the SDK could act on, so neither loads it.
    for late in (1, "never-sent"):
        server.send("notifications/cancelled", {"requestId": late}, notify=True)
    assert server.request("ping")["result"] == {}
    code, _ = server.close()
    assert code == 0, log.read_text()
    modules = _imported(log)
    assert "actorstate.transport.handshake" in modules  # the list is the server's
    assert _sdk_modules(modules) == set()


def test_the_first_message_for_the_sdk_loads_it_as_an_initialized_session(tmp_path: Path) -> None:
    """After a handshake on the fast path, resources/list loads the SDK, which answers as an initialized
    session; the lines that came while it loaded are answered in turn, each once, and the fast paths go on."""
    server, log = _server(tmp_path)
    server.initialize()
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    increment = {"name": "increment_counter", "arguments": {"sessionId": session_id}}
    lines: list[dict[str, Any]] = [{"jsonrpc": "2.0", "id": "resources", "method": "resources/list"}]
    lines += [{"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": increment} for n in range(5)]
    lines += [
        {"jsonrpc": "2.0", "id": "ping", "method": "ping"},
        {"jsonrpc": "2.0", "id": "level", "method": "logging/setLevel", "params": {"level": "info"}},
        {"jsonrpc": "2.0", "id": "nope", "method": "nope"},
        {"jsonrpc": "2.0", "id": "read", "method": "resources/read", "params": {"uri": "actorstate://stats"}},
    ]
    server.send_raw(b"".join(json.dumps(line).encode() + b"\n" for line in lines))  # one write
    by_id = _replies(server, len(lines))
    assert by_id["resources"]["result"]["resources"][0]["uri"] == "actorstate://stats"
    assert sorted(by_id[n]["result"]["structuredContent"]["value"] for n in range(5)) == [1, 2, 3, 4, 5]
    assert by_id["ping"]["result"] == {}
    assert by_id["level"]["result"] == {}  # answered by the SDK's server, initialized
    assert by_id["nope"]["error"]["code"] == -32601
    stats = json.loads(by_id["read"]["result"]["contents"][0]["text"])
    assert stats["fast_path_calls"] == 6  # create_session and the five increments
    # The handshake was answered once, on the fast path: the replay's reply never reaches the client.
    assert server.request("tools/list")["result"]["tools"]
    assert server.call("increment_counter", sessionId=session_id)["structuredContent"]["value"] == 6
    code, _ = server.close()
    stderr = log.read_text()
    assert code == 0, stderr
    assert "otherwise than the fast path did" not in stderr
    assert "mcp" in _imported(log)
