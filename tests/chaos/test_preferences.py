"""The preference (register) checker on hand-written histories."""

from __future__ import annotations

from actorstate.chaos import check_preferences

from .scripts import Script


def test_last_write_wins() -> None:
    """A read after recovery shows the last acknowledged write."""
    script = Script()
    script.set("s1", "lang", "fr", {"lang": "fr"})
    script.set("s1", "lang", "de", {"lang": "de"})
    script.read("s1", 0, [], {"lang": "de"})
    assert check_preferences(script.history()) == []


def test_stale_preference() -> None:
    """A value overwritten by a write acknowledged before the read is stale."""
    script = Script()
    old = script.set("s1", "lang", "fr", {"lang": "fr"})
    new = script.set("s1", "lang", "de", {"lang": "de"})
    script.fault("sigkill")
    read = script.read("s1", 0, [], {"lang": "fr"})
    [violation] = check_preferences(script.history())
    assert violation.session == "s1"
    assert violation.operations == (old, new, read)
    assert "stale" in violation.message
    assert violation.faults


def test_unknown_write_may_win() -> None:
    """An info write may take effect last, even after a later acknowledged one."""
    script = Script()
    script.set("s1", "lang", "fr", None)
    script.set("s1", "lang", "de", {"lang": "de"})
    script.read("s1", 0, [], {"lang": "fr"})
    script.read("s1", 0, [], {"lang": "de"})
    assert check_preferences(script.history()) == []


def test_concurrent_writes_either_order() -> None:
    """Two overlapping acknowledged writes may land in either order."""
    script = Script()
    a = script.invoke("p1", "set_preference", "s1", key="lang", value="fr")
    b = script.invoke("p2", "set_preference", "s1", key="lang", value="de")
    script.ok(b, {"metadata": {"lang": "de"}})
    script.ok(a, {"metadata": {"lang": "fr"}})
    script.read("s1", 0, [], {"lang": "de"}, process="p3")
    assert check_preferences(script.history()) == []


def test_missing_after_acknowledged_write() -> None:
    """A key gone after its write was acknowledged is reported."""
    script = Script()
    script.set("s1", "lang", "fr", {"lang": "fr"})
    script.read("s1", 0, [], {})
    assert len(check_preferences(script.history())) == 1


def test_value_never_written_or_failed() -> None:
    """A value nobody wrote, or whose write failed, is reported."""
    script = Script()
    failed = script.invoke("p1", "set_preference", "s1", key="lang", value="it")
    script.fail(failed)
    script.set("s1", "lang", "fr", {"lang": "fr"})
    script.read("s1", 0, [], {"lang": "it"})
    script.read("s1", 0, [], {"lang": "xx"})
    messages = [v.message for v in check_preferences(script.history())]
    assert any("failed" in m for m in messages)
    assert any("never written" in m for m in messages)


def test_add_context_sets_its_key() -> None:
    """add_context also writes metadata[key]; its value is a legitimate read."""
    script = Script()
    script.add("s1", "billing", 1)
    script.read("s1", 1, ["billing"], {"topic": "billing"})
    assert check_preferences(script.history()) == []
