"""Tool arguments checked by a real JSON Schema validator (the message tool's too)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.adapters.tools.json_schema import JsonSchemaArguments, schema_problem
from nanobot_api.domain.models import JsonValue

SCHEMA: dict[str, JsonValue] = {
    "type": "object",
    "properties": {
        "content": {"type": "string"},
        "channel": {"type": "string", "enum": ["telegram", "slack"]},
        "count": {"type": "integer", "minimum": 0},
        "media": {"type": "array", "items": {"type": "string"}},
        "flag": {"type": ["boolean", "null"]},
        "when": {"$ref": "#/$defs/date"},
    },
    "required": ["content"],
    "additionalProperties": False,
    "$defs": {"date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def test_each_mistake_is_named_with_its_path() -> None:
    check = JsonSchemaArguments(SCHEMA)
    cases: dict[str, str] = {
        "{}": "arguments: 'content' is a required property",
        '{"content": 1}': "arguments.content: 1 is not of type 'string'",
        '{"content": "x", "channel": "irc"}': "arguments.channel: 'irc' is not one of",
        '{"content": "x", "count": true}': "arguments.count: True is not of type 'integer'",
        '{"content": "x", "count": -1}': "arguments.count: -1 is less than the minimum of 0",
        '{"content": "x", "media": ["a", 2]}': "arguments.media[1]: 2 is not of type 'string'",
        '{"content": "x", "extra": 1}': "('extra' was unexpected)",
        '{"content": "x", "when": "today"}': "arguments.when: 'today' does not match",
    }
    for raw, expected in cases.items():
        problem = check.problem(json.loads(raw))
        assert problem is not None, raw
        assert expected in problem, (raw, problem)


def test_arguments_that_fit_pass() -> None:
    check = JsonSchemaArguments(SCHEMA)
    assert check.problem({"content": "x", "count": 2.0, "flag": None, "when": "2026-01-02"}) is None


def test_a_remote_reference_is_never_fetched() -> None:
    """A tool server's schema could point anywhere; it reads as the tool's fault."""
    check = JsonSchemaArguments(
        {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/x"}}}
    )
    problem = check.problem({"a": 1})
    assert problem is not None
    assert "cannot be resolved" in problem


def test_an_invalid_schema_is_named() -> None:
    assert schema_problem(SCHEMA) is None
    assert schema_problem({"type": "objekt"}) == (
        "schema.type: 'objekt' is not valid under any of the given schemas"
    )


def test_a_long_value_is_not_quoted_whole() -> None:
    problem = JsonSchemaArguments(SCHEMA).problem({"content": "x" * 10_000, "count": "y" * 10_000})
    assert problem is not None
    assert len(problem) <= 400


@given(json_values)
def test_any_json_gives_none_or_a_problem(value: JsonValue) -> None:
    problem = JsonSchemaArguments(SCHEMA).problem(value)
    assert problem is None or problem.startswith("arguments")
