"""Bad input on the wire: each gets an error reply that names the problem, and the server keeps serving."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from .raw_client import INITIALIZE_REQUEST, RawClient

if TYPE_CHECKING:
    from pathlib import Path


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _memory_server() -> RawClient:
    client = RawClient("--durability", "memory")
    client.initialize()
    return client


def _still_serving(server: RawClient) -> None:
    assert server.request("ping")["result"] == {}
    assert server.close()[0] == 0


def test_deeply_nested_lines_get_an_error_and_the_server_keeps_serving() -> None:
    """Nesting at any depth gets an error reply; a reply already due is not lost, and serving goes on."""
    server = RawClient("--durability", "memory")
    # The initialize just before the deep line is answered too.
    server.send_raw(_line(INITIALIZE_REQUEST) + b"[" * 1000 + b"]" * 1000 + b"\n")
    replies = {reply["id"]: reply for reply in (server.receive(), server.receive())}
    assert "result" in replies[1]
    reply = replies[None]
    assert reply["error"]["code"] in (-32700, -32600)
    assert "nested too deeply" in reply["error"]["message"]
    server.send("notifications/initialized", notify=True)

    for depth in (300, 5000, 100_000):
        server.send_raw(
            b'{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":%s%s}}\n' % (b"[" * depth, b"]" * depth)
        )
        reply = server.receive()
        assert "nested too deeply" in reply["error"]["message"], reply
        if reply["id"] == 7:  # read far enough to know the request: its params are at fault
            assert reply["error"]["code"] == -32602
        else:
            assert reply["error"]["code"] in (-32700, -32600)
    # A notification nested deeply inside is not answered by the server, but must not stop it either.
    server.send_raw(
        b'{"jsonrpc":"2.0","method":"notifications/x","params":{"id":%s%s}}\n' % (b"[" * 150, b"]" * 150)
    )
    _still_serving(server)


def test_refused_lines_get_the_precise_code_and_name_their_problem() -> None:
    """A lone surrogate in an argument and array params are invalid params of that request, said so."""
    server = _memory_server()
    server.send_raw(
        b'{"jsonrpc":"2.0","id":8,"method":"tools/call",'
        b'"params":{"name":"increment_counter","arguments":{"sessionId":"\\ud800"}}}\n'
    )
    reply = server.receive()
    assert reply["id"] == 8
    assert reply["error"]["code"] == -32602
    assert "text that is not valid Unicode" in reply["error"]["message"]

    server.send_raw(b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":["increment_counter"]}\n')
    reply = server.receive()
    assert (reply["id"], reply["error"]["code"]) == (9, -32602)
    assert "params must be an object" in reply["error"]["message"]

    server.send_raw(b'{"jsonrpc":"1.0","id":10,"method":"ping"}\n')
    reply = server.receive()
    assert (reply["id"], reply["error"]["code"]) == (10, -32600)
    assert '"jsonrpc" must be "2.0"' in reply["error"]["message"]

    server.send_raw(b'[{"jsonrpc":"2.0","id":11,"method":"ping"}]\n')
    reply = server.receive()
    assert (reply["id"], reply["error"]["code"]) == (None, -32600)
    assert "one JSON-RPC message" in reply["error"]["message"]

    server.send_raw(b'{"jsonrpc":"2.0","id":12,"method":"ping","params":{"text":"\xff"}}\n')
    reply = server.receive()
    assert (reply["id"], reply["error"]["code"]) == (None, -32700)
    assert "not valid UTF-8" in reply["error"]["message"]
    _still_serving(server)


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_a_line_starting_with_a_byte_order_mark_is_refused_naming_it(fast_path: str) -> None:
    """A client writing UTF-8 with a byte order mark (as some Windows tools do) sends it before its
    first line, the initialize: the reply names the mark, not the message behind it, and the
    initialize sent again without it is served."""
    server = RawClient("--durability", "memory", "--fast-path", fast_path)
    for line in (_line(INITIALIZE_REQUEST), b'{"jsonrpc":"2.0","id":3,"method":"ping"}\n'):
        server.send_raw(b"\xef\xbb\xbf" + line)
        reply = server.receive()
        assert (reply["id"], reply["error"]["code"]) == (None, -32700)
        assert "byte order mark" in reply["error"]["message"]
    server.initialize()
    _still_serving(server)


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_a_notification_with_wrong_params_gets_no_reply(fast_path: str) -> None:
    """Array params are JSON-RPC's but not MCP's: a notification with them is dropped (and logged),
    with no reply, since JSON-RPC gives notifications none; the next request is answered first."""
    server = RawClient("--durability", "memory", "--fast-path", fast_path)
    server.initialize()
    server.send_raw(b'{"jsonrpc":"2.0","method":"notifications/foo","params":[1,2]}\n')
    server.send_raw(b'{"jsonrpc":"2.0","method":"notifications/initialized","params":[]}\n')
    server.send_raw(b'{"jsonrpc":"2.0","id":"after","method":"ping"}\n')
    assert server.receive() == {"jsonrpc": "2.0", "id": "after", "result": {}}
    # Params that are no structured value are not JSON-RPC: -32600 without an id, as JSON-RPC answers.
    server.send_raw(b'{"jsonrpc":"2.0","method":"notifications/foo","params":"x"}\n')
    reply = server.receive()
    assert (reply["id"], reply["error"]["code"]) == (None, -32600)
    # An id of a type JSON-RPC refuses makes no notification: refused, with array params too.
    server.send_raw(b'{"jsonrpc":"2.0","id":null,"method":"ping","params":[1]}\n')
    reply = server.receive()
    assert (reply["id"], reply["error"]["code"]) == (None, -32600)
    _still_serving(server)


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_a_cancellation_nested_too_deeply_is_refused_by_either_path(fast_path: str) -> None:
    """A cancellation nested past the SDK parser's depth is refused as the SDK refuses it, whether
    or not the fast path serves: its call is not cancelled by a message the SDK cannot read."""
    server = (
        _memory_server() if fast_path == "on" else RawClient("--durability", "memory", "--fast-path", "off")
    )
    if fast_path == "off":
        server.initialize()
    deep = b"[" * 250 + b"]" * 250
    server.send_raw(
        b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":%s}}\n' % deep
    )
    reply = server.receive()
    assert (reply["id"], reply["error"]["code"]) == (None, -32600)
    assert "nested too deeply" in reply["error"]["message"]
    _still_serving(server)


def test_malformed_cancellations_are_ignored() -> None:
    """A cancellation whose requestId is not a request id (or names nothing in flight) changes nothing."""
    server = _memory_server()
    for request_id in (
        '{"x":1}',
        "[1]",
        '"\\u00b2"',
        '"-\\u0661"',
        "true",
        "null",
        "1.5",
        '"' + "7" * 5000 + '"',
    ):
        server.send_raw(
            b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":%s}}\n'
            % request_id.encode()
        )
    server.send_raw(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"x":[]}}\n')
    server.send_raw(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":"nope"}\n')
    server.receive()  # params that are not an object are refused like any malformed line
    _still_serving(server)


def test_a_request_reusing_an_id_in_flight_is_refused_and_not_run(tmp_path: Path) -> None:
    """Duplicate ids in flight: each duplicate is refused (-32600 naming the id) and not run; all get a reply."""
    db = tmp_path / "dup.db"
    server = RawClient("--db", str(db))
    server.initialize()
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    increment = {"name": "increment_counter", "arguments": {"sessionId": session_id}}
    server.send_raw(
        b"".join(
            _line({"jsonrpc": "2.0", "id": "dup", "method": "tools/call", "params": increment})
            for _ in range(200)
        )
    )
    assert server.process.stdin is not None
    server.process.stdin.close()
    replies = []
    while True:
        try:
            replies.append(server.receive())
        except EOFError:
            break
    assert server.process.wait(timeout=30) == 0
    server.kill()
    assert len(replies) == 200
    answered = [reply for reply in replies if "result" in reply]
    refused = [reply for reply in replies if "error" in reply]
    assert len(answered) + len(refused) == 200
    for reply in refused:
        assert reply["id"] == "dup"
        assert reply["error"]["code"] == -32600
        assert "'dup' is already in flight" in reply["error"]["message"]
    assert sorted(reply["result"]["structuredContent"]["value"] for reply in answered) == list(
        range(1, len(answered) + 1)
    )

    restarted = RawClient("--db", str(db))
    restarted.initialize()
    stored = restarted.call("get_context", sessionId=session_id)["structuredContent"]["metadata"]
    assert stored == {"counter": len(answered)}
    _still_serving(restarted)


def test_calls_before_initialize_are_told_to_initialize_first() -> None:
    """A request before initialize gets -32600 saying to send initialize first; ping works; then all serve."""
    server = RawClient("--durability", "memory")
    for method, params in (
        ("tools/call", {"name": "create_session", "arguments": {}}),
        ("tools/list", None),
        ("resources/read", {"uri": "actorstate://stats"}),
    ):
        reply = server.request(method, params)
        assert reply["error"]["code"] == -32600, reply
        assert (
            reply["error"]["message"]
            == "Invalid Request: the server is not initialized yet: send initialize first"
        )
    assert server.request("ping")["result"] == {}
    server.initialize()
    assert server.call("create_session")["structuredContent"]["sessionId"]
    _still_serving(server)


def test_errors_quote_caller_input_cut_short() -> None:
    """Tool names, argument names, session ids, URIs, methods and ids in errors are cut to a short quote."""
    server = _memory_server()
    huge = "x" * 100_000

    def tool_error(name: str, arguments: dict[str, Any]) -> str:
        result = server.request("tools/call", {"name": name, "arguments": arguments})["result"]
        assert result["isError"], result
        text: str = result["content"][0]["text"]
        return text

    texts = [
        tool_error(huge, {}),
        tool_error("get_context", {"sessionId": huge}),
        tool_error("get_context", {f"{i}{huge[:1000]}": 1 for i in range(100)}),
    ]
    assert texts[0].startswith("unknown tool 'xxx")
    assert "session id must be a UUID, not 'xxx" in texts[1]
    assert texts[2].startswith("unknown argument(s) ")
    errors = [
        server.request("resources/read", {"uri": "zz://" + huge})["error"],
        server.request("resources/read", {"uri": "session://" + huge})["error"],
        server.request(huge)["error"],
    ]
    assert "unknown resource 'zz://xxx" in errors[0]["message"]
    assert "session id must be a UUID" in errors[1]["message"]
    assert errors[2]["code"] == -32601
    for text in [*texts, *(error["message"] + str(error.get("data", "")) for error in errors)]:
        assert len(text) < 300, text[:300]
        assert "..." in text
    _still_serving(server)


def test_malformed_params_are_refused_naming_the_field() -> None:
    """Params of the wrong shape get -32602 naming the field and what it should be."""
    server = _memory_server()
    reply = server.request("tools/call", {"name": 5})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["message"] == "Invalid params: params.name: Input should be a valid string"
    reply = server.request("resources/read", {})
    assert reply["error"]["message"] == "Invalid params: params.uri: Field required"
    _still_serving(server)
