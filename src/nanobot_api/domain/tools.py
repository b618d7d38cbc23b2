"""Checking a tool call's arguments before the tool runs.

A model writes tool arguments as JSON text, and models get it wrong: broken JSON, a
missing field, a number where a string belongs. None of that is the caller's fault, so
none of it raises: ``parse_arguments`` returns either the arguments or an
``ArgumentProblem`` whose text the model reads as the tool result and can correct.

The schema subset understood: ``type`` (one name or a list: object, string, integer,
number, boolean, array, null), ``properties``, ``required``, ``additionalProperties``
(false forbids unknown keys), ``items``, ``enum``. Anything else in a schema is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs

from nanobot_api.domain.models import JsonObject, JsonValue

_MAX_DEPTH = 32


@attrs.frozen
class ArgumentProblem:
    """Why a tool call's arguments were refused, phrased for the model to fix them."""

    message: str


def parse_arguments(raw: str, schema: Mapping[str, JsonValue]) -> JsonObject | ArgumentProblem:
    """The arguments as a JSON object that satisfies ``schema``, or what is wrong with them.

    Empty text counts as ``{}``: some models send nothing for a tool without parameters.
    """
    text = raw.strip() or "{}"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return ArgumentProblem(f"arguments are not valid JSON ({exc})")
    if not isinstance(value, dict):
        return ArgumentProblem(f"arguments must be a JSON object, got {_type_name(value)}")
    problem = check_value(value, schema)
    if problem is not None:
        return ArgumentProblem(problem)
    return value


def check_value(value: JsonValue, schema: Mapping[str, JsonValue], path: str = "") -> str | None:
    """The first way ``value`` breaks ``schema``, naming where; None when it fits."""
    return _check(value, schema, path or "arguments", 0)


def _check(value: JsonValue, schema: Mapping[str, JsonValue], path: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return f"{path} is nested too deeply"
    expected = _types(schema.get("type"))
    if expected and not any(_is_type(value, name) for name in expected):
        return f"{path} must be {' or '.join(expected)}, got {_type_name(value)}"
    enum = schema.get("enum")
    if isinstance(enum, list) and not any(_same(value, option) for option in enum):
        options = ", ".join(json.dumps(option) for option in enum)
        return f"{path} must be one of {options}"
    if isinstance(value, dict):
        return _check_object(value, schema, path, depth)
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, dict):
        for index, item in enumerate(value):
            problem = _check(item, items, f"{path}[{index}]", depth + 1)
            if problem is not None:
                return problem
    return None


def _check_object(
    value: dict[str, JsonValue], schema: Mapping[str, JsonValue], path: str, depth: int
) -> str | None:
    properties = schema.get("properties")
    props = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    for name in required if isinstance(required, list) else ():
        if isinstance(name, str) and name not in value:
            return f"{_join(path, name)} is required"
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(value) - set(props))
        if unknown:
            return f"{_join(path, unknown[0])} is not a known argument"
    for name, item in value.items():
        sub = props.get(name)
        if isinstance(sub, dict):
            problem = _check(item, sub, _join(path, name), depth + 1)
            if problem is not None:
                return problem
    return None


def _types(declared: JsonValue) -> list[str]:
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [name for name in declared if isinstance(name, str)]
    return []


def _is_type(value: JsonValue, name: str) -> bool:
    # bool is an int in Python but never an integer or a number in JSON schema.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    checks = {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "null": value is None,
        "integer": _is_integer(value),
        "number": number,
    }
    return checks.get(name, True)


def _is_integer(value: JsonValue) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _same(value: JsonValue, option: JsonValue) -> bool:
    # 1 == True in Python; an enum of [1] must not accept true.
    return isinstance(value, bool) == isinstance(option, bool) and value == option


def _type_name(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}"
