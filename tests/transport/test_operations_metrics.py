"""GET /metrics over real HTTP (the server in the test's event loop, trio and asyncio), read with
prometheus_client's own parser: every documented metric is there and moves under a small load
with real faults (a crash and its restart, a quarantine, a conflict, evictions, a full mailbox);
operators only on a server with tokens; principals named only when asked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

import actorstate
from actorstate.clock import ManualClock
from actorstate.model.messages import RecordAction
from actorstate.store.memory import MemoryStore
from actorstate.transport.operations import OperationsSettings
from tests.transport.test_http import TOKENS, call, client
from tests.transport.test_operations import DEADLINE, get, serving

if TYPE_CHECKING:
    from collections.abc import Iterable

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response|EventSource)\.:"
    "pytest.PytestUnraisableExceptionWarning"
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Every metric the README lists (as its samples are named), with the labels of one series of each.
DOCUMENTED: dict[str, dict[str, str]] = {
    "actorstate_ready": {},
    "actorstate_draining": {},
    "actorstate_actors_resident": {},
    "actorstate_actors_resident_limit": {},
    "actorstate_sessions_passivated": {},
    "actorstate_sessions_quarantined": {},
    "actorstate_activations_total": {},
    "actorstate_passivations_total": {},
    "actorstate_evictions_total": {"cause": "memory"},
    "actorstate_expired_sessions_total": {},
    "actorstate_restarts_total": {},
    "actorstate_mailbox_waiting": {},
    "actorstate_mailbox_depth_max": {},
    "actorstate_mailbox_depth_high_water": {},
    "actorstate_calls_total": {"tool": "increment_counter", "outcome": "ok"},
    "actorstate_call_duration_seconds_count": {"tool": "increment_counter"},
    "actorstate_call_duration_seconds_bucket": {"tool": "increment_counter", "le": "+Inf"},
    "actorstate_call_duration_seconds_sum": {"tool": "increment_counter"},
    "actorstate_turn_duration_seconds_count": {},
    "actorstate_turn_duration_seconds_bucket": {"le": "+Inf"},
    "actorstate_commit_duration_seconds_count": {},
    "actorstate_commit_duration_seconds_bucket": {"le": "0.001"},
    "actorstate_commit_batch_sessions_count": {},
    "actorstate_commit_batch_sessions_bucket": {"le": "+Inf"},
    "actorstate_commits_total": {},
    "actorstate_commits_failed_total": {},
    "actorstate_conflicts_total": {},
    "actorstate_fenced_total": {},
    "actorstate_memory_budget_bytes": {},
    "actorstate_memory_accounted_bytes": {},
    "actorstate_memory_rss_bytes": {},
    "actorstate_database_bytes": {},
    "actorstate_http_exchanges_open": {},
    "actorstate_http_requests_in_flight": {},
    "actorstate_http_requests_total": {},
    "actorstate_http_refused_total": {},
    "actorstate_http_principals_active": {},
    "actorstate_http_max_connections": {},
    "process_resident_memory_bytes": {},
}


def parse(text: str) -> Samples:
    """The exposition's samples by (name, labels), through prometheus_client's parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


async def scrape(base: str, token: str | None = "root_token") -> Samples:
    response = await get(base, "/metrics", token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def crash_once_on(action: str) -> Any:
    """A fault hook: a record_action of ``action`` kills the actor's loop before its turn, the
    first time each of its ``details`` is seen (the call waits, and runs after the restart)."""
    seen: set[str] = set()

    def hook(session_id: str, client_id: str | None, message: object) -> None:
        if isinstance(message, RecordAction) and message.action == action and message.details not in seen:
            seen.add(message.details)
            raise RuntimeError(f"injected crash in {session_id}")

    return hook


def moved(before: Samples, after: Samples, names: Iterable[str]) -> list[str]:
    """Of ``names`` (documented sample names, with their labels), those that did not change."""
    return [
        name
        for name in names
        if before.get((name, frozenset(DOCUMENTED[name].items())))
        == after.get((name, frozenset(DOCUMENTED[name].items())))
    ]


@pytest.mark.anyio
async def test_every_metric_is_there_and_moves_under_load() -> None:
    """Scraped before and after a load over MCP (two principals, big values past a small memory
    budget, a crash restarted, a crash quarantined, a conflict, calls queued behind a restart),
    every documented metric is present in both and each the load should move has moved;
    calls waiting in a mailbox show while they wait."""
    clock = ManualClock()
    config = actorstate.Config(max_resident=3, memory_budget_mb=0.25, max_restarts=1, restart_backoff=1.0)
    store = MemoryStore()
    async with (
        actorstate.open_state(store, config=config, clock=clock, fault_hook=crash_once_on("crash")) as state,
        serving(state, verifier=TOKENS) as (base, _, _),
    ):
        assert (await get(base, "/readyz")).status_code == 200
        before = await scrape(base)
        missing = [
            name for name, labels in DOCUMENTED.items() if (name, frozenset(labels.items())) not in before
        ]
        assert missing == []
        async with client(base + "/mcp", "alice_token") as alice, client(base + "/mcp", "bob_token") as bob:
            sessions = []
            for session in (alice, bob, alice, bob, alice):
                _, created = await call(session, "create_session", {})
                sessions.append(created["sessionId"])
                await call(session, "increment_counter", {"sessionId": created["sessionId"]})
            failed, _ = await call(bob, "get_context", {"sessionId": sessions[0]})  # alice's: not found
            assert failed
            big = "x" * 60_000
            for index in (0, 2, 4):
                await call(
                    alice, "set_preference", {"sessionId": sessions[index], "key": "big", "value": big}
                )
            store.faults.conflict_next_write(sessions[0])
            await call(alice, "increment_counter", {"sessionId": sessions[0]})

            crashed = sessions[2]
            results: list[tuple[bool, Any]] = []

            async def run(tool: str, arguments: dict[str, Any]) -> None:
                results.append(await call(alice, tool, {"sessionId": crashed, **arguments}))

            async with anyio.create_task_group() as tg:
                # Crashes the loop; the call waits for the restart, then runs.
                tg.start_soon(run, "record_action", {"action": "crash", "details": "first"})
                with anyio.fail_after(DEADLINE):
                    while True:  # polled: the call arrives over HTTP
                        if state.residence(crashed) == "backoff":
                            break
                        await anyio.sleep(0.01)
                for _ in range(3):
                    tg.start_soon(run, "increment_counter", {})
                with anyio.fail_after(DEADLINE):
                    while True:  # until the four calls wait behind the restart
                        waiting = await scrape(base)
                        if value(waiting, "actorstate_mailbox_waiting") == 4:
                            break
                        await anyio.sleep(0.01)
                assert value(waiting, "actorstate_mailbox_depth_max") == 4
                clock.advance(2.0)  # past the restart backoff
            assert [failed for failed, _ in results] == [False] * 4
            # A second crash within the restart window: quarantined.
            failed, text = await call(alice, "record_action", {"sessionId": crashed, "action": "crash"})
            assert failed
            assert "quarantined" in text
        after = await scrape(base)

    missing = [name for name, labels in DOCUMENTED.items() if (name, frozenset(labels.items())) not in after]
    assert missing == []
    should_move = [
        "actorstate_activations_total",
        "actorstate_passivations_total",
        "actorstate_evictions_total",
        "actorstate_restarts_total",
        "actorstate_sessions_quarantined",
        "actorstate_mailbox_depth_high_water",
        "actorstate_calls_total",
        "actorstate_call_duration_seconds_count",
        "actorstate_call_duration_seconds_bucket",
        "actorstate_call_duration_seconds_sum",
        "actorstate_turn_duration_seconds_count",
        "actorstate_turn_duration_seconds_bucket",
        "actorstate_commit_duration_seconds_count",
        "actorstate_commit_batch_sessions_count",
        "actorstate_commit_batch_sessions_bucket",
        "actorstate_commits_total",
        "actorstate_conflicts_total",
        "actorstate_memory_accounted_bytes",
        "actorstate_database_bytes",
        "actorstate_http_requests_total",
    ]
    assert moved(before, after, should_move) == []
    assert value(after, "actorstate_restarts_total") == 1
    assert value(after, "actorstate_sessions_quarantined") == 1
    assert value(after, "actorstate_conflicts_total") == 1
    assert value(after, "actorstate_evictions_total", cause="memory") >= 1
    assert value(after, "actorstate_calls_total", tool="get_context", outcome="not_found") == 1
    assert value(after, "actorstate_calls_total", tool="record_action", outcome="ok") == 1
    assert value(after, "actorstate_calls_total", tool="record_action", outcome="quarantined") == 1
    assert value(after, "actorstate_calls_total", tool="increment_counter", outcome="ok") == 9
    assert value(after, "actorstate_call_duration_seconds_count", tool="increment_counter") == 9
    assert value(after, "actorstate_mailbox_waiting") == 0
    assert value(after, "actorstate_memory_budget_bytes") == 0.25 * 1024 * 1024
    assert not any(name.startswith("actorstate_http") and labels for name, labels in after)


@pytest.mark.anyio
async def test_metrics_are_for_operators_on_a_server_with_tokens() -> None:
    """/metrics without a token is 401, with a token that is no operator's 403 naming how to
    get one, with an operator's 200; with metrics_access "open" anyone reads them."""
    async with actorstate.open_state() as state:
        async with serving(state, verifier=TOKENS) as (base, _, _):
            unauthenticated = await get(base, "/metrics")
            assert unauthenticated.status_code == 401
            assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
            refused = await get(base, "/metrics", "alice_token")
            assert refused.status_code == 403
            assert "actorstate tokens add NAME --operator" in refused.text
            assert (await get(base, "/metrics", "root_token")).status_code == 200
        settings = OperationsSettings(drain_period=0, metrics_access="open")
        async with serving(state, verifier=TOKENS, operations=settings) as (base, _, _):
            assert "actorstate_actors_resident" in (await get(base, "/metrics")).text


@pytest.mark.anyio
async def test_principals_are_named_only_when_asked() -> None:
    """With metrics_principals each principal's HTTP figures carry its key as a label (alice's
    requests counted under her key); without it the same figures are one unlabelled sum."""
    alice_key = "tests|alice|alice"
    settings = OperationsSettings(drain_period=0, metrics_principals=True)
    async with (
        actorstate.open_state() as state,
        serving(state, verifier=TOKENS, operations=settings) as (base, _, _),
    ):
        async with client(base + "/mcp", "alice_token") as alice:
            for _ in range(3):
                await call(alice, "create_session", {})
        named = await scrape(base)
        assert value(named, "actorstate_http_requests_total", principal=alice_key) >= 3
        assert ("actorstate_http_requests_total", frozenset()) not in named
    async with actorstate.open_state() as state, serving(state, verifier=TOKENS) as (base, _, _):
        async with client(base + "/mcp", "alice_token") as alice:
            await call(alice, "create_session", {})
        summed = await scrape(base)
        assert value(summed, "actorstate_http_requests_total") >= 1
        assert not any(dict(labels).get("principal") for _, labels in summed)


@pytest.mark.anyio
async def test_metrics_follow_readiness_and_commits() -> None:
    """actorstate_ready is 1 while the store answers and 0 once it is closed; without a store
    there is no commit histogram, and a scrape with openmetrics' Accept gets that format."""
    store = MemoryStore("the test store")
    async with actorstate.open_state(store) as state, serving(state) as (base, _, _):
        assert value(await scrape(base, None), "actorstate_ready") == 1
        await store.close()
        assert value(await scrape(base, None), "actorstate_ready") == 0
    async with actorstate.open_state() as state, serving(state) as (base, _, _):
        samples = await scrape(base, None)
        assert not any(name.startswith("actorstate_commit") for name, _ in samples)
        async with httpx2.AsyncClient() as http:
            reply = await http.get(base + "/metrics", headers={"Accept": "application/openmetrics-text"})
        assert reply.headers["content-type"].startswith("application/openmetrics-text")
        assert reply.text.endswith("# EOF\n")
