"""LlamaIndex's OpenAILike against a live server, used as its users use it.

Not a test module: LlamaIndex cannot be installed beside the project (it wants
``openai<3``), so ``test_llamaindex.py`` runs this script in a venv of its own
(``client_venvs.py``) as ``python llamaindex_client.py BASE_URL MODEL`` and reads the
JSON it prints: what each use of the library gave back.
"""

from __future__ import annotations

import asyncio
import json
import sys

from llama_index.core import Settings
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.llms.openai_like import OpenAILike
from pydantic import BaseModel


class Forecast(BaseModel):
    city: str
    celsius: int


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def llm(base_url: str, model: str, session: str) -> OpenAILike:
    return OpenAILike(
        model=model,
        api_base=base_url,
        api_key="x",
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=32000,
        max_retries=0,
        default_headers={"X-Session-Id": session},
    )


async def main(base_url: str, model: str) -> dict[str, object]:
    # Token counting would fetch tiktoken's tables from the internet: count words.
    Settings.tokenizer = str.split
    chat = llm(base_url, model, "li-1")
    system = ChatMessage(role="system", content="Talk like a pirate.")
    plain = await chat.achat([system, ChatMessage(role="user", content="hello")])
    pieces = [
        r.delta or ""
        async for r in await chat.astream_chat([ChatMessage(role="user", content="again")])
    ]
    forecast = await llm(base_url, model, "li-2").astructured_predict(
        Forecast, PromptTemplate("The forecast for {city}, please."), city="Paris"
    )
    agent = FunctionAgent(
        tools=[get_weather], llm=llm(base_url, model, "li-3"), system_prompt="Use tools."
    )
    answer = await agent.run("What is the weather in Paris?")
    return {
        "plain": plain.message.content,
        "pieces": pieces,
        "forecast": forecast.model_dump(),
        "agent": str(answer),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
