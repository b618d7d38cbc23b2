"""Tool arguments: any text gives arguments that fit the schema or a problem, never a crash."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.models import JsonValue
from nanobot_api.domain.tools import ArgumentProblem, check_value, parse_arguments

SCHEMA: dict[str, JsonValue] = {
    "type": "object",
    "properties": {
        "content": {"type": "string"},
        "channel": {"type": "string", "enum": ["telegram", "slack"]},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "media": {"type": "array", "items": {"type": "string"}},
        "flag": {"type": ["boolean", "null"]},
    },
    "required": ["content"],
    "additionalProperties": False,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def test_valid_arguments_come_back_as_an_object() -> None:
    raw = '{"content": "hi", "channel": "slack", "count": 2, "ratio": 0.5, "media": ["a"]}'
    assert parse_arguments(raw, SCHEMA) == json.loads(raw)


def test_empty_text_is_an_empty_object() -> None:
    assert parse_arguments("  ", {"type": "object", "properties": {}}) == {}


def test_each_mistake_is_named() -> None:
    cases = {
        '{"content": ': "not valid JSON",
        "[1, 2]": "must be a JSON object, got an array",
        "{}": "arguments.content is required",
        '{"content": 1}': "arguments.content must be string, got a number",
        '{"content": "x", "channel": "irc"}': 'channel must be one of "telegram", "slack"',
        '{"content": "x", "count": true}': "arguments.count must be integer, got a boolean",
        '{"content": "x", "count": 1.5}': "arguments.count must be integer",
        '{"content": "x", "media": ["a", 2]}': "arguments.media[1] must be string",
        '{"content": "x", "extra": 1}': "arguments.extra is not a known argument",
        '{"content": "x", "flag": "yes"}': "arguments.flag must be boolean or null",
    }
    for raw, expected in cases.items():
        problem = parse_arguments(raw, SCHEMA)
        assert isinstance(problem, ArgumentProblem), raw
        assert expected in problem.message, (raw, problem.message)


def test_integers_written_as_whole_floats_count_as_integers() -> None:
    assert parse_arguments('{"content": "x", "count": 2.0}', SCHEMA) == {
        "content": "x",
        "count": 2.0,
    }


def test_an_enum_of_numbers_does_not_take_booleans() -> None:
    assert check_value(True, {"enum": [1, 2]}) is not None
    assert check_value(1, {"enum": [1, 2]}) is None


@given(st.text())
def test_any_text_gives_arguments_or_a_problem(raw: str) -> None:
    result = parse_arguments(raw, SCHEMA)
    assert isinstance(result, dict | ArgumentProblem)


@given(json_values)
def test_any_json_gives_arguments_that_fit_or_a_problem(value: JsonValue) -> None:
    result = parse_arguments(json.dumps(value), SCHEMA)
    if isinstance(result, dict):
        assert check_value(result, SCHEMA) is None
        assert "content" in result


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    nested = '{"content": "x", "media": ' + "[" * 5000 + "]" * 5000 + "}"
    assert isinstance(parse_arguments(nested, SCHEMA), ArgumentProblem)
