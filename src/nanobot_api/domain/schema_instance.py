"""The smallest JSON value a JSON schema accepts, for answers that only show a shape.

The offline echo agent answers a ``json_schema`` request with one, so a
structured-output client (instructor, the Agents SDK's ``output_type``, LangChain's
``with_structured_output``) gets a document it can parse against a server that has no
model. It reads the schemas such clients send (pydantic's, zod's): objects with
``required`` properties, arrays, scalars with their bounds, ``enum``/``const``,
``$ref`` into ``$defs``/``definitions``, and ``anyOf``/``oneOf``/``allOf``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

from nanobot_api.domain.models import JsonValue

# Deeper than any schema a client writes by hand; a recursive $ref stops here.
_MAX_DEPTH = 32


def minimal_instance(schema: Mapping[str, JsonValue]) -> JsonValue:
    """A small value valid against ``schema`` (its required parts only, each as small
    as its bounds allow). Never raises: what it cannot read becomes ``null`` or ``{}``."""
    return _instance(schema, schema, 0)


_UNSET: Final = object()


def _instance(schema: object, root: Mapping[str, JsonValue], depth: int) -> JsonValue:
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    fixed = _fixed(schema)
    if fixed is not _UNSET:
        return cast("JsonValue", fixed)
    inner = _inner(schema, root)
    if inner is not _UNSET:
        return _instance(inner, root, depth + 1)
    every = schema.get("allOf")
    if isinstance(every, list) and every:
        merged: dict[str, JsonValue] = {}
        for part in every:
            value = _instance(part, root, depth + 1)
            if not isinstance(value, dict):
                return value
            merged.update(value)
        return merged
    return _typed(schema, root, depth)


def _fixed(schema: Mapping[str, JsonValue]) -> object:
    """The value a schema names outright (``const``, an ``enum``'s first, ``default``)."""
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    return schema.get("default", _UNSET)


def _inner(schema: Mapping[str, JsonValue], root: Mapping[str, JsonValue]) -> object:
    """The schema this one stands for: a ``$ref``'s target, an alternative's first."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _resolve(ref, root)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _first_not_null(options)
    return _UNSET


def _typed(schema: Mapping[str, JsonValue], root: Mapping[str, JsonValue], depth: int) -> JsonValue:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        kind = kinds[0]
    if kind is None:
        kind = "object" if "properties" in schema else None
    if kind == "object":
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else []
        return {
            str(name): _instance(properties.get(str(name), {}), root, depth + 1) for name in names
        }
    if kind == "array":
        items = schema.get("items", {})
        count = schema.get("minItems")
        count = count if type(count) is int and count > 0 else 0
        return [_instance(items, root, depth + 1) for _ in range(min(count, 100))]
    if kind == "string":
        length = schema.get("minLength")
        return "x" * min(length, 10_000) if type(length) is int and length > 0 else ""
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    return None


def _number(schema: Mapping[str, JsonValue], *, integer: bool) -> JsonValue:
    low = schema.get("minimum")
    exclusive = schema.get("exclusiveMinimum")
    value: float = 0
    if isinstance(low, int | float) and not isinstance(low, bool):
        value = max(value, low) if low > 0 else low
    if isinstance(exclusive, int | float) and not isinstance(exclusive, bool):
        value = max(value, exclusive + 1) if exclusive >= value else value
    high = schema.get("maximum")
    if isinstance(high, int | float) and not isinstance(high, bool) and value > high:
        value = high
    if integer:
        return int(value) if float(value).is_integer() else int(value) + 1
    return value


def _first_not_null(options: list[JsonValue]) -> JsonValue:
    for option in options:
        if not (isinstance(option, Mapping) and option.get("type") == "null"):
            return option
    return options[0]


def _resolve(ref: str, root: Mapping[str, JsonValue]) -> JsonValue:
    """A local ``#/...`` reference within the schema; anything else is unknown (None)."""
    if not ref.startswith("#"):
        return None
    node: JsonValue = dict(root)
    for part in ref[1:].split("/"):
        if not part:
            continue
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node
