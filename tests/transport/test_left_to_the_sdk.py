"""What the fast paths leave to the SDK: a run of 19 digits (found exactly as the regular expression
finds it), and enough brackets to nest past the SDK parser's depth."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from actorstate.transport.left_to_the_sdk import MANY_BRACKETS, may_hold_a_long_integer, may_nest_too_deep

_REGEX = re.compile(rb"[0-9]{19}")

# Mostly digits, so that runs near 19 long are common; and every other byte, zeros among them.
digit_heavy = st.lists(
    st.sampled_from(b"0123456789") | st.sampled_from(b'0a-.e" \x00\xff9'), max_size=80
).map(bytes)


@given(digit_heavy | st.binary(max_size=200))
def test_it_agrees_with_the_regular_expression(data: bytes) -> None:
    """For any bytes, a run is found exactly when ``[0-9]{19}`` matches somewhere."""
    assert may_hold_a_long_integer(data) == bool(_REGEX.search(data))


def test_runs_of_18_19_and_20_digits() -> None:
    """18 digits in a row is no run; 19 and more are, wherever they stand and whatever they are."""
    assert not may_hold_a_long_integer(b'{"id": 123456789012345678}')
    assert may_hold_a_long_integer(b'{"id": 1234567890123456789}')
    assert may_hold_a_long_integer(b"99999999999999999999")
    assert not may_hold_a_long_integer(b"0" * 18 + b"x" + b"0" * 18)


def test_deep_nesting_is_told_by_the_opening_brackets() -> None:
    """A message is left to the SDK once it holds MANY_BRACKETS opening brackets, of either kind,
    whether or not they nest: fewer cannot nest as deep as the SDK parser's 200 levels. One
    shorter than twice that many bytes is never counted: it cannot close that many."""
    assert not may_nest_too_deep(b"[" * (MANY_BRACKETS - 1) + b"]" * (MANY_BRACKETS - 1))
    assert may_nest_too_deep(b"[" * MANY_BRACKETS + b"]" * MANY_BRACKETS)
    assert may_nest_too_deep(
        b"{" * 100 + b"[" * (MANY_BRACKETS - 100) + b"]" * (MANY_BRACKETS - 100) + b"}" * 100
    )
    assert may_nest_too_deep(b"[]" * MANY_BRACKETS)  # side by side: the SDK answers it as well
    assert not may_nest_too_deep(b'{"a":"' + b"[" * MANY_BRACKETS + b'"}')  # in a string, unclosed
    assert MANY_BRACKETS < 200
