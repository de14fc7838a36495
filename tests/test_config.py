"""Config checks every field on construction and refuses with ConfigError, an ActorStateError and a ValueError."""

from __future__ import annotations

from typing import Any

import pytest

from actorstate import ActorStateError, Config, ConfigError


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ask_timeout": 0}, "ask_timeout must be a positive number"),
        ({"mailbox_size": float("nan")}, "mailbox_size must be a positive number"),
        ({"max_resident": "many"}, "max_resident must be a number"),
        ({"flush_interval": True}, "flush_interval must be a number"),
        ({"memory_low_watermark": 0.95}, "memory_low_watermark < memory_high_watermark"),
        ({"default_max_turns": 60}, "default_max_turns must not exceed"),
        ({"list_page_size": 5000}, "list_page_size must not exceed"),
    ],
)
def test_bad_config_is_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    """Each bad field is refused with a message naming it; the error is catchable as either family."""
    with pytest.raises(ConfigError, match=message) as refused:
        Config(**fields)
    assert isinstance(refused.value, ActorStateError)
    assert isinstance(refused.value, ValueError)


def test_zero_restarts_is_allowed() -> None:
    """max_restarts=0 is the one zero allowed: quarantine at the first crash."""
    assert Config(max_restarts=0).max_restarts == 0
