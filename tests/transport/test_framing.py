"""The stdio wire's line framing, in-process: what comes out of LineFramer for the bytes fed in."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from actorstate.transport.framing import LineFramer, TooLong


def _feed_all(framer: LineFramer, *chunks: bytes) -> list[bytes | TooLong]:
    events: list[bytes | TooLong] = []
    for chunk in chunks:
        events += framer.feed(chunk)
    return events


def test_a_line_split_across_chunks_comes_out_whole_once_its_newline_comes() -> None:
    """Parts of a line yield nothing until the newline; then the line comes out whole, without it."""
    framer = LineFramer(100)
    assert framer.feed(b'{"jsonrpc":') == []
    assert framer.feed(b'"2.0",') == []
    assert framer.feed(b'"id":1}') == []
    assert framer.feed(b"\n") == [b'{"jsonrpc":"2.0","id":1}']
    assert framer.feed(b"next") == []
    assert framer.feed(b" line\nand") == [b"next line"]
    assert framer.end() == b"and"


def test_several_lines_in_one_chunk_come_out_in_order() -> None:
    """Every line a chunk completes comes out, in order; its unfinished tail waits for the next chunk."""
    framer = LineFramer(100)
    assert framer.feed(b"one\ntwo\nthree\nfo") == [b"one", b"two", b"three"]
    assert framer.feed(b"ur\nfive\n") == [b"four", b"five"]
    assert framer.end() is None


def test_an_over_long_line_in_one_chunk_is_reported_with_its_size_and_the_rest_served() -> None:
    """A line over the limit whose newline is in the same chunk: TooLong(its size); the lines around it come out."""
    framer = LineFramer(5)
    assert framer.feed(b"ok\nabcdefgh\nfine\n") == [b"ok", TooLong(8, whole=True), b"fine"]


def test_an_over_long_line_across_chunks_is_reported_once_and_dropped_through_its_newline() -> None:
    """Once the unfinished line passes the limit it is reported (size seen so far) and nothing of it comes out."""
    framer = LineFramer(5)
    assert framer.feed(b"ok\nabc") == [b"ok"]
    assert framer.feed(b"defg") == [TooLong(7, whole=False)]
    assert framer.feed(b"hijklmnopqrstuvwxyz") == []  # not reported again, not kept
    assert framer.feed(b"still the same line") == []
    assert framer.feed(b"end\nnext\n") == [b"next"]


def test_an_over_long_tail_of_a_chunk_is_reported_at_once() -> None:
    """An unfinished line longer than the limit at a chunk's end is reported then, not when its newline comes."""
    framer = LineFramer(5)
    assert framer.feed(b"ok\nabcdefg") == [b"ok", TooLong(7, whole=False)]
    assert framer.feed(b"h\nnext\n") == [b"next"]


def test_a_line_finished_over_the_limit_by_a_later_chunk_is_reported_with_its_whole_size() -> None:
    """A line under the limit so far, pushed over it by the chunk that holds its newline, is TooLong(whole size)."""
    framer = LineFramer(5)
    assert framer.feed(b"abc") == []
    assert framer.feed(b"def\nok\n") == [TooLong(6, whole=True), b"ok"]


def test_crlf_lines_keep_their_carriage_return_and_count_it() -> None:
    """A CRLF line comes out with its \\r (JSON reads it as whitespace); the \\r counts toward the limit."""
    framer = LineFramer(8)
    assert framer.feed(b'{"a":1}\r\n\r\n') == [b'{"a":1}\r']
    assert LineFramer(3).feed(b"abc\r\nabc\n") == [TooLong(4, whole=True), b"abc"]


def test_blank_lines_are_skipped() -> None:
    """Empty lines and lines of only spaces, tabs or carriage returns yield nothing; others keep their spaces."""
    framer = LineFramer(100)
    assert framer.feed(b"\n\n \n\t\r\n\x0b\x0c\n x \n") == [b" x "]
    assert framer.feed(b"\n") == []
    assert framer.feed(b"  ") == []
    assert framer.end() is None  # a blank last line too


def test_the_last_line_without_newline_comes_from_end() -> None:
    """At end of input an unfinished line counts; end() hands it back once, and None when there is none."""
    framer = LineFramer(100)
    assert framer.feed(b"one\ntwo") == [b"one"]
    assert framer.end() == b"two"
    assert framer.end() is None
    assert LineFramer(100).end() is None


def test_end_in_the_middle_of_a_dropped_line_yields_nothing() -> None:
    """A line already reported too long and cut off by end of input is not served at the end."""
    framer = LineFramer(5)
    assert framer.feed(b"abcdefgh") == [TooLong(8, whole=False)]
    assert framer.feed(b"ijk") == []
    assert framer.end() is None


def test_a_line_of_exactly_the_limit_is_served_and_one_byte_more_is_not() -> None:
    """The limit is inclusive, whether the line comes in one chunk, up to its newline, or at end of input."""
    assert LineFramer(4).feed(b"abcd\nabcde\n") == [b"abcd", TooLong(5, whole=True)]
    framer = LineFramer(4)
    assert framer.feed(b"abcd") == []
    assert framer.feed(b"\n") == [b"abcd"]
    assert framer.feed(b"abcde") == [TooLong(5, whole=False)]
    assert framer.feed(b"\n") == []
    assert framer.feed(b"wxyz") == []
    assert framer.end() == b"wxyz"


def _reference(data: bytes, limit: int) -> list[bytes | TooLong]:
    """What the framer should find in ``data`` fed whole, with each TooLong holding the line's whole size."""
    events: list[bytes | TooLong] = []
    for line in data.split(b"\n"):  # the last piece is the line end() hands back
        if len(line) > limit:
            events.append(TooLong(len(line), whole=True))
        elif line.strip():
            events.append(line)
    return events


# Pieces of input: line content, whitespace of every kind a blank line may hold, and newlines.
_PIECES = [b"a", b"{", b" ", b"\t", b"\r", b"\n", b"\n\n"]


@settings(deadline=None, max_examples=300)
@given(
    data=st.lists(st.sampled_from(_PIECES), max_size=60).map(b"".join),
    limit=st.integers(min_value=1, max_value=8),
    cuts=st.lists(st.integers(min_value=0, max_value=70), max_size=12),
)
def test_any_chunking_of_the_same_bytes_gives_the_same_lines(
    data: bytes, limit: int, cuts: list[int]
) -> None:
    """Cut anywhere, the same bytes give the same lines and the same lines too long, in the same order.

    A TooLong's size may be only what had come when it passed the limit, never more than the line;
    one that says it is whole holds the line's size.
    """
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    framer = LineFramer(limit)
    events = _feed_all(framer, *(data[start:end] for start, end in itertools.pairwise(bounds)))
    last = framer.end()
    if last is not None:
        events.append(last)
    expected = _reference(data, limit)
    assert len(events) == len(expected), (events, expected)
    for event, wanted in zip(events, expected, strict=True):
        if isinstance(wanted, TooLong):
            assert isinstance(event, TooLong)
            assert limit < event.size <= wanted.size
            if event.whole:
                assert event.size == wanted.size
        else:
            assert event == wanted
