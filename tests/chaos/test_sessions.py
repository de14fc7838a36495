"""The ended-session and ownership checkers on hand-written histories."""

from __future__ import annotations

from actorstate.chaos import check_ended_sessions, check_ownership

from .scripts import Script, server_id


def test_ended_session_stays_ended() -> None:
    """Calls after an acknowledged end fail; that is no violation."""
    script = Script()
    script.create("s1")
    script.end("s1")
    call = script.invoke("p1", "get_context", "s1")
    script.fail(call)
    assert check_ended_sessions(script.history()) == []


def test_ended_session_answers() -> None:
    """An ok reply on a session after its end was acknowledged is reported, with the fault between."""
    script = Script()
    script.create("s1")
    end = script.end("s1")
    script.fault("sigkill")
    read = script.read("s1", 0, [])
    [violation] = check_ended_sessions(script.history())
    assert violation.session == "s1"
    assert violation.operations == (end, read)
    assert violation.faults[0].kind == "sigkill"


def test_call_concurrent_with_end_may_succeed() -> None:
    """A call overlapping the end may have come first."""
    script = Script()
    script.create("s1")
    read = script.invoke("p2", "get_context", "s1")
    script.end("s1")
    script.ok(read, {"totalEvents": 0, "metadata": {}, "recentEvents": []})
    assert check_ended_sessions(script.history()) == []


def test_ended_session_listed() -> None:
    """A listing after the end must not name the session."""
    script = Script()
    script.create("s1", "alice")
    script.end("s1")
    listing = script.invoke("alice", "list_sessions", None, "alice", clientId="alice")
    script.ok(listing, {"clientId": "alice", "sessions": [{"sessionId": server_id("s1")}]})
    [violation] = check_ended_sessions(script.history())
    assert violation.session == "s1"
    assert "list_sessions" in violation.message


def test_owner_reaches_own_session_and_others_do_not() -> None:
    """The owner's ok calls and a stranger's refused ones break nothing."""
    script = Script()
    script.create("s1", "alice")
    script.read("s1", 0, [], process="alice")
    probe = script.invoke("bob", "get_context", "s1", "bob")
    script.fail(probe)
    assert check_ownership(script.history()) == []


def test_non_owner_gets_ok() -> None:
    """An ok reply to a client that does not own the session is reported."""
    script = Script()
    create = script.create("s1", "alice")
    probe = script.invoke("bob", "increment_counter", "s1", "bob")
    script.ok(probe, {"value": 1})
    [violation] = check_ownership(script.history())
    assert violation.session == "s1"
    assert violation.operations == (create, probe.index)
    assert "'bob'" in violation.message
    assert "'alice'" in violation.message


def test_listing_shows_another_clients_session() -> None:
    """A listing for bob that names alice's session is reported."""
    script = Script()
    script.create("s1", "alice")
    listing = script.invoke("bob", "list_sessions", None, "bob", clientId="bob")
    script.ok(listing, {"clientId": "bob", "sessions": [{"sessionId": server_id("s1")}]})
    [violation] = check_ownership(script.history())
    assert violation.session == "s1"
