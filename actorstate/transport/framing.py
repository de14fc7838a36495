"""Newline framing of the stdio wire: bytes in, lines out, whatever the read boundaries.

:class:`LineFramer` is pure: it does no I/O and needs no event loop, so the
transport feeds it what each read returns and acts on what it hands back.
A line is the bytes before a ``\\n``; a ``\\r`` before it stays in the line
(JSON reads it as whitespace, so CRLF clients work). Blank lines (nothing
but ASCII whitespace) are skipped. A line longer than the limit is reported
once as :class:`TooLong` and never buffered whole: once what is buffered of
it passes the limit, everything up to its newline is dropped unread.
"""

from __future__ import annotations

import dataclasses

__all__ = ["LineFramer", "TooLong"]


@dataclasses.dataclass(frozen=True, slots=True)
class TooLong:
    """A line over the limit, dropped.

    ``size`` is how much of it had come when it was dropped: the whole line
    (``whole``) when its newline came in the same read, else only the first
    bytes past the limit (the rest is dropped unread).
    """

    size: int
    whole: bool


class LineFramer:
    """Splits a byte stream into lines of at most ``max_line_bytes`` bytes (newline excluded).

    Feed it each chunk read, in order, with :meth:`feed`; at end of input,
    :meth:`end` hands back a last line that had no newline. Between calls it
    keeps at most the start of one line, of at most ``max_line_bytes``.
    """

    __slots__ = ("_discarding", "_max_line_bytes", "_pending")

    def __init__(self, max_line_bytes: int) -> None:
        self._max_line_bytes = max_line_bytes
        self._pending = bytearray()  # the start of a line whose newline has not come yet
        self._discarding = False  # inside a line that broke the limit: drop through its newline

    def feed(self, chunk: bytes) -> list[bytes | TooLong]:
        """The lines ``chunk`` completes, in order, as bytes; a :class:`TooLong` for each line over the limit."""
        limit = self._max_line_bytes
        pending = self._pending
        end = chunk.find(b"\n")
        if end < 0:  # the line goes on
            if self._discarding:
                return []
            pending += chunk
            if len(pending) <= limit:
                return []
            size = len(pending)
            pending.clear()
            self._discarding = True
            return [TooLong(size, whole=False)]
        events: list[bytes | TooLong] = []
        # The newline ends the line begun in earlier chunks, if any.
        if self._discarding:
            self._discarding = False
        elif len(pending) + end > limit:
            events.append(TooLong(len(pending) + end, whole=True))
        else:
            line = b"".join((pending, chunk[:end])) if pending else chunk[:end]
            if line and not line.isspace():
                events.append(line)
        if pending:
            pending.clear()
        # The lines wholly inside this chunk: the common case, one copy each.
        start = end + 1
        while (end := chunk.find(b"\n", start)) >= 0:
            if end - start > limit:
                events.append(TooLong(end - start, whole=True))
            else:
                line = chunk[start:end]
                if line and not line.isspace():
                    events.append(line)
            start = end + 1
        # What follows the last newline starts the next line.
        if len(chunk) - start > limit:
            events.append(TooLong(len(chunk) - start, whole=False))
            self._discarding = True
        elif start < len(chunk):
            pending += chunk[start:]
        return events

    def end(self) -> bytes | None:
        """At end of input: the last line if it had no newline (and is neither blank nor dropped), else None."""
        line = bytes(self._pending)
        self._pending.clear()
        self._discarding = False
        return line if line and not line.isspace() else None
