"""JSON Schema of the Python types of attrs classes, for the OpenAPI document.

Covers what wire classes use: str, bool, int, float, None, Literal, unions (``X | None``
included), lists, tuples, dicts and nested attrs classes, which become named
components. Union members that cattrs structures as a tagged union become a ``oneOf``
with a discriminator on ``"type"``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any, Final, Literal, Union, get_args, get_origin

import attrs

Schema = dict[str, Any]
REF: Final = "#/components/schemas/"
_PRIMITIVES: Final[Mapping[object, str]] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


class SchemaBuilder:
    """Turns Python types of attrs fields into JSON Schema, collecting named components."""

    def __init__(self, tagged: Mapping[type, str]) -> None:
        self.components: dict[str, Schema] = {}
        # Union members that carry a "type" tag on the wire (cattrs' tagged union).
        self._tagged = tagged

    def schema(self, tp: object) -> Schema:
        """The schema of ``tp``; TypeError for a type it does not know."""
        if tp is Any:
            return {}
        if tp in _PRIMITIVES:
            return {"type": _PRIMITIVES[tp]}
        if isinstance(tp, type) and attrs.has(tp):
            return self.ref(tp)
        origin, args = get_origin(tp), get_args(tp)
        if origin in (Union, types.UnionType):
            return self._union(args)
        return self._generic(tp, origin, args)

    def _generic(self, tp: object, origin: object, args: tuple[Any, ...]) -> Schema:
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (list, tuple):
            return {"type": "array", "items": self.schema(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.schema(args[1])}
        raise TypeError(f"no JSON Schema for {tp!r}")

    def ref(self, cls: type) -> Schema:
        """A ``$ref`` to the component of attrs class ``cls``, generated on first use."""
        name = cls.__name__
        if name not in self.components:
            self.components[name] = {}  # placeholder: a class may refer to itself
            self.components[name] = self._object(cls)
        return {"$ref": REF + name}

    def _object(self, cls: type) -> Schema:
        module = sys.modules[cls.__module__]
        attrs.resolve_types(cls, globalns=vars(module))
        properties: Schema = {}
        required: list[str] = []
        tag = self._tagged.get(cls)
        if tag is not None:
            properties["type"] = {"const": tag}
            required.append("type")
        for field in attrs.fields(cls):
            properties[field.name] = self.schema(field.type)
            if field.default is attrs.NOTHING:
                required.append(field.name)
        schema: Schema = {"type": "object", "properties": properties}
        if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
            schema["description"] = cls.__doc__.strip()
        if required:
            schema["required"] = required
        return schema

    def _union(self, members: tuple[object, ...]) -> Schema:
        concrete = [m for m in members if m is not type(None)]
        nullable = len(concrete) < len(members)
        if concrete and all(m in self._tagged for m in concrete):
            tagged = self._tagged_union(concrete)
            return {"anyOf": [tagged, {"type": "null"}]} if nullable else tagged
        if all(m in _PRIMITIVES for m in members):
            return {"type": [_PRIMITIVES[m] for m in members]}
        return {"anyOf": [self.schema(m) for m in members]}

    def _tagged_union(self, members: list[object]) -> Schema:
        mapping = {}
        for member in members:
            assert isinstance(member, type)
            mapping[self._tagged[member]] = self.ref(member)["$ref"]
        return {
            "oneOf": [{"$ref": target} for target in mapping.values()],
            "discriminator": {"propertyName": "type", "mapping": mapping},
        }
