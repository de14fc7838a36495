"""How error texts quote caller input: cut short, never an echo of a huge argument."""

from __future__ import annotations

__all__ = ["QUOTED_INPUT_CHARS", "clipped", "clipped_repr"]

# Caller input quoted in an error message is cut to this many characters:
# enough to recognise it, never an echo of a huge argument.
QUOTED_INPUT_CHARS = 60


def clipped(text: str) -> str:
    """``text`` cut to ``QUOTED_INPUT_CHARS`` with an ellipsis: how errors quote caller input.

    Characters that do not print (line breaks, NUL, a right-to-left
    override...) are shown escaped, as ``\\n`` or ``\\u202e``: quoted raw, a
    caller's text could break the message's lines or make it read otherwise.
    """
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= QUOTED_INPUT_CHARS else text[: QUOTED_INPUT_CHARS - 3] + "..."


def clipped_repr(value: object) -> str:
    """``repr(value)``, clipped like :func:`clipped`."""
    return clipped(repr(value))
