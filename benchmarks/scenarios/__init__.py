"""Every scenario, by the name ``--scenario`` takes, in the order a full run takes them."""

from __future__ import annotations

from benchmarks.scenarios.activation import Activation
from benchmarks.scenarios.cluster import Cluster
from benchmarks.scenarios.contention import Contention, Spread
from benchmarks.scenarios.durable import AckLatency, Durable
from benchmarks.scenarios.eviction import Eviction
from benchmarks.scenarios.http import Http
from benchmarks.scenarios.memory import Memory
from benchmarks.scenarios.recovery import Recovery
from benchmarks.scenarios.stdio import Stdio

SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Contention,
        Spread,
        Durable,
        AckLatency,
        Eviction,
        Memory,
        Activation,
        Recovery,
        Stdio,
        Http,
        Cluster,
    )
}
