"""Responses bodies in (translated to chat's rules) and events out (numbered for resuming)."""

from __future__ import annotations

import base64
import contextlib
import itertools

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from nanobot_api.adapters.http.responses_json import response_events, response_json
from nanobot_api.adapters.http.responses_wire import parse_response_json
from nanobot_api.domain.attachments import UploadLimits
from nanobot_api.domain.conversation import Message, ToolCall, Usage
from nanobot_api.domain.errors import InvalidRequest, NanobotError
from nanobot_api.domain.models import ToolCallPiece
from nanobot_api.domain.responses import (
    CallPiece,
    ClientCall,
    Ended,
    ResponseError,
    ResponseRecord,
    TextDelta,
    ToolProgress,
)
from nanobot_api.domain.sessions import SessionHeaders, SessionKey
from tests.domain.test_responses import json_values

LIMITS = UploadLimits()
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def test_a_string_input_is_one_user_message() -> None:
    request = parse_response_json({"input": "hi", "model": "m"}, LIMITS)
    assert request.chat.text == "hi"
    assert request.chat.model == "m"
    assert request.named is None
    assert request.store
    assert not request.background
    assert request.input == (Message.user("hi"),)


def test_items_with_attachments_go_through_chat_s_intake() -> None:
    body = {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    {
                        "type": "input_file",
                        "file_data": "data:text/plain;base64,aGk=",
                        "filename": "a.txt",
                    },
                ],
            }
        ],
        "instructions": "be brief",
        "conversation": {"id": "conv_1"},
        "include": ["nanobot.tool_events"],
    }
    request = parse_response_json(body, LIMITS)
    assert request.chat.text == "look"
    assert len(request.chat.uploads) == 2
    assert request.named == SessionKey("api", "conv_1")
    assert request.instructions == "be brief"
    assert request.tool_events
    assert request.input[0] == Message("system", "be brief")


def test_a_remote_image_is_refused_as_in_chat() -> None:
    body = {
        "input": [
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}
        ]
    }
    with pytest.raises(InvalidRequest, match="Remote image URLs are not supported"):
        parse_response_json(body, LIMITS)


def test_the_conversation_and_the_session_header_must_agree() -> None:
    headers = SessionHeaders(("X-Session-Id", "other"))
    with pytest.raises(InvalidRequest, match="differ"):
        parse_response_json({"input": "x", "conversation": "c"}, LIMITS, headers=headers)
    named = parse_response_json({"input": "x"}, LIMITS, headers=headers).named
    assert named == SessionKey("api", "other")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "reasoning"}]}, "input[0].type"),
        ({"input": "x", "background": "yes"}, "background"),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"input": "x", "previous_response_id": 3}, "previous_response_id"),
    ],
)
def test_bad_fields_are_named(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_response_json(body, LIMITS)
    assert info.value.param == param


@given(
    st.dictionaries(
        st.sampled_from(["input", "conversation", "text", "tools", "include", "store"]), json_values
    )
)
def test_any_body_is_a_request_or_a_domain_error(body: dict[str, object]) -> None:
    with contextlib.suppress(NanobotError):
        parse_response_json(body, LIMITS)


RECORD = ResponseRecord(
    "resp_1", SessionKey("api", "s"), "m", 1.0, status="queued", background=True
)
STEPS = (
    TextDelta("a"),
    ToolProgress("t", "search", "started", "q"),
    TextDelta("b"),
    ToolProgress("t", "search", "done", "ok"),
    ClientCall(ToolCall("c", "f", "{}")),
    Ended("completed", Usage(1, 2)),
)


@pytest.mark.parametrize("tool_events", [False, True])
def test_events_are_numbered_the_same_on_every_expansion(tool_events: bool) -> None:
    whole = list(response_events(RECORD, STEPS, tool_events=tool_events))
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    for cut in range(len(STEPS)):
        head = list(response_events(RECORD, STEPS[:cut], tool_events=tool_events))
        assert whole[: len(head)] == head
    kinds = [e["type"] for e in whole]
    assert kinds[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert ("nanobot.tool.started" in kinds) is tool_events
    final = whole[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "ab"


def test_a_failed_response_never_completes() -> None:
    steps = (TextDelta("a"), Ended("failed", error=ResponseError("server_error", "boom")))
    kinds = [e["type"] for e in response_events(RECORD, steps, tool_events=False)]
    assert kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    assert "response.output_item.done" not in kinds


def test_the_response_object_reports_what_was_asked() -> None:
    body = response_json(ResponseRecord("resp_1", SessionKey("api", "c"), "m", 1.5, named=True))
    assert body["conversation"] == {"id": "c"}
    assert body["usage"] is None
    assert body["status"] == "in_progress"


SDK_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)


def _streamed(call: ToolCall, fragments: list[str], index: int = 0) -> list[CallPiece]:
    first = CallPiece(ToolCallPiece(index, call.id, call.name, ""))
    return [first, *(CallPiece(ToolCallPiece(index, "", "", f)) for f in fragments)]


def _assembled(events: list[dict[str, object]]) -> dict[object, str]:
    """Each call's arguments as a client joins them: its deltas, by output index."""
    calls: dict[object, str] = {}
    for event in events:
        if event["type"] == "response.function_call_arguments.delta":
            calls[event["output_index"]] = calls.get(event["output_index"], "") + str(
                event["delta"]
            )
    return calls


@given(
    arguments=st.text(max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=4),
    held=st.integers(0, 5),
)
def test_a_call_shown_in_pieces_is_whole_once_it_ends(
    arguments: str, cuts: list[int], held: int
) -> None:
    """However the model cut the arguments, and whatever tail the pieces held back,
    the deltas join to the whole call, each expansion begins like the longer ones, and
    every event is one the openai SDK knows."""
    call = ToolCall("c1", "f", arguments)
    shown = arguments[: max(0, len(arguments) - held)]
    bounds = sorted({0, len(shown), *(c for c in cuts if c < len(shown))})
    fragments = [shown[a:b] for a, b in itertools.pairwise(bounds)]
    record = attrs.evolve(RECORD, status="in_progress")
    steps = (TextDelta("a"), *_streamed(call, fragments), ClientCall(call), Ended("completed"))
    whole = list(response_events(record, steps, tool_events=False))
    for cut in range(len(steps)):
        head = list(response_events(record, steps[:cut], tool_events=False))
        assert whole[: len(head)] == head
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    for event in whole:
        SDK_EVENT.validate_python(event)
    assert _assembled(whole) == ({1: arguments} if arguments else {})
    kinds = [e["type"] for e in whole]
    added = kinds.index("response.output_item.added", kinds.index("response.output_text.done"))
    assert whole[added]["item"]["arguments"] == ""
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert whole[-1]["response"]["output"][1]["arguments"] == arguments


def test_a_call_cut_short_ends_its_item_incomplete_and_is_not_to_be_run() -> None:
    """A reply cut at its bound mid-call: the call shown so far ends incomplete, the
    response carries no call, and a call the model did not stream still shows whole."""
    cut = ToolCall("c1", "f", "")
    whole = ToolCall("c2", "g", '{"a": 1}')
    steps = (*_streamed(cut, ['{"x":']), ClientCall(whole), Ended("completed"))
    record = attrs.evolve(RECORD, status="in_progress")
    events = list(response_events(record, steps, tool_events=False))
    for event in events:
        SDK_EVENT.validate_python(event)
    assert _assembled(events) == {0: '{"x":', 1: '{"a": 1}'}
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    ends = [(d["call_id"], d["status"]) for d in done]
    assert ends == [("c2", "completed"), ("c1", "incomplete")]
    assert [o["call_id"] for o in events[-1]["response"]["output"]] == ["c2"]
