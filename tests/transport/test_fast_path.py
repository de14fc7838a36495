"""The tools/call fast path speaks the same protocol as the SDK's server.

Two real servers, one with the fast path and one without (``--fast-path
off``: every request through the SDK), get the same stream of requests,
valid and invalid; their replies must be equal once each server's session ids
and the clock's timestamps are put aside.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from actorstate import Config
from actorstate.transport.fast_path import FAST_PROTOCOL_VERSIONS
from actorstate.transport.tools import build_tools

from .raw_client import INITIALIZE_PARAMS, RawClient

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TOOLS = build_tools(Config())
# server_stats reports the process itself (uptime, RSS): it differs between any two servers.
COMPARED_TOOLS = sorted(name for name in TOOLS if name != "server_stats")
# A listing cursor encodes a creation time and an id, both different on each server.
_CURSOR = re.compile(r'(nextCursor\\?"\s*:\s*\\?")[^"\\]+')
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")


def bind_sessions(value: Any, sessions: list[tuple[str, str]], index: int) -> Any:
    """Placeholders ``@S<n>`` (``@s<n>``: upper case) in ``value`` become side ``index``'s id of
    session n (``sessions`` holds each session's id on both sides, in creation order)."""
    if isinstance(value, str) and value.startswith("@") and value[2:].isdigit():
        number = int(value[2:])
        if number < len(sessions):
            real = sessions[number][index]
            return real.upper() if value[1] == "s" else real
    if isinstance(value, dict):
        return {key: bind_sessions(item, sessions, index) for key, item in value.items()}
    if isinstance(value, list):
        return [bind_sessions(item, sessions, index) for item in value]
    if isinstance(value, tuple):
        return tuple(bind_sessions(item, sessions, index) for item in value)
    return value


class Pair:
    """The two servers, and the sessions both have, in the order they were made."""

    def __init__(
        self, version: str = INITIALIZE_PARAMS["protocolVersion"], databases: tuple[Path, Path] | None = None
    ) -> None:
        """``databases``: the fast and the SDK server's files, in commit mode (default: memory only)."""
        fast, sdk = (
            (("--db", str(path)) for path in databases) if databases else [("--durability", "memory")] * 2
        )
        self.fast = RawClient(*fast)
        self.sdk = RawClient(*sdk, "--fast-path", "off")
        for server in (self.fast, self.sdk):
            reply = server.request("initialize", {**INITIALIZE_PARAMS, "protocolVersion": version})
            assert reply["result"]["protocolVersion"] == version, reply
            server.send("notifications/initialized", notify=True)
        self.sessions: list[tuple[str, str]] = []  # (fast's id, sdk's id)
        self.calls_sent = 0
        for _ in range(3):
            self.exchange(_call(len(self.sessions) + 1000, "create_session", {}))

    def exchange(self, request: dict[str, Any]) -> tuple[Any, Any]:
        """Send ``request`` to both (placeholders made each one's own ids); both replies, normalised."""
        lines = [json.dumps(self._bind(request, index)).encode() + b"\n" for index in (0, 1)]
        return self.exchange_lines(lines[0], lines[1], calls=request.get("method") == "tools/call")

    def exchange_lines(self, fast_line: bytes, sdk_line: bytes, *, calls: bool = True) -> tuple[Any, Any]:
        """Send each server its line; both replies, normalised (``calls``: each is a tools/call)."""
        replies = []
        for server, line in ((self.fast, fast_line), (self.sdk, sdk_line)):
            server.send_raw(line)
            try:
                replies.append(server.receive(timeout=10))
            except TimeoutError:
                replies.append(None)  # no reply at all: the other server must not answer either
        if calls:
            self.calls_sent += 1
        made = [_created(reply) for reply in replies]
        if made[0] and made[1]:
            self.sessions.append((made[0], made[1]))
        return self._normalise(replies[0], 0), self._normalise(replies[1], 1)

    def _bind(self, value: Any, index: int) -> Any:
        return bind_sessions(value, self.sessions, index)

    def _normalise(self, reply: Any, index: int) -> Any:
        text = json.dumps(reply, sort_keys=True)
        for number, ids in enumerate(self.sessions):
            text = text.replace(ids[index], f"<session {number}>")
            text = text.replace(ids[index].upper(), f"<SESSION {number}>")
        return json.loads(_CURSOR.sub(r"\1<cursor>", _TIMESTAMP.sub("<time>", text)))

    def close(self) -> None:
        for server in (self.fast, self.sdk):
            code, stderr = server.close()
            assert code == 0, stderr


def _call(request_id: Any, name: Any, arguments: Any, **params: Any) -> dict[str, Any]:
    body = {"name": name, "arguments": arguments, **params}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body}


def _valid_writes_and_reads(session: str) -> list[dict[str, Any]]:
    """A call of every tool on ``session`` that succeeds, keyed writes and their retries among them."""
    writes = [
        ("add_context", {"key": "topic", "value": {"nested": [1, 2.5, "x"]}}),
        ("record_action", {"action": "search", "details": "q=refund"}),
        ("set_preference", {"key": "lang", "value": "fr"}),
        ("increment_counter", {"key": "hits", "by": 3}),
        ("increment_counter", {"by": -1, "requestId": "once"}),
        ("increment_counter", {"by": -1, "requestId": "once"}),  # the retry: the first outcome
        ("set_preference", {"key": "lang", "value": "de", "requestId": "pref"}),
        ("set_preference", {"key": "lang", "value": "de", "requestId": "pref"}),
        ("get_context", {"maxTurns": 3}),
        ("end_session", {}),
    ]
    return [
        _call(f"valid-{number}", name, {"sessionId": session, **arguments})
        for number, (name, arguments) in enumerate(writes)
    ]


def _created(reply: Any) -> str | None:
    try:
        session_id = reply["result"]["structuredContent"]["sessionId"]
    except (KeyError, TypeError):
        return None
    return session_id if isinstance(reply["result"]["structuredContent"].get("message"), str) else None


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    servers = Pair()
    yield servers
    servers.close()


# -- what the stream is made of ----------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: orjson refuses those, and the SDK path answers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
huge_values = st.sampled_from(["x" * 70_000, ["y" * 1000] * 80, {"k": "z" * 65_536}])
session_refs = st.integers(0, 8).flatmap(lambda n: st.sampled_from([f"@S{n}", f"@s{n}"]))


def argument_value(name: str) -> st.SearchStrategy[Any]:
    if name == "sessionId":
        return session_refs | json_values
    if name in ("maxTurns", "by", "limit"):
        return st.integers(-3, 60) | st.floats(-2, 60) | json_values
    if name in ("key", "action", "clientId", "details"):
        return st.text(max_size=20) | st.sampled_from(["counter", "lang", ""]) | json_values
    return json_values | huge_values


@st.composite
def tool_arguments(draw: st.DrawFn, tool: str) -> Any:
    """Mostly the tool's own arguments, each of any type, sometimes missing or with extras."""
    properties = TOOLS[tool].input_schema.get("properties", {}) if tool in TOOLS else {"sessionId": {}}
    arguments = {name: draw(argument_value(name)) for name in properties if draw(st.integers(0, 9)) < 8}
    if draw(st.integers(0, 9)) == 0:
        arguments[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return arguments


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    tool = draw(st.sampled_from(COMPARED_TOOLS) | st.text(max_size=10))
    request_id: Any = draw(st.integers(-(2**40), 2**40) | st.text(max_size=8))
    shape = draw(st.integers(0, 19))
    if shape == 0:
        request_id = draw(st.sampled_from([True, 1.5, None, [1], 2**70]))
    if shape == 1:
        return _call(request_id, tool, draw(json_values))  # arguments of any type
    if shape == 2:
        return _call(request_id, draw(json_values), {})  # a name that may not be a string
    if shape == 3:
        request = _call(request_id, tool, draw(tool_arguments(tool)))
        del request["params"]["arguments"]
        return request
    if shape == 4:
        return _call(request_id, tool, draw(tool_arguments(tool)), _meta={"progressToken": 1})
    if shape == 5:
        return _call(request_id, tool, draw(tool_arguments(tool)), extra=draw(json_values))
    if shape == 6:
        return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": draw(json_values)}
    return _call(request_id, tool, draw(tool_arguments(tool)))


def _assert_same_replies(pair: Pair, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(requests(), min_size=1, max_size=6))
    # Found: an integer below -2**63 reads as a float in orjson, as an int in the SDK.
    @example([_call(0, "end_session", {"sessionId": -(2**63) - 1})])
    # Found: a listing's next cursor encodes an id and a time of each server's own.
    @example([_call(0, "list_sessions", {"limit": 1})])
    def same_replies(stream: list[dict[str, Any]]) -> None:
        for request in stream:
            fast, sdk = pair.exchange(request)
            assert fast == sdk, request

    same_replies()


def test_fast_path_replies_equal_the_sdk_paths(pair: Pair) -> None:
    """Every request, valid or not, gets the same reply from the fast path as from the SDK."""
    _assert_same_replies(pair, examples=600)
    # The fast path answered calls, and only its server has it.
    fast_stats = pair.fast.call("server_stats")["structuredContent"]
    sdk_stats = pair.sdk.call("server_stats")["structuredContent"]
    assert 0 < fast_stats["fast_path_calls"] <= pair.calls_sent
    assert "fast_path_calls" not in sdk_stats


# Around the fast path's own limit on a value's depth (64), the SDK's parser's (about 200 levels
# of the whole message) and orjson's (1024).
NESTING_DEPTHS = [63, 64, 65, 150, 190, *range(195, 201), 250, 600, 1000, *range(1019, 1023), 1100]


@pytest.mark.parametrize("depth", NESTING_DEPTHS)
def test_deeply_nested_arguments_get_the_sdk_paths_replies(pair: Pair, depth: int) -> None:
    """An argument nested ``depth`` lists deep, where a string is wanted and where any value is,
    gets the same reply from both servers, however deep (hypothesis's values stay shallow).
    The lines are written by hand: Python's json module cannot write the deepest."""
    nested = b"[" * depth + b'"x"' + b"]" * depth
    line = b'{"jsonrpc":"2.0","id":"deep-%d","method":"tools/call","params":{"name":"create_session",' % depth
    line += b'"arguments":{"clientId":' + nested + b"}}}\n"
    fast, sdk = pair.exchange_lines(line, line)
    assert fast == sdk, (depth, fast, sdk)
    fast_line, sdk_line = (
        b'{"jsonrpc":"2.0","id":"deeper-%d","method":"tools/call","params":{"name":"set_preference",' % depth
        + b'"arguments":{"sessionId":"%s","key":"k","value":' % session.encode()
        + nested
        + b"}}}\n"
        for session in pair.sessions[0]
    )
    fast, sdk = pair.exchange_lines(fast_line, sdk_line)
    assert fast == sdk, (depth, fast, sdk)


@pytest.mark.parametrize("version", sorted(FAST_PROTOCOL_VERSIONS - {INITIALIZE_PARAMS["protocolVersion"]}))
def test_fast_path_replies_equal_at_every_handshake_version(version: str) -> None:
    """At each other protocol version the fast path serves, its replies equal the SDK's too."""
    pair = Pair(version)
    try:
        _assert_same_replies(pair, examples=120)
        assert pair.fast.call("server_stats")["structuredContent"]["fast_path_calls"] > 0
    finally:
        pair.close()


def test_fast_path_replies_equal_the_sdk_paths_in_commit_mode(tmp_path: Path) -> None:
    """In commit mode too, where the fast path answers a write once its commit is over (its
    reply held, with no task waiting for it), every reply equals the SDK path's."""
    pair = Pair(databases=(tmp_path / "fast.db", tmp_path / "sdk.db"))
    try:
        for request in _valid_writes_and_reads("@S0"):
            fast, sdk = pair.exchange(request)
            assert fast == sdk, request
            assert "error" not in fast, fast
            assert not fast["result"]["isError"], fast
        _assert_same_replies(pair, examples=150)
        assert pair.fast.call("server_stats")["structuredContent"]["fast_path_calls"] > 0
    finally:
        pair.close()


def test_well_formed_calls_take_the_fast_path(pair: Pair) -> None:
    """A valid call on an initialized connection is answered by the fast path, one count per call."""
    pair.exchange(_call("fresh", "create_session", {}))
    session = f"@S{len(pair.sessions) - 1}"  # one no other test ended
    before = pair.fast.call("server_stats")["structuredContent"]["fast_path_calls"]
    for number in range(20):
        fast, sdk = pair.exchange(
            _call(f"well-{number}", "increment_counter", {"sessionId": session, "by": 2})
        )
        assert fast == sdk
        assert "error" not in fast, fast
        assert not fast["result"]["isError"], fast
        assert fast["result"]["structuredContent"]["value"] == 2 * (number + 1)
    after = pair.fast.call("server_stats")["structuredContent"]["fast_path_calls"]
    assert after - before == 21  # the twenty, and the server_stats call itself


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_cancelled_fast_path_call_is_never_answered(tmp_path: Path, backend: str) -> None:
    """notifications/cancelled stops a fast-path call in flight: no reply, and nothing left waiting.

    The call is held in flight by a write lock on the database; the server is
    given a long stop grace, so an in-flight count left unsettled would hold
    its exit at end of input far past the close below.
    """
    db = tmp_path / "cancel.db"
    server = RawClient("--db", str(db), "--stop-grace", "600", "--backend", backend)
    server.initialize()
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the server's next commit waits for this lock
    held = _call("held", "increment_counter", {"sessionId": session_id})
    server.send_raw(json.dumps(held).encode() + b"\n")
    server.wait_consumed()
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "held"}}
    server.send_raw(json.dumps(cancel).encode() + b"\n")
    server.wait_consumed()
    blocker.execute("COMMIT")
    blocker.close()
    stats = server.call("server_stats")["structuredContent"]
    assert stats["fast_path_calls"] == 3  # create_session, the held call, server_stats
    assert server.process.stdin is not None
    server.process.stdin.close()
    later = []
    while True:
        try:
            later.append(server.receive())
        except EOFError:
            break
    assert later == []  # the held call was never answered
    assert server.process.wait(timeout=60) == 0
    server.kill()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_fast_path_call_in_flight_at_stop_is_answered_connection_closed(
    tmp_path: Path, backend: str
) -> None:
    """A call still running when the server stops gets one reply, "Connection closed", as the SDK's would.

    The call is held in flight by a write lock on the database; end of input
    with a short stop grace stops the server while it waits. The lock is let
    go only after the reply was read, so the call cannot have finished first.
    """
    db = tmp_path / "stop.db"
    server = RawClient("--db", str(db), "--stop-grace", "0.2", "--backend", backend)
    server.initialize()
    session_id = server.call("create_session")["structuredContent"]["sessionId"]
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the server's next commit waits for this lock
    try:
        held = _call("held", "increment_counter", {"sessionId": session_id})
        server.send_raw(json.dumps(held).encode() + b"\n")
        server.wait_consumed()
        assert server.process.stdin is not None
        server.process.stdin.close()
        reply = server.receive()
        assert reply["id"] == "held"
        assert reply["error"]["message"] == "Connection closed"
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    with pytest.raises(EOFError):
        server.receive()  # one reply only
    assert server.process.wait(timeout=60) == 0
    server.kill()
