"""How error texts quote caller input: cut short, never an echo of a huge argument."""

from __future__ import annotations

__all__ = ["QUOTED_INPUT_CHARS", "clipped", "clipped_repr"]

# Caller input quoted in an error message is cut to this many characters:
# enough to recognise it, never an echo of a huge argument.
QUOTED_INPUT_CHARS = 60


def clipped(text: str) -> str:
    """``text`` cut to ``QUOTED_INPUT_CHARS`` with an ellipsis: how errors quote caller input.

    Text with characters that do not print (line breaks, NUL, a
    right-to-left override...) is shown as a quoted Python literal, those
    characters escaped (``'a\\nb'``): quoted raw, it could break the message's
    lines or make it read otherwise, and the quotes tell an escape from a
    backslash the caller sent.
    """
    if not text.isprintable():
        text = repr(text)
    return text if len(text) <= QUOTED_INPUT_CHARS else text[: QUOTED_INPUT_CHARS - 3] + "..."


def clipped_repr(value: object) -> str:
    """``repr(value)``, clipped like :func:`clipped`."""
    return clipped(repr(value))
