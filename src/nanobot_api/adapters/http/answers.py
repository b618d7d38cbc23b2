"""The OpenAI wire format going out: completions, stream chunks, models and errors."""

from __future__ import annotations

import json
from collections.abc import Mapping

from nanobot_api.domain.conversation import Usage


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
    completion_id: str, created: int, model: str, text: str, usage: Usage
) -> dict[str, object]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage_json(usage),
    }


def chunk_json(
    completion_id: str,
    created: int,
    model: str,
    delta: Mapping[str, str],
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
