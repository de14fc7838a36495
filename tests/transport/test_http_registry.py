"""The HTTP connection registry: each limit refuses with its status and a message a person can act
on, counts and releases exchanges, and keeps principals apart. Driven as ASGI with a manual clock."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from actorstate.transport.registry import ConnectionRegistry, RegistryLimits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class HeldApp:
    """An ASGI app that answers 200 once released, so exchanges stay open as long as a test wants."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def exchange(
    registry: ConnectionRegistry, principal: str, method: str = "POST", body_chunks: int = 1
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One request through the registry: its status, headers and JSON body. The request body comes
    in ``body_chunks`` chunks of 1 KiB."""
    sent: list[dict[str, Any]] = []
    chunks = [b"x" * 1024] * body_chunks

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await registry({"type": "http", "principal": principal, "method": method}, receive, send)
    start, body = sent
    headers = {key.decode(): value.decode() for key, value in start["headers"]}
    return start["status"], headers, json.loads(body["body"])


def make(limits: RegistryLimits, app: Any, clock: Clock) -> ConnectionRegistry:
    return ConnectionRegistry(app, limits, lambda scope: scope["principal"], clock)


@pytest.mark.anyio
async def test_in_flight_cap_is_per_principal_and_answers_429() -> None:
    """With two exchanges of alice open at a cap of 2, her third gets 429 with Retry-After and a
    message naming the limit; bob is not affected; once hers finish, she is admitted again."""
    app, clock = HeldApp(), Clock()
    registry = make(RegistryLimits(max_in_flight=2), app, clock)
    results: list[int] = []
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(lambda: _record(registry, "alice", results))
        await anyio.wait_all_tasks_blocked()
        assert app.entered == 2
        status, headers, body = await exchange(registry, "alice")
        assert status == 429
        assert headers["retry-after"] == "1"
        assert "2 requests in flight" in body["error"]["message"]
        assert "--max-in-flight-per-client 2" in body["error"]["message"]
        tg.start_soon(lambda: _record(registry, "bob", results))
        await anyio.wait_all_tasks_blocked()
        assert app.entered == 3
        assert registry.stats()["http_open"] == 3
        app.release.set()
    assert results == [200, 200, 200]
    assert registry.stats()["http_open"] == 0
    status, _, _ = await exchange(registry, "alice")
    assert status == 200
    assert registry.stats()["http_refused"] == 1


async def _record(registry: ConnectionRegistry, principal: str, results: list[int]) -> None:
    results.append((await exchange(registry, principal))[0])


@pytest.mark.anyio
async def test_connection_cap_answers_503_for_everyone() -> None:
    """At max_connections exchanges open in all, the next one, whoever sends it, gets 503."""
    app, clock = HeldApp(), Clock()
    registry = make(RegistryLimits(max_connections=1), app, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exchange, registry, "alice")
        await anyio.wait_all_tasks_blocked()
        assert app.entered == 1
        status, headers, body = await exchange(registry, "bob")
        assert status == 503
        assert "--max-connections 1" in body["error"]["message"]
        assert headers["retry-after"] == "1"
        app.release.set()
    assert registry.stats()["http_refused_server_busy"] == 1


@pytest.mark.anyio
async def test_rate_limit_refills_with_time() -> None:
    """A burst of 3 at 2 requests/s: the fourth request at the same instant gets 429 saying when to
    retry; half a second later one more is taken, and only one."""
    app, clock = HeldApp(), Clock()
    app.release.set()
    registry = make(RegistryLimits(rate=2.0, burst=3), app, clock)
    assert [(await exchange(registry, "alice"))[0] for _ in range(3)] == [200, 200, 200]
    status, headers, body = await exchange(registry, "alice")
    assert status == 429
    assert "retry in 0.50 s" in body["error"]["message"]
    assert headers["retry-after"] == "1"
    assert (await exchange(registry, "bob"))[0] == 200  # bob has his own bucket
    clock.now += 0.5
    assert (await exchange(registry, "alice"))[0] == 200
    assert (await exchange(registry, "alice"))[0] == 429


def test_limits_must_be_positive() -> None:
    """A zero or negative limit is refused with the name of the limit."""
    with pytest.raises(ValueError, match="max_in_flight must be a positive number"):
        RegistryLimits(max_in_flight=0)
    with pytest.raises(ValueError, match="rate must be a positive number"):
        RegistryLimits(rate=-1.0)


@pytest.mark.anyio
async def test_event_streams_do_not_take_request_slots_and_delete_is_never_limited() -> None:
    """At a cap of 1 in flight, a client holding an open GET stream can still send a POST; once it
    is out of rate tokens and at its cap, its DELETE (ending its protocol session) still passes."""
    app, clock = HeldApp(), Clock()
    registry = make(RegistryLimits(max_in_flight=1, rate=1.0, burst=2), app, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exchange, registry, "alice", "GET")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(exchange, registry, "alice", "POST")
        await anyio.wait_all_tasks_blocked()
        assert app.entered == 2  # the stream did not take the POST's slot
        status, _, _ = await exchange(registry, "alice", "POST")
        assert status == 429  # the POST holds the one slot (and the bucket is empty)
        tg.start_soon(exchange, registry, "alice", "DELETE")
        await anyio.wait_all_tasks_blocked()
        assert app.entered == 3  # DELETE passed both limits
        app.release.set()


@pytest.mark.anyio
async def test_a_refused_request_body_is_read_so_the_connection_carries_on() -> None:
    """A refusal reads the request's body first (a client that sent one can send its next request
    on the same connection); a body past 1 MiB is not read to its end: the refusal closes the
    connection instead."""
    app, clock = HeldApp(), Clock()
    app.release.set()
    registry = make(RegistryLimits(rate=1.0, burst=1), app, clock)
    await exchange(registry, "alice")
    status, headers, _ = await exchange(registry, "alice", body_chunks=8)
    assert status == 429
    assert "connection" not in headers
    status, headers, _ = await exchange(registry, "alice", body_chunks=2048)
    assert status == 429
    assert headers["connection"] == "close"
