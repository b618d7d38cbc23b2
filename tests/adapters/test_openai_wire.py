from __future__ import annotations

import json

import pytest

from nanobot_api.adapters.llm.openai_wire import RequestEncoder, message_json
from nanobot_api.domain.attachments import Document, Image
from nanobot_api.domain.conversation import Message, ToolCall
from nanobot_api.domain.models import ModelRequest, ToolSpec, UserContent

CALL = ToolCall("call_1", "lookup", '{"q": "x"}')
HISTORY = (
    Message("system", "Be brief."),
    Message.user("first — with ünïcode"),
    Message.assistant(None, (CALL,)),
    Message.tool_result("call_1", "result"),
    Message.assistant("answer"),
)
NEW = UserContent.of_turn(
    "look",
    (Image(b"\x89PNG...", "image/png", "/m/a.png"),),
    (Document("r.txt", "text of r", "/m/r.txt"),),
)
TOOL = ToolSpec("lookup", "Looks up.", {"type": "object", "properties": {}})


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools", [(), (TOOL,)])
@pytest.mark.parametrize("messages", [(), HISTORY, (*HISTORY, NEW)])
def test_the_encoded_body_is_the_request_body(
    stream: bool, tools: tuple[ToolSpec, ...], messages: tuple[Message | UserContent, ...]
) -> None:
    request = ModelRequest(messages, tools)
    expected: dict[str, object] = {"model": "m", "messages": [message_json(m) for m in messages]}
    if tools:
        expected["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
    if stream:
        expected |= {"stream": True, "stream_options": {"include_usage": True}}
    encoder = RequestEncoder()
    for _ in range(2):  # the second time from the encoder's memory
        assert json.loads(encoder.encode("m", request, stream=stream)) == expected
