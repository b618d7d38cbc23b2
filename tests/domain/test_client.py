"""The rules over what a client asks of a turn, and the smallest instance of a schema."""

from __future__ import annotations

import contextlib
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.client import (
    check_n,
    client_tools,
    response_format_of,
    system_with_instructions,
    tool_choice_of,
)
from nanobot_api.domain.errors import InvalidRequest, NanobotError
from nanobot_api.domain.schema_instance import minimal_instance

PERSON = {
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 2}},
            "required": ["city"],
        },
        "Role": {"enum": ["admin", "user"], "type": "string"},
    },
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 18, "maximum": 130},
        "score": {"type": "number", "exclusiveMinimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "address": {"$ref": "#/$defs/Address"},
        "role": {"$ref": "#/$defs/Role"},
        "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "active": {"type": "boolean"},
        "kind": {"const": "person"},
        "extra": {"allOf": [{"$ref": "#/$defs/Address"}]},
    },
    "required": [
        "name", "age", "score", "tags", "address", "role", "nickname", "active", "kind", "extra",
    ],
}  # fmt: skip


def test_the_minimal_instance_of_a_pydantic_like_schema_is_valid() -> None:
    instance = minimal_instance(PERSON)
    jsonschema.validate(instance, PERSON)
    assert instance == {
        "name": "",
        "age": 18,
        "score": 1,
        "tags": ["", ""],
        "address": {"city": "xx"},
        "role": "admin",
        "nickname": "",
        "active": False,
        "kind": "person",
        "extra": {"city": "xx"},
    }


def test_a_recursive_schema_ends() -> None:
    node = {"$ref": "#"}
    assert minimal_instance({"type": "object", "properties": {"n": node}, "required": ["n"]})


_SCHEMA_KEYS = ["type", "properties", "required", "items", "$ref", "anyOf", "enum", "minimum"]
schemas = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_SCHEMA_KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(_SCHEMA_KEYS), schemas, max_size=4))
def test_any_schema_gives_a_value_never_an_error(schema: dict[str, Any]) -> None:
    minimal_instance(schema)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("json", "response_format must be an object"),
        ({"type": "xml"}, "response_format.type must be one of"),
        ({"type": "json_schema"}, "response_format.json_schema must be an object"),
        ({"type": "json_schema", "json_schema": {}}, "json_schema.name must be a non-empty"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": []}},
            "json_schema.schema must be an object",
        ),
    ],
)
def test_a_bad_response_format_is_refused_naming_the_field(value: object, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        response_format_of(value)


def test_response_formats_that_are_read() -> None:
    assert response_format_of(None) is None
    assert response_format_of({"type": "text"}) is None
    shape = response_format_of({"type": "json_object"})
    assert shape is not None
    assert (shape.kind, shape.schema) == ("json_object", None)


@pytest.mark.parametrize("n", [0, 2, "1", True, 1.0])
def test_n_other_than_1_is_refused(n: object) -> None:
    with pytest.raises(InvalidRequest, match="n must be 1: the agent keeps one answer per turn"):
        check_n(n)


def test_tools_and_tool_choice() -> None:
    tools = client_tools([{"type": "function", "function": {"name": "f"}}])
    assert [t.name for t in tools] == ["f"]
    with pytest.raises(InvalidRequest, match=r"tools\[0\].type must be 'function'"):
        client_tools([{"type": "web_search"}])
    with pytest.raises(InvalidRequest, match="two tools are named 'f'"):
        client_tools([{"type": "function", "function": {"name": "f"}}] * 2)
    choice = {"type": "function", "function": {"name": "f"}}
    assert tool_choice_of(choice, tools) == choice
    with pytest.raises(InvalidRequest, match="not among the request's tools"):
        tool_choice_of({"type": "function", "function": {"name": "g"}}, tools)


@given(st.from_type(object))
def test_the_request_rules_give_a_value_or_a_domain_error(value: object) -> None:
    for rule in (response_format_of, check_n, client_tools):
        with contextlib.suppress(NanobotError):
            rule(value)


def test_instructions_are_marked_as_the_clients() -> None:
    assert system_with_instructions(None, None) is None
    assert system_with_instructions("own", "") == "own"
    assert system_with_instructions(None, "be brief").endswith("turn:\nbe brief")
