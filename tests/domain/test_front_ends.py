"""Telling Open WebUI's background tasks from chat turns (front-ends.md, "Rules")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.front_ends import PlainShape, auxiliary_task
from tests.fixtures.openwebui import RECIPE, recorded

TASK_TEXT = "### Task:\nGenerate a concise title.\n<chat_history>\nUSER: hi\n</chat_history>"


def _shape(body: dict[str, object], from_open_webui: bool = True) -> PlainShape:
    messages = body.get("messages")
    assert isinstance(messages, list)
    return PlainShape(
        tuple((m["role"], m["content"]) for m in messages),
        stream=bool(body.get("stream")),
        has_tools=bool(body.get("tools")),
        from_open_webui=from_open_webui,
    )


def test_every_recorded_open_webui_request_is_told_apart_without_the_task_header() -> None:
    """Of the recorded requests, the non-streamed ones are exactly the tasks; the chat
    turns include one whose text also starts with "### Task:" (answering from a file)."""
    chats = [r for r in recorded() if r.is_chat]
    assert chats
    names = {}
    for request in chats:
        assert request.body is not None
        task = auxiliary_task(None, _shape(request.body))
        assert (task is not None) == (request.body["stream"] is False), request.seq
        names[request.seq] = task
    assert names[2] == "title_generation"
    assert names[4] == "follow_up_generation"
    assert names[5] == "tags_generation"
    assert names[18] == "query_generation"
    assert names[19] is None


def test_the_shape_rule_agrees_with_open_webuis_own_task_header() -> None:
    """In the recording with the recipe, Open WebUI named each task itself: the shape
    alone tells exactly the same requests apart, with the same names."""
    chats = [r for r in recorded(RECIPE) if r.is_chat]
    assert len(chats) == 21
    for request in chats:
        assert request.body is not None
        named = request.headers["X-OpenWebUI-Task"] or None
        assert auxiliary_task(None, _shape(request.body)) == named, request.seq
        assert auxiliary_task(named, _shape(request.body)) == named


def test_a_task_shape_from_a_client_that_is_not_open_webui_is_a_chat_turn() -> None:
    body = {"messages": [{"role": "user", "content": TASK_TEXT}], "stream": False}
    assert auxiliary_task(None, _shape(body, from_open_webui=False)) is None
    assert auxiliary_task(None, _shape(body)) == "title_generation"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("title_generation", "title_generation"), ("", None), ("  ", None)],
)
def test_the_task_header_decides_and_an_empty_one_is_a_chat_turn(
    header: str, expected: str | None
) -> None:
    """Open WebUI's {{TASK}} is empty on a chat turn; a task-shaped text does not
    override an explicit (empty) header."""
    shape = PlainShape((("user", TASK_TEXT),), from_open_webui=True)
    assert auxiliary_task(header, shape) == expected


@given(
    header=st.none() | st.text(max_size=20),
    messages=st.lists(
        st.tuples(st.sampled_from(["user", "assistant", "system", ""]), st.text(max_size=80)),
        max_size=4,
    ),
    stream=st.booleans(),
    has_tools=st.booleans(),
    from_open_webui=st.booleans(),
)
def test_any_request_shape_is_a_task_name_or_a_chat_turn(
    header: str | None,
    messages: list[tuple[str, str]],
    stream: bool,
    has_tools: bool,
    from_open_webui: bool,
) -> None:
    shape = PlainShape(tuple(messages), stream, has_tools, from_open_webui)
    task = auxiliary_task(header, shape)
    assert task is None or (isinstance(task, str) and task.strip() == task and task)
    if header is None and (stream or has_tools or not from_open_webui):
        assert task is None
