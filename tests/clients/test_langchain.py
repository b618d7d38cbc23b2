"""LangChain's ChatOpenAI: messages with a system prompt, streaming, structured output
and bound tools answered with ToolMessages."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.clients.conftest import MODEL, Live


class Forecast(BaseModel):
    city: str
    celsius: int


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"cloudy in {city}"


def _chat(live: Live, session: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=live.base_url,
        api_key="x",  # type: ignore[arg-type]
        max_retries=0,
        default_headers={"X-Session-Id": session},
    )


async def test_system_prompt_two_turns_and_streaming(live: Live) -> None:
    chat = _chat(live, "lc-1")
    first = await chat.ainvoke([SystemMessage("Be terse."), HumanMessage("hello")])
    second = await chat.ainvoke([SystemMessage("Be terse."), HumanMessage("again")])
    pieces = [chunk.content async for chunk in chat.astream([HumanMessage("third")])]
    assert first.content == "echo: hello (user messages: 1)"
    assert second.content == "echo: again (user messages: 2)"
    assert "".join(map(str, pieces)) == "echo: third (user messages: 3)"
    assert live.model.systems()[0].endswith("for this turn:\nBe terse.")


async def test_structured_output_and_a_tool_round_trip(live: Live) -> None:
    forecast = await _chat(live, "lc-2").with_structured_output(Forecast).ainvoke("forecast")
    bound = _chat(live, "lc-3").bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    asked = await bound.ainvoke([question])
    (call,) = asked.tool_calls
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    answer = await bound.ainvoke([question, asked, result])
    assert forecast == Forecast(city="", celsius=0)
    assert call["args"] == {"city": "Paris"}
    assert answer.content == "The tool answered: cloudy in Paris"
