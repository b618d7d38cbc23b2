"""Tool calls in the domain: argument text, wrapped names, bounded results."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.models import ImagePart
from nanobot_api.domain.tools import (
    ArgumentProblem,
    ResultLimits,
    ToolOutput,
    bounded_output,
    decode_arguments,
    distinct_tool_name,
    is_enabled,
    tool_name,
)

PROVIDER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_an_object_comes_back_and_empty_text_is_an_empty_object() -> None:
    assert decode_arguments('{"a": [1, 2]}') == {"a": [1, 2]}
    assert decode_arguments("  ") == {}


def test_text_that_is_not_a_json_object_is_a_problem_the_model_can_read() -> None:
    assert "not valid JSON" in str(decode_arguments('{"a": '))
    problem = decode_arguments("[1, 2]")
    assert isinstance(problem, ArgumentProblem)
    assert problem.message == "arguments must be a JSON object, got an array"


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    assert isinstance(decode_arguments("[" * 5000 + "]" * 5000), ArgumentProblem)


@given(st.text())
def test_any_text_gives_an_object_or_a_problem(raw: str) -> None:
    assert isinstance(decode_arguments(raw), dict | ArgumentProblem)


def test_wrapped_names_follow_nanobot() -> None:
    assert tool_name("files", "read_file") == "mcp_files_read_file"
    assert tool_name("my server", "get.thing") == "mcp_my_server_get_thing"


@given(st.text(), st.text())
def test_every_wrapped_name_fits_the_providers_rules(server: str, tool: str) -> None:
    assert PROVIDER_NAME.match(tool_name(server, tool))


@given(st.text(min_size=60), st.text(min_size=1), st.text(min_size=1))
def test_long_names_that_share_a_beginning_still_differ(head: str, a: str, b: str) -> None:
    if a != b:
        assert tool_name("s", head + a) != tool_name("s", head + b)


def test_names_that_differ_only_in_replaced_characters_are_told_apart() -> None:
    first = tool_name("s", "a.b")
    second = distinct_tool_name("s", "a_b", {first})
    assert second != first
    assert PROVIDER_NAME.match(second)


def test_enabled_tools_take_star_raw_or_wrapped_names() -> None:
    assert is_enabled(["*"], "read", "mcp_f_read")
    assert is_enabled(["read"], "read", "mcp_f_read")
    assert is_enabled(["mcp_f_read"], "read", "mcp_f_read")
    assert not is_enabled(["write"], "read", "mcp_f_read")
    assert not is_enabled([], "read", "mcp_f_read")


def test_long_text_is_cut_with_a_marker() -> None:
    output = bounded_output(["x" * 120], [], ResultLimits(max_chars=100))
    assert output.text.startswith("x" * 100)
    assert output.text.endswith("[... truncated: 20 more characters]")


def test_images_past_the_bounds_are_left_out_and_named() -> None:
    small = ImagePart(b"\x89PNG" + b"0" * 10, "image/png")
    large = ImagePart(b"\x89PNG" + b"0" * 100, "image/png")
    limits = ResultLimits(max_images=1, max_image_bytes=50)
    output = bounded_output(["seen"], [large, small, small], limits)
    assert output.images == (small,)
    assert "[image left out: image/png over 50 bytes]" in output.text
    assert "[image left out: more than 1 images]" in output.text
    assert "1 image(s) attached" in output.text


def test_an_empty_result_still_says_so() -> None:
    assert bounded_output([], [], ResultLimits()) == ToolOutput("(no output)")


@given(st.lists(st.text()), st.integers(min_value=1, max_value=200))
def test_text_never_exceeds_the_bound_plus_its_marker(texts: list[str], limit: int) -> None:
    output = bounded_output(texts, [], ResultLimits(max_chars=limit))
    assert len(output.text) <= limit + len("\n[... truncated: 99,999,999 more characters]")
