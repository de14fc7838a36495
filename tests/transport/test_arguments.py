"""Tool arguments checked by functions compiled from the tools' input schemas.

Each keyword the compiler knows is checked with the texts clients read; any
other keyword is refused when the schema is compiled; and for the tools'
own schemas and for generated ones, the compiled check accepts exactly the
arguments that jsonschema (given our two conventions: null is "not given" for
a typed property, an integral float passes as an integer below 2**63)
accepts, and passes them on as that reading of the schema says.
"""

from __future__ import annotations

import copy
import math
import uuid
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import actorstate
from actorstate import Config
from actorstate.errors import InvalidInput
from actorstate.state import canonical_session_id
from actorstate.transport.arguments import SchemaError, compile_arguments
from actorstate.transport.tools import Tool, ToolContext, ToolError, ToolResult, build_tools, call_tool

SESSION_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
TOOLS = build_tools(Config())


def _upper(value: str) -> str:
    return value.upper()


def _schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required is not None:
        schema["required"] = required
    return schema


def _error(schema: dict[str, Any], arguments: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as refused:
        compile_arguments(schema, formats={"upper": _upper})(arguments)
    return str(refused.value)


def _checked(schema: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    return compile_arguments(schema, formats={"upper": _upper})(arguments)


# -- each keyword -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "text"),
    [
        ("string", 5, "argument 'a' must be a string, not int"),
        ("string", ["x"], "argument 'a' must be a string, not list"),
        ("integer", "5", "argument 'a' must be an integer, not '5'"),
        ("integer", True, "argument 'a' must be an integer, not True"),
        ("integer", 2.5, "argument 'a' must be an integer, not 2.5"),
        ("integer", 2.0**63, "argument 'a' must be an integer, not 9.223372036854776e+18"),
        ("integer", "x" * 100, "argument 'a' must be an integer, not '" + "x" * 56 + "..."),
        ("number", False, "argument 'a' must be a number, not False"),
        ("number", "1.5", "argument 'a' must be a number, not '1.5'"),
        ("boolean", 1, "argument 'a' must be a boolean, not int"),
        ("object", [], "argument 'a' must be an object, not list"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_argument(kind: str, value: Any, text: str) -> None:
    """Each type refuses other JSON types (booleans are not numbers) with the text clients read."""
    assert _error(_schema({"a": {"type": kind}}), {"a": value}) == text


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("string", ""),
        ("integer", -(2**70)),
        ("number", 1),
        ("number", 1.5),
        ("boolean", False),
        ("object", {"k": [1]}),
    ],
)
def test_a_value_of_the_right_type_is_passed_on_as_given(kind: str, value: Any) -> None:
    """A valid value comes out as the very object given, and the arguments dict is not copied."""
    arguments = {"a": value}
    checked = _checked(_schema({"a": {"type": kind}}), arguments)
    assert checked is arguments
    assert checked["a"] is value


def test_an_integral_float_passes_as_an_int_below_2_to_the_63() -> None:
    """5.0 is taken as 5 (an int, in a copy: the caller's dict is unchanged); 2**63 as a float is not."""
    schema = _schema({"a": {"type": "integer"}})
    arguments = {"a": 5.0}
    checked = _checked(schema, arguments)
    assert type(checked["a"]) is int
    assert checked == {"a": 5}
    assert type(arguments["a"]) is float
    assert _checked(schema, {"a": -(2.0**62)})["a"] == -(2**62)
    assert "must be an integer" in _error(schema, {"a": -(2.0**63)})


def test_a_required_argument_missing_or_null_is_named() -> None:
    """A required typed argument absent or null is missing; for any JSON value, null is a value."""
    schema = _schema({"a": {"type": "string"}, "b": {}}, ["a", "b"])
    assert _error(schema, {"b": 1}) == "missing required argument 'a'"
    assert _error(schema, {"a": None, "b": 1}) == "missing required argument 'a'"
    assert _error(schema, {"a": "x"}) == "missing required argument 'b'"
    assert _checked(schema, {"a": "x", "b": None}) == {"a": "x", "b": None}


def test_an_optional_argument_may_be_absent_or_null() -> None:
    """An optional argument with no default stays absent, or null (read as not given)."""
    schema = _schema({"a": {"type": "integer"}})
    assert _checked(schema, {}) == {}
    assert _checked(schema, {"a": None}) == {"a": None}


def test_defaults_fill_in_absent_and_null_arguments_in_a_copy() -> None:
    """A default fills an argument absent or null; the caller's dict is left as it was."""
    schema = _schema({"a": {"type": "string", "default": "d"}, "b": {"default": 3}, "c": {"type": "integer"}})
    arguments: dict[str, Any] = {"a": None, "c": 1}
    assert _checked(schema, arguments) == {"a": "d", "b": 3, "c": 1}
    assert arguments == {"a": None, "c": 1}
    assert _checked(schema, {"a": "x", "b": None, "c": None}) == {"a": "x", "b": None, "c": None}


def test_names_the_schema_does_not_list_are_refused_listed_and_clipped() -> None:
    """Unknown names come sorted, three at most, cut short, with the names the tool takes."""
    schema = _schema({"b": {}, "a": {}})
    assert _error(schema, {"z": 1, "a": 1}) == "unknown argument(s) z; this tool takes: a, b"
    text = _error(schema, {"w": 1, "x": 1, "y": 1, "z": 1, "q" * 100: 1})
    assert text == f"unknown argument(s) {'q' * 57}..., w, x and 2 more; this tool takes: a, b"
    assert _error(_schema({}), {"a": 1}) == "unknown argument(s) a; this tool takes: none"


def test_unknown_names_that_do_not_print_are_shown_escaped() -> None:
    """A name holding a line break, a NUL or a right-to-left override is shown as a quoted literal,
    so it cannot break the error's line or hide what follows it; printable names stay as they are."""
    schema = _schema({"a": {}})
    forged = "x\u202e\n; this tool takes: nothing\x00"
    text = _error(schema, {forged: 1, "é b": 1})
    assert text == "unknown argument(s) 'x\\u202e\\n; this tool takes: nothing\\x00', é b; this tool takes: a"
    assert text.isprintable()


def test_unknown_names_are_found_first_then_properties_in_the_schema_order() -> None:
    """With several problems, the error is the first in this order: unknown names, then each property."""
    schema = _schema({"b": {"type": "string"}, "a": {"type": "string"}}, ["a", "b"])
    assert _error(schema, {"c": 1}).startswith("unknown argument(s) c")
    assert _error(schema, {}) == "missing required argument 'b'"
    assert _error(schema, {"a": 1, "b": 1}) == "argument 'b' must be a string, not int"


@pytest.mark.parametrize(
    ("bounds", "value", "text"),
    [
        ({"minimum": 1, "maximum": 50}, 0, "a must be an integer from 1 to 50, not 0"),
        ({"minimum": 1, "maximum": 50}, 51.0, "a must be an integer from 1 to 50, not 51"),
        ({"minimum": 1}, -(10**80), "a must be an integer of at least 1, not -" + "1" + "0" * 55 + "..."),
        ({"maximum": -1}, 0, "a must be an integer of at most -1, not 0"),
    ],
)
def test_an_integer_out_of_its_range_is_refused(bounds: dict[str, int], value: Any, text: str) -> None:
    """minimum and maximum are inclusive; the error says the range and quotes the value cut short."""
    schema = _schema({"a": {"type": "integer", **bounds}})
    assert _error(schema, {"a": value}) == text
    for inside in (bounds.get("minimum"), bounds.get("maximum")):
        if inside is not None:
            assert _checked(schema, {"a": inside}) == {"a": inside}


def test_a_number_out_of_its_range_is_refused_nan_too() -> None:
    """A number's bounds hold for floats and ints; NaN, which compares false with everything, is out."""
    schema = _schema({"a": {"type": "number", "minimum": 0.5, "maximum": 2}})
    assert _checked(schema, {"a": 0.5}) == {"a": 0.5}
    assert _checked(schema, {"a": 2}) == {"a": 2}
    assert _error(schema, {"a": 0}) == "a must be a number from 0.5 to 2, not 0"
    assert _error(schema, {"a": math.nan}) == "a must be a number from 0.5 to 2, not nan"
    assert _error(schema, {"a": math.inf}) == "a must be a number from 0.5 to 2, not inf"
    assert _error(_schema({"a": {"type": "number", "maximum": 2}}), {"a": math.nan}).endswith("not nan")
    assert _error(_schema({"a": {"type": "number", "minimum": 2}}), {"a": math.nan}).endswith("not nan")


def test_a_string_out_of_its_lengths_is_refused() -> None:
    """minLength and maxLength count characters (not bytes), inclusive."""
    schema = _schema({"a": {"type": "string", "minLength": 2, "maxLength": 3}})
    assert _checked(schema, {"a": "éé"}) == {"a": "éé"}
    assert _checked(schema, {"a": "🙂🙂🙂"}) == {"a": "🙂🙂🙂"}
    assert _error(schema, {"a": "x"}) == "argument 'a' is 1 characters long; the minimum is 2"
    assert _error(schema, {"a": "x" * 10**6}) == "argument 'a' is 1000000 characters long; the limit is 3"


def test_a_format_is_checked_by_its_function_which_gives_the_value_passed_on() -> None:
    """The format's function runs on a string (only after the type check) and its result is passed on."""
    schema = _schema({"a": {"type": "string", "format": "upper"}})
    assert _checked(schema, {"a": "abc"}) == {"a": "ABC"}
    assert _error(schema, {"a": 1}) == "argument 'a' must be a string, not int"

    def refuse(value: str) -> str:
        raise InvalidInput(f"not one: {value}")

    with pytest.raises(InvalidInput, match=r"^not one: abc$"):
        compile_arguments(schema, formats={"upper": refuse})({"a": "abc"})


def test_annotations_are_accepted_and_check_nothing() -> None:
    """description and title, on the arguments or a property, change nothing that is checked."""
    schema = _schema({"a": {"type": "string", "description": "d", "title": "t"}, "b": {"description": "any"}})
    schema["description"] = "the arguments"
    assert _checked(schema, {"a": "x", "b": [None]}) == {"a": "x", "b": [None]}
    assert _error(schema, {"a": 1}) == "argument 'a' must be a string, not int"


# -- refused when compiled -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({**_schema({}), "patternProperties": {}}, "'patternProperties'"),
        ({**_schema({}), "$schema": "https://json-schema.org/draft/2020-12/schema"}, "'$schema'"),
        (_schema({"a": {"type": "string", "pattern": "^x"}}), "'pattern'"),
        (_schema({"a": {"type": "string", "enum": ["x"]}}), "'enum'"),
        (_schema({"a": {"type": "integer", "exclusiveMinimum": 0}}), "'exclusiveMinimum'"),
        (_schema({"a": {"type": "integer", "multipleOf": 2}}), "'multipleOf'"),
        (_schema({"a": {"type": "string", "minimum": 1}}), "'minimum'"),
        (_schema({"a": {"type": "integer", "maxLength": 1}}), "'maxLength'"),
        (_schema({"a": {"type": "object", "properties": {}}}), "'properties'"),
        (_schema({"a": {"const": 1}}), "'const'"),
        (_schema({"a": {"anyOf": [{"type": "string"}]}}), "'anyOf'"),
        (_schema({"a": {"type": "array"}}), "type 'array'"),
        (_schema({"a": {"type": ["string", "null"]}}), "type ['string', 'null']"),
        (_schema({"a": {"type": "string", "format": "email"}}), "format 'email'"),
        (_schema({"a": "string"}), "must be a JSON object"),
        ({"type": "object", "properties": {}}, "additionalProperties to false"),
        ({"type": "object", "properties": {}, "additionalProperties": True}, "additionalProperties to false"),
        ({"type": "array", "additionalProperties": False}, "type 'object'"),
        (_schema({"a": {}}, ["b"]), "required must list"),
        (_schema({"a": {}}, ["a", "a"]), "required must list"),
        (_schema({"a": {}}, [["a"]]), "required must list"),
        (_schema({"a": {"type": "integer", "default": "1"}}), "default fails its own check"),
        (_schema({"a": {"type": "integer", "minimum": 1, "default": 0}}), "default fails its own check"),
        (_schema({"a": {"default": [1]}}), "a default must be a string, number or boolean"),
        (_schema({"a": {"type": "integer", "minimum": 2, "maximum": 1}}), "minimum 2 is above maximum 1"),
        (_schema({"a": {"type": "string", "minLength": 2, "maxLength": 1}}), "minLength 2 is above"),
        (_schema({"a": {"type": "number", "maximum": math.inf}}), "maximum must be a finite number"),
        (_schema({"a": {"type": "integer", "minimum": True}}), "minimum must be a finite number"),
        (_schema({"a": {"type": "string", "minLength": -1}}), "minLength must be an integer, 0 or more"),
    ],
)
def test_a_schema_saying_what_the_check_would_not_check_is_refused(schema: dict[str, Any], says: str) -> None:
    """Any keyword, type, format or value the compiler does not check raises SchemaError naming it."""
    with pytest.raises(SchemaError) as refused:
        compile_arguments(schema, formats={"upper": _upper})
    assert says in str(refused.value)


def test_a_tool_whose_schema_cannot_be_compiled_is_refused_when_made() -> None:
    """Making a Tool compiles its input schema: a keyword not checked fails there, naming the tool."""

    async def handler(ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult:
        raise AssertionError("never called")

    with pytest.raises(SchemaError, match=r"^tool 'shout': property 'text' .*'pattern'"):
        Tool("shout", "", _schema({"text": {"type": "string", "pattern": "^[A-Z]+$"}}), {}, handler)


def test_a_tools_check_states_the_limits_of_its_config() -> None:
    """The bounds a Config gives the schemas are what the compiled checks enforce, defaults included."""
    tools = build_tools(
        Config(max_turns_limit=20, default_max_turns=5, list_page_size=7, max_list_page_size=30)
    )
    get_context = tools["get_context"].check_arguments
    assert get_context({"sessionId": SESSION_ID}) == {"sessionId": SESSION_ID, "maxTurns": 5}
    with pytest.raises(InvalidInput, match=r"^maxTurns must be an integer from 1 to 20, not 21$"):
        get_context({"sessionId": SESSION_ID, "maxTurns": 21})
    assert tools["list_sessions"].check_arguments({}) == {"clientId": "anonymous", "limit": 7}
    with pytest.raises(InvalidInput, match=r"^limit must be an integer from 1 to 30, not 31$"):
        tools["list_sessions"].check_arguments({"limit": 31})


# -- the compiled checks against jsonschema ---------------------------------------------------------

_UUID_FORMAT = jsonschema.FormatChecker(formats=())


@_UUID_FORMAT.checks("uuid", raises=ValueError)
def _is_uuid(instance: object) -> bool:
    return not isinstance(instance, str) or uuid.UUID(instance) is not None


def _uuid_canonical(value: str) -> str:
    return str(uuid.UUID(value))


def reference_reading(schema: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any] | None:
    """What ``arguments`` mean under ``schema``: None if refused, else every property given or defaulted.

    jsonschema decides, once our conventions are applied: a null for a
    property with a type is dropped (not given); a float for an integer
    property must be below 2**63 (jsonschema takes any integral float); and
    NaN, which JSON cannot carry but a lenient parser may give, is within no
    bounds (jsonschema lets it through, as it compares false with them).
    """
    properties = schema["properties"]
    instance = {}
    for name, value in arguments.items():
        declared = properties.get(name, {})
        if value is None and "type" in declared:
            continue
        if declared.get("type") == "integer" and type(value) is float and abs(value) >= 2**63:
            return None
        if value != value and ("minimum" in declared or "maximum" in declared):
            return None
        instance[name] = value
    if not jsonschema.Draft202012Validator(schema, format_checker=_UUID_FORMAT).is_valid(instance):
        return None
    reading = {}
    for name, declared in properties.items():
        if name in instance:
            value = instance[name]
            if declared.get("type") == "integer":
                value = int(value)
            if declared.get("format") == "uuid":
                value = _uuid_canonical(value)
            reading[name] = value
        elif "default" in declared:
            reading[name] = declared["default"]
    return reading


def _as_read(schema: dict[str, Any], checked: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The checked arguments as a comparable reading: typed nulls dropped; types and reprs (NaN too)."""
    properties = schema["properties"]
    return sorted(
        (name, type(value).__name__, repr(value))
        for name, value in checked.items()
        if value is not None or "type" not in properties[name]
    )


def _assert_agrees_with_the_reference(schema: dict[str, Any], check: Any, arguments: dict[str, Any]) -> None:
    before = copy.deepcopy(arguments)  # the same float objects: NaN compares equal to itself here
    try:
        checked = check(arguments)
    except InvalidInput as error:
        checked, refusal = None, str(error)
    else:
        refusal = None
    assert arguments == before  # the caller's dict is never changed
    reading = reference_reading(schema, arguments)
    assert (checked is None) == (reading is None), (arguments, refusal)
    if checked is not None and reading is not None:
        assert _as_read(schema, checked) == _as_read(schema, reading), arguments


_uuids = st.uuids().flatmap(
    lambda made: st.sampled_from(
        [str(made), str(made).upper(), made.hex, "{" + str(made) + "}", f"urn:uuid:{made}", str(made)[:-1]]
    )
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 60)
    | st.integers()
    | st.sampled_from([2.0, -1.0, 0.0, 50.0, 2.0**62, 2.0**63, -(2.0**63), 1e300, math.inf, math.nan])
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "counter", "x" * 70_000])
    | _uuids
)
_json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def _tool_and_arguments(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(TOOLS)))
    properties = TOOLS[name].input_schema["properties"]
    arguments: dict[str, Any] = {}
    for argument in properties:
        if draw(st.booleans()):
            arguments[argument] = draw(
                _uuids if argument == "sessionId" and draw(st.booleans()) else _json_values
            )
    arguments.update(
        draw(st.dictionaries(st.sampled_from(["colour", "session_id", "x" * 100]), _scalars, max_size=2))
    )
    return name, arguments


@given(_tool_and_arguments())
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@example(("get_context", {"sessionId": SESSION_ID, "maxTurns": 2.0}))
@example(("get_context", {"sessionId": SESSION_ID, "maxTurns": True}))
@example(("increment_counter", {"sessionId": SESSION_ID.upper(), "key": None, "by": -(2.0**63)}))
@example(("add_context", {"sessionId": SESSION_ID, "key": "k", "value": None}))
@example(("record_action", {"sessionId": SESSION_ID, "action": "a", "details": None}))
@example(("list_sessions", {"clientId": None, "limit": 1000.0, "cursor": None}))
@example(("set_preference", {"sessionId": "x" * 70_000, "key": "k", "value": 1}))
def test_each_tools_check_accepts_exactly_what_its_schema_says(call: tuple[str, dict[str, Any]]) -> None:
    """For every tool, generated arguments (right and wrong types, missing, extra, null, huge, bools,
    floats) pass the compiled check exactly when they pass the reference reading of the tool's schema,
    and come out as that reading says: defaults filled in, ints for integral floats, canonical ids."""
    name, arguments = call
    _assert_agrees_with_the_reference(TOOLS[name].input_schema, TOOLS[name].check_arguments, arguments)


_NAMES = ["a", "b", "c"]
_bounds = st.one_of(st.none(), st.integers(-3, 5), st.floats(-3, 5))


@st.composite
def _property_schemas(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([None, "string", "integer", "number", "boolean", "object"]))
    schema: dict[str, Any] = {} if kind is None else {"type": kind}
    if kind == "string":
        lengths = sorted(draw(st.lists(st.integers(0, 6), min_size=2, max_size=2)))
        for keyword, length in zip(("minLength", "maxLength"), lengths, strict=True):
            if draw(st.booleans()):
                schema[keyword] = length
        if draw(st.booleans()):
            schema["format"] = "uuid"
    if kind in ("integer", "number"):
        low, high = draw(_bounds), draw(_bounds)
        if low is not None and high is not None and low > high:
            low, high = high, low
        if kind == "integer":  # whole bounds, so that the texts say what is meant
            low, high = (None if bound is None else math.floor(bound) for bound in (low, high))
        if low is not None:
            schema["minimum"] = low
        if high is not None:
            schema["maximum"] = high
    if kind != "object" and draw(st.booleans()):
        schema["default"] = draw(
            st.booleans() | st.integers(-4, 6) | st.floats(-4, 6) | st.text(max_size=7) | _uuids
        )
    if draw(st.booleans()):
        schema["description"] = draw(st.text(max_size=5))
    return schema


@st.composite
def _schemas(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(_NAMES), unique=True, max_size=3))
    properties = {name: draw(_property_schemas()) for name in names}
    required = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    return _schema(properties, required or None)


@given(_schemas(), st.data())
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_checks_of_generated_schemas_agree_with_the_reference(
    schema: dict[str, Any], data: st.DataObject
) -> None:
    """For generated schemas of the subset, a schema whose defaults pass their own properties compiles,
    one whose defaults do not is refused, and the compiled check agrees with the reference reading."""
    defaults_valid = all(
        reference_reading(_schema({name: declared}), {name: declared["default"]}) is not None
        for name, declared in schema["properties"].items()
        if "default" in declared
    )
    if not defaults_valid:
        with pytest.raises(SchemaError, match="default fails its own check"):
            compile_arguments(schema, formats={"uuid": canonical_session_id})
        return
    check = compile_arguments(schema, formats={"uuid": canonical_session_id})
    # The reference fills in a default as written, the check as its own check passes it on (2.0: 2).
    schema = copy.deepcopy(schema)
    for name, declared in schema["properties"].items():
        if "default" in declared:
            reading = reference_reading(_schema({name: declared}), {name: declared["default"]})
            assert reading is not None
            declared["default"] = reading[name]
    arguments = data.draw(st.dictionaries(st.sampled_from([*_NAMES, "d"]), _json_values, max_size=4))
    _assert_agrees_with_the_reference(schema, check, arguments)


# -- through call_tool ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_call_tool_runs_the_handler_on_checked_arguments_and_reports_refusals() -> None:
    """A tool runs on the checked arguments (2.0 as 2, defaults, an id spelled otherwise made canonical);
    a refusal is the tool's error, in the check's words, and nothing was changed."""
    async with actorstate.open_state() as state:
        context = ToolContext(state)
        session_id = (await call_tool(context, "create_session", {"clientId": None})).structured["sessionId"]
        assert await state.list_sessions("anonymous") == [session_id]
        bumped = await call_tool(context, "increment_counter", {"sessionId": session_id.upper(), "by": 2.0})
        assert bumped.structured == {"sessionId": session_id, "key": "counter", "value": 2}
        assert bumped.text == "Counter: 2"
        with pytest.raises(ToolError, match=r"^argument 'by' must be an integer, not True$"):
            await call_tool(context, "increment_counter", {"sessionId": session_id, "by": True})
        with pytest.raises(ToolError, match=r"^missing required argument 'action'$"):
            await call_tool(context, "record_action", {"sessionId": session_id, "details": "d"})
        context_now = await call_tool(context, "get_context", {"sessionId": session_id, "maxTurns": None})
        assert context_now.structured["metadata"] == {"counter": 2}
        assert context_now.structured["totalEvents"] == 0
