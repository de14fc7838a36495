"""The fault seam's commands: what each turns on, and what it refuses."""

from __future__ import annotations

import pytest

from actorstate.fault_seam import FaultSeam


def test_commands_turn_on_failures_slowness_and_a_squeeze() -> None:
    """fail makes commits fail, squeeze caps resident sessions; a zero duration turns either off."""
    seam = FaultSeam()
    assert not seam.commit_fails()
    assert seam.max_resident() is None
    seam.command("fail 3600")
    seam.command("squeeze 3600 3")
    assert seam.commit_fails()
    assert seam.max_resident() == 3
    seam.command("fail 0")
    seam.command("squeeze 0 3")
    assert not seam.commit_fails()
    assert seam.max_resident() is None
    seam.command("slow 3600 0")  # slow by nothing: commits go on, and do not fail
    assert not seam.commit_fails()


@pytest.mark.parametrize("line", ["explode", "fail", "fail soon", "slow 1", "squeeze 1 many"])
def test_a_bad_command_is_refused(line: str) -> None:
    """Unknown commands and bad numbers raise ValueError saying so, and change nothing."""
    seam = FaultSeam()
    with pytest.raises(ValueError, match=r"^bad fault command"):
        seam.command(line)
    assert not seam.commit_fails()
    assert seam.max_resident() is None
