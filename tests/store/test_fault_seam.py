"""The fault seam's commands: what each turns on, and what it refuses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from actorstate.errors import StoreUnavailable
from actorstate.fault_seam import FaultSeam
from actorstate.store.interface import SnapshotWrite, WriteOutcome
from actorstate.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from pathlib import Path


def test_commands_turn_on_failures_slowness_and_a_squeeze() -> None:
    """fail makes commits fail, full stops growth, squeeze caps resident sessions; a zero duration turns each off."""
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
    seam.command("full 3600")
    assert seam.disk_full()
    seam.command("full 0")
    assert not seam.disk_full()
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


def _write(session_id: str, base_version: int, size: int) -> SnapshotWrite:
    return SnapshotWrite(session_id, "alice", base_version, b"s" * size, 1.0, 1.0, ended=False)


def test_a_store_on_the_seam_fails_commits_and_stops_growing_on_command(tmp_path: Path) -> None:
    """fail rolls commits back as a disk I/O error; full lets SQLite refuse any write that needs a
    page ("database or disk is full"); each ends on its command, and nothing refused was stored."""
    seam = FaultSeam()
    store = SQLiteStore(str(tmp_path / "seam.db"), faults=seam)
    try:
        now = 1.0
        assert store.write([_write("a", 0, 9000)], now) == [WriteOutcome.COMMITTED]
        seam.command("fail 3600")
        with pytest.raises(StoreUnavailable, match=r"disk I/O error \(injected"):
            store.write([_write("a", 1, 9000)], now)
        seam.command("fail 0")
        seam.command("full 3600")
        with pytest.raises(StoreUnavailable, match="database or disk is full"):
            store.write([_write("a", 1, 9100)], now)
        with pytest.raises(StoreUnavailable, match="database or disk is full"):
            store.write([_write("b", 0, 9000)], now)
        seam.command("full 0")
        assert store.write([_write("a", 1, 9100), _write("b", 0, 9000)], now) == [WriteOutcome.COMMITTED] * 2
        loaded = store.load("a")
        assert loaded is not None
        assert (loaded.version, len(loaded.state)) == (2, 9100)
    finally:
        store.close()
