"""JSON-like values: what a session may hold, and how many bytes it costs.

A value is JSON-like when it is ``None``, a bool, an int that fits in 64
bits, a finite float, a str, or a list or str-keyed dict of JSON-like values.
Anything else is refused at the boundary, so every stored session can be
encoded with msgpack and rendered as JSON.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import msgpack

from ..errors import InvalidInput

__all__ = ["JSONValue", "check_json_like", "check_utf8", "copy_json_like", "encoded_size", "is_json_like"]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

_SCALARS = (str, int, float, bool, type(None))
_MAX_DEPTH = 64
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

_packb = msgpack.Packer(use_bin_type=True).pack


def encoded_size(value: Any) -> int:
    """Bytes ``value`` takes once encoded with msgpack (checked values only)."""
    return len(_packb(value))


def check_json_like(value: Any, what: str) -> None:
    """Raise :class:`InvalidInput` naming ``what`` unless ``value`` is JSON-like."""
    _check(value, what, 0)


def _check(value: Any, what: str, depth: int) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidInput(f"{what}: integer {value} does not fit in 64 bits")
        return
    if kind is float:
        if not math.isfinite(value):
            raise InvalidInput(f"{what}: {value} is not a finite number (JSON has no NaN or Infinity)")
        return
    if depth >= _MAX_DEPTH:
        raise InvalidInput(f"{what}: nested deeper than {_MAX_DEPTH} levels")
    if kind is list:
        for item in value:
            _check(item, what, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidInput(f"{what}: object keys must be strings, found {key!r}")
            _check(item, what, depth + 1)
        return
    raise InvalidInput(
        f"{what}: a {kind.__name__} is not a JSON value "
        "(use null, true/false, numbers, strings, lists and string-keyed objects)"
    )


def is_json_like(value: Any) -> bool:
    """Whether ``value`` is JSON-like: the test :func:`check_json_like` makes, without a message.

    About twice as fast, for decoding stored sessions, where every value is
    tested and nearly all pass; call ``check_json_like`` to say why one fails.
    """
    kind = type(value)
    if kind is dict or kind is list:
        return _is_json_like(value, 0)
    return _is_json_like([value], -1)  # a scalar, tested as an item


def _is_json_like(container: dict[Any, Any] | list[Any], depth: int) -> bool:
    # One flat loop with the common types first: this runs over every value
    # of a session each time one is loaded.
    if depth >= _MAX_DEPTH:
        return False
    if type(container) is dict:
        for key in container:
            if type(key) is not str:
                return False
        items: Any = container.values()
    else:
        items = container
    for item in items:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is dict or kind is list:
            if not _is_json_like(item, depth + 1):
                return False
        elif kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return False
        elif kind is not float or not math.isfinite(item):
            return False
    return True


def check_utf8(text: str, what: str) -> None:
    """Refuse text that cannot be stored (lone surrogates from broken JSON input)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInput(f"{what}: text that is not valid Unicode ({error.reason})") from None


def copy_json_like(value: Any) -> Any:
    """A deep copy of a checked value (msgpack round trip: fast and exact)."""
    if type(value) in _SCALARS:
        return value
    return msgpack.unpackb(_packb(value), raw=False, strict_map_key=True)
