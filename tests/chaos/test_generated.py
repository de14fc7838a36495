"""Generated histories: a correct server passes every checker; each planted bug is caught."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from actorstate.chaos import History, check_history
from actorstate.config import Config

from .simulation import BUGS, Simulation

_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)


@st.composite
def simulations(draw: st.DrawFn) -> tuple[Simulation, Config]:
    max_events = draw(st.integers(2, 12))
    max_turns_limit = draw(st.integers(1, 10))
    config = Config(
        max_events=max_events,
        max_turns_limit=max_turns_limit,
        default_max_turns=draw(st.integers(1, max_turns_limit)),
    )
    simulation = Simulation(
        draw(st.randoms(use_true_random=False)),
        max_events=config.max_events,
        max_turns_limit=config.max_turns_limit,
        default_max_turns=config.default_max_turns,
        processes=draw(st.integers(1, 6)),
        steps=draw(st.integers(0, 200)),
        info_rate=draw(st.sampled_from([0.0, 0.1, 0.3])),
    )
    return simulation, config


@_SETTINGS
@given(simulations())
def test_correct_server_has_no_violations(case: tuple[Simulation, Config]) -> None:
    """Any interleaving, unknown outcomes applied or not, trimmed events: zero violations."""
    simulation, config = case
    history = simulation.history()
    assert check_history(history, config) == []


@pytest.mark.parametrize("bug", BUGS)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(case=simulations())
def test_planted_bug_is_caught(bug: str, case: tuple[Simulation, Config]) -> None:
    """Each planted corruption yields at least one violation naming the corrupted session."""
    simulation, config = case
    planted = simulation.plant(bug)
    assume(planted is not None)
    violations = check_history(simulation.history(), config)
    assert any(v.session == planted for v in violations), (bug, planted, violations)


def test_checking_survives_json_lines() -> None:
    """A history written as JSON lines and read back is equal and checks the same."""
    simulation = Simulation(random.Random(7), max_events=5, max_turns_limit=4, default_max_turns=2, steps=300)
    assert simulation.plant("reorder-events") is not None
    history = simulation.history()
    again = History.from_jsonl(history.to_jsonl())
    config = Config(max_events=5, max_turns_limit=4, default_max_turns=2)
    assert again == history
    assert check_history(again, config) == check_history(history, config) != []
