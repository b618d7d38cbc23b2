"""The client tool the tests offer, as an OpenAI client sends it."""

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
