"""The OpenAI wire format going out: completions, stream chunks, models and errors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from nanobot_api.domain.conversation import ToolCall, Usage


def json_bytes(payload: object) -> bytes:
    """A JSON answer, event or error as sent: compact, UTF-8, non-ASCII unescaped."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_json(
    completion_id: str,
    created: int,
    model: str,
    text: str,
    usage: Usage,
    *,
    tool_calls: Sequence[ToolCall] = (),
) -> dict[str, object]:
    """A whole answer; with ``tool_calls`` (the client's own tools the model called) its
    message carries them and it finishes for ``tool_calls``, as OpenAI's does."""
    message: dict[str, object] = {"role": "assistant", "content": text}
    if tool_calls:
        message["content"] = text or None
        message["tool_calls"] = tool_calls_json(tool_calls)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": usage_json(usage),
    }


def tool_calls_json(calls: Sequence[ToolCall], *, first_index: int | None = None) -> list[object]:
    """Tool calls as a message carries them (or, given ``first_index``, as a stream delta
    does, numbered from there)."""
    return [
        {
            **({} if first_index is None else {"index": first_index + number}),
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for number, call in enumerate(calls)
    ]


def chunk_json(
    completion_id: str,
    created: int,
    model: str,
    delta: Mapping[str, object],
    finish_reason: str | None = None,
) -> dict[str, object]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish_reason}],
    }


def model_json(model: str) -> dict[str, object]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "nanobot"}


def error_json(message: str, error_type: str, param: str | None, code: int) -> dict[str, object]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
