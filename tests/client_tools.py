"""The client tool the tests offer, as an OpenAI client sends it (chat completions'
form, and the Responses API's flat one)."""

from __future__ import annotations

from typing import Any

# Typed Any: the openai SDK's TypedDicts and plain dicts both take it.
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

# The same tool as the Responses API takes it: the function's fields at the top level.
RESPONSES_WEATHER: Any = {"type": "function", **WEATHER["function"]}
