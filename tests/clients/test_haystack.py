"""Haystack's OpenAIChatGenerator: a system message, a streaming callback, a
``response_format`` and a Tool whose call is answered with a tool message."""

from __future__ import annotations

import anyio
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.dataclasses import ChatMessage, StreamingChunk
from haystack.tools import Tool
from haystack.utils import Secret

from tests.clients.conftest import MODEL, Live

WEATHER = Tool(
    name="get_weather",
    description="The weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    function=lambda city: f"foggy in {city}",
)
FORECAST = {
    "type": "json_schema",
    "json_schema": {
        "name": "forecast",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
            "required": ["city", "celsius"],
        },
    },
}


def _generator(base_url: str, session: str, **kwargs: object) -> OpenAIChatGenerator:
    return OpenAIChatGenerator(
        api_key=Secret.from_token("x"),
        model=MODEL,
        api_base_url=base_url,
        max_retries=0,
        generation_kwargs={"extra_headers": {"X-Session-Id": session}},
        **kwargs,  # type: ignore[arg-type]
    )


def _conversation(base_url: str) -> list[str]:
    chunks: list[StreamingChunk] = []
    generator = _generator(base_url, "hs-1", streaming_callback=chunks.append)
    system = ChatMessage.from_system("Reply plainly.")
    texts = []
    for text in ("hello", "again"):
        reply = generator.run(messages=[system, ChatMessage.from_user(text)])["replies"][0]
        texts.append(reply.text or "")
    texts.append("".join(chunk.content for chunk in chunks))
    structured = _generator(base_url, "hs-2").run(
        messages=[ChatMessage.from_user("forecast")],
        generation_kwargs={"response_format": FORECAST},
    )["replies"][0]
    texts.append(structured.text or "")
    tools = _generator(base_url, "hs-3", tools=[WEATHER])
    question = ChatMessage.from_user("What is the weather in Paris?")
    asked = tools.run(messages=[question])["replies"][0]
    (call,) = asked.tool_calls
    result = ChatMessage.from_tool(WEATHER.invoke(**call.arguments), origin=call)
    answer = tools.run(messages=[question, asked, result])["replies"][0]
    texts.append(answer.text or "")
    return texts


async def test_a_conversation_structured_output_and_a_tool_round_trip(live: Live) -> None:
    texts = await anyio.to_thread.run_sync(_conversation, live.base_url)
    assert texts == [
        "echo: hello (user messages: 1)",
        "echo: again (user messages: 2)",
        "echo: hello (user messages: 1)echo: again (user messages: 2)",
        '{"city": "", "celsius": 0}',
        "The tool answered: foggy in Paris",
    ]
    assert live.model.systems()[0].endswith("for this turn:\nReply plainly.")
