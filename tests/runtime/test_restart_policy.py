"""The restart policy alone: a pure decision from crash times (no actors, no clock)."""

from __future__ import annotations

from actorstate import Config
from actorstate.runtime.restart import RestartPolicy


def test_backoff_doubles_up_to_its_cap_then_quarantines_past_max_restarts() -> None:
    """Crashes close together back off 10, 20, 40 ms; the fourth within the window quarantines."""
    policy = RestartPolicy(
        Config(max_restarts=3, restart_window=5, restart_backoff=0.01, restart_backoff_max=0.03)
    )
    first = policy.after_crash(None, 100.0)
    second = policy.after_crash(first.crash_times, 100.1)
    third = policy.after_crash(second.crash_times, 100.2)
    fourth = policy.after_crash(third.crash_times, 100.3)
    assert [d.delay for d in (first, second, third)] == [0.01, 0.02, 0.03]
    assert fourth.delay is None
    assert fourth.crashes == 4


def test_crashes_older_than_the_window_no_longer_count() -> None:
    """A crash after the window has passed starts the count again."""
    policy = RestartPolicy(Config(max_restarts=1, restart_window=5, restart_backoff=0.01))
    first = policy.after_crash(None, 100.0)
    later = policy.after_crash(first.crash_times, 106.0)
    assert later.crash_times == [106.0]
    assert later.delay == 0.01


def test_zero_restarts_quarantines_at_the_first_crash() -> None:
    """max_restarts=0 allows no restart at all."""
    assert RestartPolicy(Config(max_restarts=0)).after_crash(None, 1.0).delay is None
