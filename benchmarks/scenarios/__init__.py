"""Every scenario, by the name ``--scenario`` takes, in the order a full run takes them."""

from __future__ import annotations

from benchmarks.scenarios.contention import Contention, Spread

SCENARIOS = {scenario.name: scenario for scenario in (Contention, Spread)}
