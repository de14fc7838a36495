"""Where the fast paths let the SDK decide: messages its parser reads differently from orjson.

The fast paths (:mod:`.fast_path`, :mod:`.handshake`, :mod:`.http_fast_path`)
parse with orjson, and must answer exactly what the SDK's server would. Two
kinds of message would be read differently, so they are left to the SDK:

- a run of 19 digits, which may be an integer past 64 bits: orjson reads it
  as a float (or refuses it) where the SDK's parser keeps an int. The run is
  found as 19 zeros once every digit is made a zero: ``bytes.translate`` and
  a substring search, both in C. For a 430-byte tool call that costs 0.9 µs,
  where the regular expression ``[0-9]{19}`` (tried at every position) cost
  5.5 µs, a tenth of a stdio call's CPU;
- arrays or objects nested more than 200 levels deep: the SDK's parser
  refuses them (see :mod:`.sdk_wire` for the reply), orjson reads up to
  1024 levels. Only a message with that
  many opening brackets (and as many closing ones) can nest that deep, so
  a message shorter than twice the bound is never counted: a usual tool
  call costs a length check, a long one two ``bytes.count`` calls (0.4 µs
  for 400 bytes). The bound is kept below 200,
  so the SDK's way of counting levels needs no exact match: a message that
  merely holds many brackets (JSON text kept in a string, say) gets the same
  reply from the SDK, a little later.

Every fast path asks :func:`left_to_the_sdk` before it reads a message.
"""

from __future__ import annotations

from typing import Final

__all__ = ["left_to_the_sdk", "may_hold_a_long_integer", "may_nest_too_deep"]

_DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_RUN: Final = b"0" * 19
# Opening brackets from which a message may nest deeper than the SDK's parser reads (200 levels).
MANY_BRACKETS: Final = 180


def may_hold_a_long_integer(data: bytes) -> bool:
    """Whether ``data`` holds 19 digits in a row (as ``re.search(rb"[0-9]{19}", data)`` would tell)."""
    return _RUN in data.translate(_DIGITS_TO_ZERO)


def may_nest_too_deep(data: bytes) -> bool:
    """Whether ``data`` holds enough opening brackets to nest past the SDK parser's 200 levels.

    JSON that nests N levels deep holds N opening and N closing brackets;
    JSON that is not valid is refused by orjson and goes to the SDK anyway.
    """
    return len(data) >= 2 * MANY_BRACKETS and data.count(b"[") + data.count(b"{") >= MANY_BRACKETS


def left_to_the_sdk(data: bytes) -> bool:
    """Whether a fast path must leave the message ``data`` to the SDK (either of the above)."""
    return may_hold_a_long_integer(data) or may_nest_too_deep(data)
