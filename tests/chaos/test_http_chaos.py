"""The chaos runner over HTTP: a short run against a real ``serve --http`` process (SIGKILL and
SIGTERM rounds, dropped connections, cross-principal probes), the probe checker on hand-written
histories, and the options. (A planted leak across principals is caught in test_planted_bugs.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from actorstate.chaos import FaultPhase, History, Phase, check_ownership, check_probes
from actorstate.chaos.checkers import NO_REPLY
from actorstate.chaos.faults import HTTP_FAULT_KINDS
from actorstate.chaos.runner import RunOptions, replay_command

from .scripts import Script

if TYPE_CHECKING:
    from pathlib import Path

    from actorstate.chaos.history import Call

# Generous: a hung run fails the test instead of the suite; nothing here times the run.
_RUN_LIMIT = 300
_NOT_FOUND = "Session not found or expired"


def _chaos(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "actorstate", "chaos", "--transport", "http", "--seed", "4"]
    return subprocess.run(
        [*command, *flags, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=_RUN_LIMIT,
        check=False,
    )


def _probes(history: History) -> list[Call]:
    return [call for call in history.calls if call.process.startswith("probe")]


@pytest.fixture(scope="module")
def http_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One 8-second commit-mode HTTP run: dropped connections, a SIGKILL, a token rotation (of
    principal-1, which speaks the older protocol: the seed's choice) and a SIGTERM."""
    out = tmp_path_factory.mktemp("chaos-http") / "run"
    return _chaos(out, "--duration", "8", "--faults", "kill,term,drop,revoke"), out


def test_an_http_run_with_kills_and_dropped_connections_passes(
    http_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The run exits 0 with no violation (its report gives the probes' latency beside the
    controls'); each fault ran and a restarted server acknowledged writes
    after it (the older-protocol principal's too, under a new protocol session); the rotated
    principal's protocol session, opened with its revoked token, was closed, and it wrote again
    with its new token; principals each made acknowledged calls with their own tokens; requests
    were torn off mid-send; the dropped calls
    are recorded as unknown outcomes, and the server kept serving after them."""
    process, out = http_run
    assert process.returncode == 0, process.stdout + process.stderr
    assert "violations: 0" in process.stdout
    assert re.search(
        r"^cross-principal probes: \d+ \(\d+ answered\); p50 / p99 latency", process.stdout, re.M
    )
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    ends = {fault.kind: fault for fault in history.faults if fault.phase is FaultPhase.END}
    assert set(ends) == {"sigkill", "sigterm", "dropped-calls", "token-rotation"}
    assert ends["sigterm"].details["exit_status"] == 0
    assert ends["dropped-calls"].details["torn_requests"] > 0
    rotation = ends["token-rotation"]
    assert rotation.target == "principal-1"
    assert list(rotation.details["old_protocol_session_closed"].values()) == [True]
    writes_after_restart = [
        call
        for call in history.calls
        if call.tool == "increment_counter" and call.phase is Phase.OK and call.index > ends["sigkill"].index
    ]
    assert writes_after_restart
    assert any(call.client == "principal-1" and call.index > rotation.index for call in writes_after_restart)
    owners = {
        call.client for call in history.calls if call.tool == "create_session" and call.phase is Phase.OK
    }
    assert owners == {"principal-0", "principal-1", "principal-2"}
    # principal-1 speaks the older protocol: its protocol session was opened again after the kill.
    assert any(call.client == "principal-1" for call in writes_after_restart)
    dropped = [
        c for c in history.calls if "dropped by its client" in ((c.completion and c.completion.error) or "")
    ]
    assert dropped
    assert all(call.phase is Phase.INFO for call in dropped)
    last_drop = max(call.index for call in dropped)
    assert any(call.phase is Phase.OK and call.index > last_drop for call in history.calls)
    tokens = json.loads((out / "tokens.json").read_text())["tokens"]
    assert sorted(entry["name"] for entry in tokens) == [
        "chaos-operator",
        "principal-0",
        "principal-1",
        "principal-2",
    ]


def test_an_http_run_probes_across_principals_resources_included(
    http_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Probes ran all run long, resource reads and requests under another principal's protocol
    session among them, each by a principal other than the session's owner; every answered probe
    and its unknown-id control got the same refusal ("Session not found or expired", or the
    protocol session's 404), never an ok; the principals' listings of their sessions named none
    of another's."""
    _, out = http_run
    history = History.from_jsonl((out / "history.jsonl").read_text(encoding="utf-8"))
    probes = _probes(history)
    owners = {
        call.session: call.client
        for call in history.calls
        if call.tool == "create_session" and call.phase is Phase.OK
    }
    aimed = [call for call in probes if call.session is not None]
    controls = [call for call in probes if call.session is None]
    assert len(aimed) >= 20
    assert len(controls) == len(aimed)
    assert {call.tool for call in aimed} >= {
        "read_resource",
        "get_context",
        "increment_counter",
        "protocol_session",
    }
    assert all(call.client != owners[call.session] for call in aimed)
    answered = [
        call
        for call in probes
        if not ((call.completion and call.completion.error) or "").startswith(NO_REPLY)
    ]
    assert answered
    for call in answered:
        error = call.completion.error if call.completion else None
        assert error is not None
        if call.tool == "protocol_session":
            assert error.startswith("HTTP 404:")
            assert '"message":"Session not found"' in error
        else:
            assert call.phase is Phase.FAIL
            assert _NOT_FOUND in error
    assert check_probes(history) == []
    listings = [call for call in history.calls if call.tool == "list_sessions" and call.phase is Phase.OK]
    assert any(call.result["sessions"] for call in listings)
    assert check_ownership(history) == []


# -- the probe checker on hand-written histories -------------------------------------------


def _probe(script: Script, probe: tuple[str, str | None], control: tuple[str, str | None]) -> None:
    """A probe by bob on alice's s1 and its control; each outcome (phase, error or None for ok)."""
    for session, (phase, error) in (("s1", probe), (None, control)):
        call = script.invoke("probe7", "get_context", session, "bob", maxTurns=5)
        if phase == "ok":
            script.ok(call, {"sessionId": "x", "totalEvents": 0, "metadata": {}, "recentEvents": []})
        elif phase == "fail":
            script.recorder.fail(call, error or "")
        else:
            script.recorder.info(call, error or "")


def test_probes_answered_like_an_unknown_id_pass() -> None:
    """A probe refused exactly as its control is no violation."""
    script = Script()
    script.create("s1", "alice")
    _probe(script, ("fail", _NOT_FOUND), ("fail", _NOT_FOUND))
    assert check_probes(script.history()) == []


def test_a_probe_that_gets_the_owners_data_is_a_violation() -> None:
    """An ok reply to another principal's probe is reported, naming the session and the intruder."""
    script = Script()
    script.create("s1", "alice")
    _probe(script, ("ok", None), ("fail", _NOT_FOUND))
    [violation] = check_probes(script.history())
    assert violation.checker == "cross-principal"
    assert violation.session == "s1"
    assert "'bob'" in violation.message
    assert "ok reply" in violation.message


@pytest.mark.parametrize(
    "answer",
    [("fail", "Session quarantined: end it, or restart the server"), ("info", "error -32603: internal")],
)
def test_a_probe_answered_differently_from_an_unknown_id_is_a_violation(answer: tuple[str, str]) -> None:
    """A probe refused with another error than the control's (it tells the session exists) is
    reported with both answers."""
    script = Script()
    script.create("s1", "alice")
    _probe(script, answer, ("fail", _NOT_FOUND))
    [violation] = check_probes(script.history())
    assert answer[1] in violation.message
    assert _NOT_FOUND in violation.message
    assert len(violation.operations) == 2


def test_a_probe_or_control_without_a_reply_proves_nothing() -> None:
    """When the server did not answer the probe or its control (a timeout, a kill), nothing is
    compared."""
    script = Script()
    script.create("s1", "alice")
    _probe(script, ("info", f"{NO_REPLY}timed out after 1 s"), ("fail", _NOT_FOUND))
    _probe(script, ("fail", _NOT_FOUND), ("info", f"{NO_REPLY}server-1 exited"))
    assert check_probes(script.history()) == []


# -- options -------------------------------------------------------------------------------


def test_http_options_are_checked_and_replayed(tmp_path: Path) -> None:
    """Over HTTP, bad input on a pipe and fewer than two principals are refused with the way out,
    and so is token rotation over stdio; the replay command names the transport and the
    principals."""
    with pytest.raises(ValueError, match="--faults wire is for --transport stdio"):
        RunOptions(seed=1, out=tmp_path, transport="http")
    with pytest.raises(ValueError, match="--principals must be at least 2"):
        RunOptions(seed=1, out=tmp_path, transport="http", faults=HTTP_FAULT_KINDS, principals=1)
    with pytest.raises(ValueError, match="--faults revoke is for --transport http"):
        RunOptions(seed=1, out=tmp_path, faults=("kill", "revoke"))
    with pytest.raises(ValueError, match="--transport must be stdio or http"):
        RunOptions(seed=1, out=tmp_path, transport="grpc")
    options = RunOptions(seed=1, out=tmp_path, transport="http", faults=("kill",), principals=4)
    assert replay_command(options).endswith(
        "--faults kill --durability commit --transport http --principals 4"
    )
