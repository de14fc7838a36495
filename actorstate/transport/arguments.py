"""A tool's arguments, checked by a function compiled once from its input schema.

A tool declares its arguments as JSON Schema, which ``tools/list`` shows to
clients; :func:`compile_arguments` turns that schema into the check every call
of the tool goes through, so what clients are told and what the server checks
cannot drift apart. The compiler knows the part of JSON Schema the tools use
and refuses anything else with :class:`SchemaError` when the tools are built:
a schema never states a rule that is not checked.

The arguments: ``type: object``, ``properties``, ``required`` and
``additionalProperties: false``. A property: a ``type`` (``string``,
``integer``, ``number``, ``boolean``, ``object``), or none for any JSON value;
``minLength`` and ``maxLength`` for a string, ``minimum`` and ``maximum`` for a
number; ``format`` for a string, checked by the function the caller gives for
that format; ``default``, filled in when the argument is not given.
``description`` and ``title`` are for people, and checked by nobody.

Kept from the tools' first, hand-written checks, whose error texts clients
read and tests pin:

- null is "not given" for a property with a type (some clients send null for
  the arguments they omit); for a property of any JSON type it is a value;
- an integer may come as a float with nothing after the point below 2**63
  (JSON clients often send 5.0 for 5): the check passes on the int;
- a boolean is neither an integer nor a number.

The first problem found is the error, looked for in this order: names the
tool does not take, then each property in the schema's order (given, type,
length or range, format).

Both ways a call arrives (the SDK's server and the transport's fast path)
go through this check, in :func:`.tools.call_tool`: the SDK's low-level
server does not check arguments against ``inputSchema`` itself (mcp 2.3
looks at the schema only for ``Mcp-Param`` headers on Streamable HTTP).

The check is one Python function per schema, its source generated from the
schema and compiled once: every call goes through it, and tests written out
inline cost half what the same tests do as a chain of small functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from ..errors import InvalidInput
from .quoting import clipped, clipped_repr

__all__ = ["ArgumentsCheck", "FormatCheck", "SchemaError", "compile_arguments"]

ArgumentsCheck = Callable[[dict[str, Any]], dict[str, Any]]
"""Checks a call's arguments (``InvalidInput`` saying what is wrong); returns them with the
defaults filled in and values normalised: the same dict when nothing changed, else a copy."""

FormatCheck = Callable[[str], str]
"""Checks a string of one ``format`` (``InvalidInput`` if it is not one); returns the form to use."""

# Unknown argument names listed in an error, at most.
_LISTED_NAMES = 3
# A float with nothing after the point, below this, passes as the integer it equals.
_INTEGRAL_FLOATS = 2**63
_ANNOTATIONS = frozenset({"description", "title"})
_OBJECT_KEYWORDS = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties"}
# What a property of each type may say; None: no type, any JSON value.
_PROPERTY_KEYWORDS: dict[str | None, frozenset[str]] = {
    None: _ANNOTATIONS | {"default"},
    "string": _ANNOTATIONS | {"type", "default", "minLength", "maxLength", "format"},
    "integer": _ANNOTATIONS | {"type", "default", "minimum", "maximum"},
    "number": _ANNOTATIONS | {"type", "default", "minimum", "maximum"},
    "boolean": _ANNOTATIONS | {"type", "default"},
    "object": _ANNOTATIONS | {"type"},
}
_NOUNS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
}
# The Python type a JSON value of each type parses to, in the generated source.
_EXACT_TYPES = {"string": "str", "boolean": "bool", "object": "dict"}
# A default is shared by every call that omits the argument: only immutable ones.
_DEFAULT_TYPES = (str, int, float, bool)
_NO_DEFAULT: Any = object()


class SchemaError(ValueError):
    """A schema uses a keyword or a value that :func:`compile_arguments` does not check."""


class _Property(NamedTuple):
    name: str
    kind: str | None  # the JSON type; None: any JSON value
    required: bool
    default: Any  # _NO_DEFAULT: none
    minimum: int | float | None
    maximum: int | float | None
    min_length: int | None
    max_length: int | None
    format_check: FormatCheck | None


def compile_arguments(
    schema: Mapping[str, Any], *, formats: Mapping[str, FormatCheck] | None = None
) -> ArgumentsCheck:
    """The check of the arguments ``schema`` describes, built once; see the module docstring.

    Args:
        schema: the tool's input schema.
        formats: the check of each ``format`` the schema may name.

    Error handling:
        SchemaError: the schema uses a keyword or value the check would not
            check (the error names it), or a default fails its own property's check.
    """
    properties = [_read_property(*item, formats or {}) for item in _read_object(schema)]
    return _generate([_with_checked_default(prop) for prop in properties])


def _read_object(schema: Mapping[str, Any]) -> list[tuple[str, Any, bool]]:
    """The properties of the arguments' ``schema``: name, schema and whether required."""
    _refuse_unknown_keywords(schema, _OBJECT_KEYWORDS, "the arguments' schema")
    if schema.get("type") != "object":
        raise SchemaError(f"the arguments' schema must have type 'object', not {schema.get('type')!r}")
    if schema.get("additionalProperties") is not False:
        raise SchemaError(
            "the arguments' schema must set additionalProperties to false: names it does not list are refused"
        )
    declared = schema.get("properties", {})
    if not isinstance(declared, Mapping) or not all(type(name) is str for name in declared):
        raise SchemaError(f"properties must be an object of schemas by argument name, not {declared!r}")
    required = schema.get("required", [])
    if (
        not isinstance(required, list)
        or not all(type(name) is str for name in required)
        or len(set(required)) != len(required)
        or not set(required) <= set(declared)
    ):
        raise SchemaError(f"required must list some of the properties, each once, not {required!r}")
    return [(name, declared[name], name in required) for name in declared]


def _read_property(name: str, schema: Any, required: bool, formats: Mapping[str, FormatCheck]) -> _Property:
    where = f"property {name!r}"
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    if kind is not None and (type(kind) is not str or kind not in _PROPERTY_KEYWORDS):
        raise SchemaError(
            f"{where} has type {kind!r}; the compiled check knows "
            f"{', '.join(map(str, filter(None, _PROPERTY_KEYWORDS)))} (or no type: any JSON value)"
        )
    _refuse_unknown_keywords(schema, _PROPERTY_KEYWORDS[kind], f"{where} of type {kind or 'any'}")
    default = schema.get("default", _NO_DEFAULT)
    if default is not _NO_DEFAULT and type(default) not in _DEFAULT_TYPES:
        raise SchemaError(f"{where}: a default must be a string, number or boolean, not {default!r}")
    minimum, maximum = _bound(where, schema, "minimum"), _bound(where, schema, "maximum")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise SchemaError(f"{where}: minimum {minimum} is above maximum {maximum}")
    min_length, max_length = _length(where, schema, "minLength"), _length(where, schema, "maxLength")
    if min_length is not None and max_length is not None and min_length > max_length:
        raise SchemaError(f"{where}: minLength {min_length} is above maxLength {max_length}")
    format_check = None
    if "format" in schema:
        format_name = schema["format"]
        format_check = formats.get(format_name) if type(format_name) is str else None
        if format_check is None:
            raise SchemaError(
                f"{where} has format {format_name!r}, which has no check here "
                f"(formats checked: {', '.join(sorted(formats)) or 'none'})"
            )
    return _Property(name, kind, required, default, minimum, maximum, min_length, max_length, format_check)


def _refuse_unknown_keywords(schema: object, known: frozenset[str], where: str) -> None:
    if not isinstance(schema, Mapping):
        raise SchemaError(f"{where} must be a JSON object, not {type(schema).__name__}")
    unknown = set(schema) - known
    if unknown:
        raise SchemaError(
            f"{where} says {', '.join(map(repr, sorted(unknown)))}, which the compiled check would not "
            f"check; it understands {', '.join(sorted(known))}"
        )


def _length(where: str, schema: Mapping[str, Any], keyword: str) -> int | None:
    value = schema.get(keyword)
    if value is not None and (type(value) is not int or value < 0):
        raise SchemaError(f"{where}: {keyword} must be an integer, 0 or more, not {value!r}")
    return value


def _bound(where: str, schema: Mapping[str, Any], keyword: str) -> int | float | None:
    value = schema.get(keyword)
    if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
        raise SchemaError(f"{where}: {keyword} must be a finite number, not {value!r}")
    return value


def _with_checked_default(prop: _Property) -> _Property:
    """``prop`` with its default as its own check passes it on (1.0 for an integer: 1)."""
    if prop.default is _NO_DEFAULT:
        return prop
    check_alone = _generate([prop._replace(required=True, default=_NO_DEFAULT)])
    try:
        default = check_alone({prop.name: prop.default})[prop.name]
    except InvalidInput as error:
        raise SchemaError(f"property {prop.name!r}: its default fails its own check: {error}") from None
    return prop._replace(default=default)


# -- the generated source ---------------------------------------------------------------
#
# Names in it: ``arguments`` (the call's), ``checked`` (what is returned: the
# same dict until a value is filled in or normalised, then a copy), ``value``
# (the property at hand). Text and numbers from the schema are written as
# literals with repr(); defaults and format checks are looked up by name.


def _generate(properties: Sequence[_Property]) -> ArgumentsCheck:
    allowed = frozenset(prop.name for prop in properties)
    takes = ", ".join(sorted(allowed)) or "none"
    namespace: dict[str, Any] = {
        "InvalidInput": InvalidInput,
        "clipped_repr": clipped_repr,
        "allowed": allowed,
        "unknown_names": lambda arguments: _unknown_names(arguments, allowed, takes),
    }
    lines = [
        "def check_arguments(arguments):",
        "    if not arguments.keys() <= allowed:",
        "        raise InvalidInput(unknown_names(arguments))",
        "    checked = arguments",
    ]
    for index, prop in enumerate(properties):
        lines += _property_lines(prop, index, namespace)
    lines.append("    return checked")
    exec(compile("\n".join(lines), "<compiled arguments check>", "exec"), namespace)
    check: ArgumentsCheck = namespace["check_arguments"]
    return check


def _unknown_names(arguments: dict[str, Any], allowed: frozenset[str], takes: str) -> str:
    names = sorted(set(arguments) - allowed)
    listed = ", ".join(clipped(name) for name in names[:_LISTED_NAMES])
    if len(names) > _LISTED_NAMES:
        listed += f" and {len(names) - _LISTED_NAMES} more"
    return f"unknown argument(s) {listed}; this tool takes: {takes}"


def _property_lines(prop: _Property, index: int, namespace: dict[str, Any]) -> list[str]:
    name = repr(prop.name)
    if prop.kind is None:
        if not prop.required and prop.default is _NO_DEFAULT:
            return []  # any JSON value or none: nothing to check
        lines = [f"    value = arguments.get({name})", f"    if value is None and {name} not in arguments:"]
    else:
        lines = [f"    value = arguments.get({name})", "    if value is None:"]
    if prop.required:
        lines.append(f"        raise InvalidInput({f'missing required argument {prop.name!r}'!r})")
    elif prop.default is not _NO_DEFAULT:
        namespace[f"default_{index}"] = prop.default
        lines += _store(name, f"default_{index}", "        ")
    else:
        lines.append("        pass")
    if prop.kind is not None:
        lines.append("    else:")
        lines += ["    " + line for line in _value_lines(prop, index, namespace)]
    return lines


def _value_lines(prop: _Property, index: int, namespace: dict[str, Any]) -> list[str]:
    """The tests of a value given for ``prop`` (indented for the function's body)."""
    name, kind = repr(prop.name), prop.kind
    assert kind is not None
    wrong_type = repr(f"argument {prop.name!r} must be {_NOUNS[kind]}, not ")
    if kind in _EXACT_TYPES:
        lines = [
            f"    if type(value) is not {_EXACT_TYPES[kind]}:",
            f"        raise InvalidInput({wrong_type} + type(value).__name__)",
        ]
    elif kind == "integer":
        lines = [
            "    if type(value) is not int:",
            f"        if type(value) is float and value.is_integer() and abs(value) < {_INTEGRAL_FLOATS}:",
            "            value = int(value)",
            *_store(name, "value", "            "),
            "        else:",
            f"            raise InvalidInput({wrong_type} + clipped_repr(value))",
        ]
    else:
        lines = [
            "    if type(value) is not int and type(value) is not float:",
            f"        raise InvalidInput({wrong_type} + clipped_repr(value))",
        ]
    lines += _range_lines(prop)
    for bound, too_far, what in ((prop.min_length, "<", "minimum"), (prop.max_length, ">", "limit")):
        if bound is not None:
            start, end = repr(f"argument {prop.name!r} is "), repr(f" characters long; the {what} is {bound}")
            lines += [
                f"    if len(value) {too_far} {bound}:",
                f"        raise InvalidInput({start} + str(len(value)) + {end})",
            ]
    if prop.format_check is not None:
        namespace[f"format_{index}"] = prop.format_check
        lines += [
            f"    valid = format_{index}(value)",
            "    if valid is not value:",
            *_store(name, "valid", "        "),
        ]
    return lines


def _range_lines(prop: _Property) -> list[str]:
    noun = _NOUNS[prop.kind or "number"]
    lowest, highest = prop.minimum, prop.maximum
    if lowest is not None and highest is not None:
        text = f"{prop.name} must be {noun} from {lowest} to {highest}, not "
    elif lowest is not None:
        text = f"{prop.name} must be {noun} of at least {lowest}, not "
    elif highest is not None:
        text = f"{prop.name} must be {noun} of at most {highest}, not "
    else:
        return []
    # Written "not >=": NaN compares false with everything, so it is out of range.
    tests = []
    if lowest is not None:
        tests.append(f"not value >= {lowest!r}")
    if highest is not None:
        tests.append(f"not value <= {highest!r}")
    return [f"    if {' or '.join(tests)}:", f"        raise InvalidInput({text!r} + clipped_repr(value))"]


def _store(name: str, expression: str, indent: str) -> list[str]:
    """Lines that set the checked argument ``name`` to ``expression``, copying the arguments first."""
    return [
        f"{indent}if checked is arguments:",
        f"{indent}    checked = dict(arguments)",
        f"{indent}checked[{name}] = {expression}",
    ]
