"""The Prometheus metrics: the runtime's figures read at scrape time, written by ``prometheus_client``.

Nothing here runs on the hot path. A scrape reads what the parts already
count (the state's ``stats()`` and histograms, the tool calls of
:mod:`.call_figures`, the HTTP registry) and turns it into metric
families; the exposition format is the library's. The README lists every
metric.

Principals' names (which name people and applications) appear as a
``principal`` label only when the operator asks for them
(``--metrics-principals on``); otherwise the HTTP figures are summed over
every principal.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from prometheus_client.metrics_core import Metric

    from ..runtime.histogram import HistogramSnapshot
    from ..state import State
    from .call_figures import CallFigures
    from .registry import ConnectionRegistry

__all__ = ["RuntimeCollector", "ScrapeExtras", "metrics_registry"]

# Every eviction cause the residency has, so each series exists (at 0) from the start.
EVICTION_CAUSES = ("memory",)


@dataclasses.dataclass(slots=True)
class ScrapeExtras:
    """What a scrape measures just before the figures are read (see :class:`.operations.Operations`)."""

    database_bytes: int | None = None
    ready: bool = True
    draining: bool = False


def _histogram(
    name: str, documentation: str, label_names: list[str], series: list[tuple[list[str], HistogramSnapshot]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=label_names)
    for labels, snapshot in series:
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(snapshot.bounds, snapshot.counts, strict=False):
            cumulative += count
            buckets.append((repr(float(bound)), cumulative))
        buckets.append(("+Inf", cumulative + snapshot.counts[-1]))
        family.add_metric(labels, buckets, snapshot.total)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class RuntimeCollector(Collector):
    """Every actorstate metric, read from the parts at scrape time.

    ``principal_names``: label the HTTP figures by principal;
    ``extras``: what the scrape measured first (database size, readiness).
    """

    def __init__(
        self,
        state: State,
        calls: CallFigures,
        extras: Callable[[], ScrapeExtras],
        *,
        principal_names: bool = False,
    ) -> None:
        self._state = state
        self._calls = calls
        self._extras = extras
        self._registry: ConnectionRegistry | None = None
        self._principal_names = principal_names

    def watch_registry(self, registry: ConnectionRegistry) -> None:
        """Show the HTTP server's figures from its connection ``registry`` (none on stdio)."""
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        stats: dict[str, Any] = self._state.stats()
        config = self._state.config
        extras = self._extras()
        yield _gauge(
            "actorstate_ready", "1 when /readyz answers 200: the store answers, not draining", extras.ready
        )
        yield _gauge("actorstate_draining", "1 while the server drains before it stops", extras.draining)
        yield from self._actors(stats, config.max_resident)
        yield from self._calls_metrics()
        yield from self._durability(stats)
        yield from self._memory(stats, config.memory_budget_bytes)
        if extras.database_bytes is not None:
            yield _gauge("actorstate_database_bytes", "Bytes the database takes", extras.database_bytes)
        if self._registry is not None:
            yield from self._http(self._registry)

    def _actors(self, stats: dict[str, Any], max_resident: int) -> Iterator[Metric]:
        yield _gauge("actorstate_actors_resident", "Session actors in memory", stats["resident_actors"])
        yield _gauge(
            "actorstate_actors_resident_limit", "The cap on resident actors (--max-resident)", max_resident
        )
        yield _gauge(
            "actorstate_sessions_passivated",
            "Sessions kept encoded in memory (memory mode; with a database they are stored)",
            stats["passivated_sessions"],
        )
        yield _gauge(
            "actorstate_sessions_quarantined",
            "Sessions refused after crashing too often, until ended",
            stats["quarantined"],
        )
        if stats.get("sessions") is not None:
            yield _gauge(
                "actorstate_sessions",
                "Live sessions (with a database: as the last housekeeping pass counted)",
                stats["sessions"],
            )
        yield _counter("actorstate_activations", "Actors brought into memory", stats["activations"])
        yield _counter(
            "actorstate_passivations",
            "Idle actors taken out of memory (idle timeout or the cap)",
            stats["passivations"],
        )
        evictions = CounterMetricFamily(
            "actorstate_evictions", "Sessions evicted under memory pressure, by cause", labels=["cause"]
        )
        by_cause = {cause: 0 for cause in EVICTION_CAUSES} | dict(stats["evictions"])
        for cause, count in sorted(by_cause.items()):
            evictions.add_metric([cause], count)
        yield evictions
        yield _counter(
            "actorstate_expired_sessions", "Sessions ended for idling past the TTL", stats["expired"]
        )
        yield _counter("actorstate_restarts", "Actor restarts after a crash", stats["restarts"])
        yield _gauge(
            "actorstate_mailbox_waiting", "Calls waiting in every mailbox together", stats["mailbox_waiting"]
        )
        yield _gauge(
            "actorstate_mailbox_depth_max",
            "Calls waiting in the fullest mailbox now",
            stats["mailbox_depth_max"],
        )
        yield _gauge(
            "actorstate_mailbox_depth_high_water",
            "The most calls ever waiting in one mailbox",
            stats["mailbox_high_water"],
        )

    def _calls_metrics(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "actorstate_calls", "Tool calls by tool and outcome", labels=["tool", "outcome"]
        )
        for (tool, outcome), count in sorted(self._calls.calls().items()):
            calls.add_metric([tool, outcome], count)
        yield calls
        yield _histogram(
            "actorstate_call_duration_seconds",
            "Tool call latency as the caller sees it: waiting for the actor, its turn, and in commit mode the commit",
            ["tool"],
            [([tool], snapshot) for tool, snapshot in sorted(self._calls.latency().items())],
        )

    def _durability(self, stats: dict[str, Any]) -> Iterator[Metric]:
        histograms = self._state.histograms()
        yield _histogram(
            "actorstate_turn_duration_seconds",
            "Duration of each turn that completed: one message applied to a session's state",
            [],
            [([], histograms["turn_seconds"])],
        )
        if "commit_seconds" not in histograms:
            return  # memory mode: nothing is committed
        yield _histogram(
            "actorstate_commit_duration_seconds",
            "Duration of each committed group-commit transaction",
            [],
            [([], histograms["commit_seconds"])],
        )
        yield _histogram(
            "actorstate_commit_batch_sessions",
            "Sessions written by each committed group-commit transaction",
            [],
            [([], histograms["commit_batch_sessions"])],
        )
        yield _counter("actorstate_commits", "Committed transactions", stats["commits"])
        yield _counter("actorstate_commits_failed", "Transactions that failed", stats["failed_commits"])
        yield _counter(
            "actorstate_conflicts",
            "Writes refused because another process changed the session (reloaded and replayed)",
            stats["conflicts"],
        )
        yield _counter(
            "actorstate_fenced", "Writes refused because a newer owner holds the session", stats["fenced"]
        )

    def _memory(self, stats: dict[str, Any], budget: int) -> Iterator[Metric]:
        yield _gauge(
            "actorstate_memory_budget_bytes", "The memory budget for sessions (--memory-budget-mb)", budget
        )
        yield _gauge(
            "actorstate_memory_accounted_bytes",
            "Bytes accounted to resident and passivated sessions (evictions start at 90% of the budget)",
            stats["accounted_bytes"],
        )
        if stats.get("rss_bytes") is not None:
            yield _gauge("actorstate_memory_rss_bytes", "The process's resident set size", stats["rss_bytes"])

    def _http(self, registry: ConnectionRegistry) -> Iterator[Metric]:
        label_names = ["principal"] if self._principal_names else []
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "exchanges": GaugeMetricFamily(
                "actorstate_http_exchanges_open",
                "HTTP exchanges open now (requests and event streams)",
                labels=label_names,
            ),
            "in_flight": GaugeMetricFamily(
                "actorstate_http_requests_in_flight", "HTTP requests in progress now", labels=label_names
            ),
            "requests": CounterMetricFamily(
                "actorstate_http_requests", "HTTP requests taken", labels=label_names
            ),
            "refused": CounterMetricFamily(
                "actorstate_http_refused",
                "HTTP requests refused by a principal's limits or the server's",
                labels=label_names,
            ),
        }
        principals = registry.principals_now()
        if self._principal_names:
            for figures in principals:
                for field, family in families.items():
                    family.add_metric([figures.principal], getattr(figures, field))
        else:
            for field, family in families.items():
                family.add_metric([], sum(getattr(figures, field) for figures in principals))
        yield from families.values()
        yield _gauge(
            "actorstate_http_principals_active",
            "Principals with an HTTP exchange open now",
            sum(1 for figures in principals if figures.exchanges),
        )
        yield _gauge(
            "actorstate_http_max_connections",
            "The cap on HTTP exchanges open at once",
            registry.limits.max_connections,
        )


def metrics_registry(collector: RuntimeCollector) -> CollectorRegistry:
    """A registry of its own holding ``collector`` and the process's figures (CPU, memory, descriptors)."""
    from prometheus_client import PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
