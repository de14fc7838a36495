"""The handshake fast path speaks the same protocol as the SDK's server, byte for byte.

Two servers in this process, one with the fast paths and one without
(``fast_path=False``: every message through the SDK), read the same stream of
messages from a file and write their replies to one: the handshake in every
form (every protocol version, unsupported and odd ones, missing and extra
fields, clientInfo and capabilities of every shape), ``tools/list`` with and
without a cursor, ``ping``, requests only the SDK answers (which the SDK's
server must answer as an initialized session after the replay) and bad
lines. The replies must be the same bytes, whatever order they came in.
"""

from __future__ import annotations

import json
import logging
import tempfile
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from actorstate import open_state
from actorstate.transport.handshake import HANDSHAKE_VERSIONS, REPLAYED_INITIALIZE_ID
from actorstate.transport.serve import serve_stdio

from .test_tool_metadata import EXPECTED

UNKNOWN_SESSION = "00000000-0000-4000-8000-000000000000"


def _serve(lines: list[bytes], *, fast_path: bool, backend: str) -> list[bytes]:
    """Serve ``lines`` (read from a file, to its end) with one server; its reply lines."""
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout:
        stdin.write(b"".join(line + b"\n" for line in lines))
        stdin.seek(0)

        async def main() -> None:
            async with open_state(None, durability="memory") as state:
                await serve_stdio(state, stdin_fd=stdin.fileno(), stdout_fd=stdout.fileno(), fast_path=fast_path)

        anyio.run(main, backend=backend)
        stdout.seek(0)
        return stdout.read().splitlines()


def _assert_same_replies(lines: list[bytes], backend: str, caplog: pytest.LogCaptureFixture) -> list[bytes]:
    caplog.clear()
    fast = _serve(lines, fast_path=True, backend=backend)
    sdk = _serve(lines, fast_path=False, backend=backend)
    assert sorted(fast) == sorted(sdk), lines
    warned = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not warned, [record.getMessage() for record in warned]
    return fast


def _line(message: Any) -> bytes:
    return json.dumps(message).encode()


def _request(request_id: Any, method: str, params: Any = None, *, with_params: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if with_params:
        message["params"] = params
    return message


def _initialize(request_id: Any, version: Any = "2025-11-25", **changes: Any) -> dict[str, Any]:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "client", "version": "1"}}
    params.update(changes)
    return _request(request_id, "initialize", params)


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
ODD_VALUES = st.sampled_from([None, 5, 1.5, True, "", "x", [], ["a"], {}, {"k": "v"}])

versions = st.sampled_from([*HANDSHAKE_PROTOCOL_VERSIONS, "2026-07-28", "1999-01-01", "", "2025-11-25 "]) | ODD_VALUES
PLAIN_CAPABILITIES = st.fixed_dictionaries(
    {},
    optional={
        "roots": st.fixed_dictionaries({}, optional={"listChanged": st.booleans()}),
        "sampling": st.just({}),
        "elicitation": st.just({}),
    },
)


@st.composite
def initialize_params(draw: st.DrawFn) -> Any:
    """Mostly initialize params in the plain form, often with one field odd, missing or extra."""
    info: dict[str, Any] = {"name": draw(st.text(max_size=8)), "version": draw(st.text(max_size=5))}
    if draw(st.booleans()):
        info["title"] = draw(st.text(max_size=5))
    params: dict[str, Any] = {
        "protocolVersion": draw(versions),
        "capabilities": draw(PLAIN_CAPABILITIES),
        "clientInfo": info,
    }
    change = draw(st.integers(0, 12))
    if change == 0:
        del params[draw(st.sampled_from(sorted(params)))]
    elif change == 1:
        params[draw(st.sampled_from(["_meta", "extra", "protocolversion"]))] = draw(ODD_VALUES)
    elif change == 2:
        params[draw(st.sampled_from(sorted(params)))] = draw(ODD_VALUES)
    elif change == 3:
        field = draw(st.sampled_from(["roots", "sampling", "elicitation", "experimental", "tasks", "other"]))
        params["capabilities"][field] = draw(ODD_VALUES | st.just({"x": {}}))
    elif change == 4:
        params["capabilities"]["roots"] = {"listChanged": draw(ODD_VALUES)}
    elif change == 5:
        field = draw(st.sampled_from(["name", "version", "title", "websiteUrl", "description", "icons"]))
        info[field] = draw(ODD_VALUES | st.text(max_size=3))
    elif change == 6:
        del info[draw(st.sampled_from(sorted(info)))]
    elif change == 7:
        return draw(ODD_VALUES)
    return params


@st.composite
def messages(draw: st.DrawFn, request_id: int) -> bytes:
    """One line of a stream: a handshake message, a listing, a ping, a request only the SDK answers, or junk."""
    rid: Any = draw(st.sampled_from([request_id, f"r{request_id}"]))
    kind = draw(st.integers(0, 13))
    if kind == 0:
        return _line(_request(rid, "initialize", draw(initialize_params())))
    if kind == 1:
        return _line(INITIALIZED)
    if kind == 2:
        return _line({**INITIALIZED, "params": draw(st.just({}) | ODD_VALUES)})
    if kind == 3:
        return _line(_request(rid, "tools/list", with_params=False))
    if kind == 4:
        cursor = draw(st.text(max_size=5) | ODD_VALUES)
        return _line(_request(rid, "tools/list", draw(st.just({"cursor": cursor}) | st.just({}) | ODD_VALUES)))
    if kind == 5:
        return _line(_request(rid, "ping", with_params=False))
    if kind == 6:
        return _line(_request(rid, "ping", draw(st.just({}) | st.just({"_meta": {}}) | ODD_VALUES)))
    if kind == 7:
        method = draw(st.sampled_from(["resources/list", "resources/templates/list", "prompts/list", "nope"]))
        return _line(_request(rid, method, with_params=False))
    if kind == 8:
        uri = draw(st.sampled_from(["actorstate://nothing", f"session://{UNKNOWN_SESSION}"]))
        return _line(_request(rid, "resources/read", {"uri": uri}))
    if kind == 9:
        return _line(_request(rid, "logging/setLevel", {"level": draw(st.sampled_from(["debug", "loud"]))}))
    if kind == 10:
        arguments = {"sessionId": UNKNOWN_SESSION}
        return _line(_request(rid, "tools/call", {"name": "get_context", "arguments": arguments}))
    if kind == 11:
        return _line({"jsonrpc": "2.0", "id": draw(st.sampled_from([True, None, 1.5])), "method": "ping"})
    if kind == 12:
        return draw(st.sampled_from([b"not json", b"[]", b'{"jsonrpc":"2.0"}', b'{"jsonrpc":"1.0","id":3}']))
    return _line({**_request(rid, draw(st.sampled_from(["ping", "tools/list"]))), "extra": 1})


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """A connection's input: usually an initialize first, then anything."""
    lines = []
    if draw(st.integers(0, 4)):
        lines.append(_line(_request(0, "initialize", draw(initialize_params()))))
        if draw(st.integers(0, 3)):
            lines.append(_line(INITIALIZED))
    for number in range(draw(st.integers(0, 6))):
        lines.append(draw(messages(number + 1)))
    return lines


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_handshake_streams_get_the_sdks_replies(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """Any stream of handshake, listing and other messages gets the very bytes the SDK's server sends."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(streams())
    # The SDK answers requests after a failed initialize, once a bare notifications/initialized came.
    @example([_line(_initialize(0, 5)), _line(INITIALIZED), _line(_request(1, "tools/list"))])
    def same_replies(lines: list[bytes]) -> None:
        _assert_same_replies(lines, backend, caplog)

    same_replies()


@pytest.mark.parametrize(
    "version", [*HANDSHAKE_PROTOCOL_VERSIONS, "2026-07-28", "1999-01-01", "", "2025-11-25 ", "latest"]
)
def test_the_whole_handshake_at_each_version(version: str, caplog: pytest.LogCaptureFixture) -> None:
    """At every version, supported or not: initialize, tools/list (with and without a cursor), ping,
    a tools/call and the SDK's own requests after the replay, all as the SDK answers them."""
    lines = [
        _line(_initialize(1, version, clientInfo={"name": "c", "version": "2", "title": "C"})),
        _line(INITIALIZED),
        _line(_request(2, "tools/list", with_params=False)),
        _line(_request(3, "tools/list", {"cursor": "next"})),
        _line(_request(4, "ping", with_params=False)),
        _line(_request(5, "tools/call", {"name": "get_context", "arguments": {"sessionId": UNKNOWN_SESSION}})),
        _line(_request(6, "resources/list", {})),
        _line(_request(7, "logging/setLevel", {"level": "debug"})),
        _line(_request(8, "nope", {})),
        _line(_request(9, "ping", {})),
    ]
    replies = [json.loads(line) for line in _assert_same_replies(lines, "asyncio", caplog)]
    by_id = {reply["id"]: reply for reply in replies}
    assert sorted(by_id) == list(range(1, 10))
    negotiated = version if version in HANDSHAKE_PROTOCOL_VERSIONS else HANDSHAKE_PROTOCOL_VERSIONS[-1]
    assert by_id[1]["result"]["protocolVersion"] == negotiated
    assert len(by_id[2]["result"]["tools"]) == 9
    # Both paths list the titles and annotations (the same bytes: neither path left them out).
    listed = {tool["name"]: _listed_metadata(tool) for tool in by_id[2]["result"]["tools"]}
    assert listed == EXPECTED
    assert by_id[6]["result"]["resources"]  # the SDK's server answers as an initialized session
    assert by_id[8]["error"]["code"] == -32601
    assert REPLAYED_INITIALIZE_ID.encode() not in b"".join(json.dumps(reply).encode() for reply in replies)


def _listed_metadata(tool: dict[str, Any]) -> tuple[str, dict[str, bool]]:
    """A listed tool's title and hints, as JSON on the wire; its annotations' title is its title."""
    annotations = dict(tool["annotations"])
    assert annotations.pop("title") == tool["title"], tool["name"]
    return tool["title"], annotations


def test_the_handshake_versions_are_the_sdks() -> None:
    """The fast path negotiates over the SDK's handshake versions, newest last, as the SDK does."""
    assert HANDSHAKE_VERSIONS == HANDSHAKE_PROTOCOL_VERSIONS
