"""The schemas of what the server answers, for ``/openapi.json``.

The answers are built by small functions in ``answers.py`` (``completion_json``,
``chunk_json``, ``model_json``, ``error_json``) and the SSE writer in
``streaming.py``; these schemas describe them, and tests check live answers against
them (tests/adapters/test_openapi.py, test_openapi_fuzz.py).
"""

from __future__ import annotations

from typing import Final

from nanobot_api.adapters.http.typeschema import REF, Schema

_USAGE: Final = {
    "type": "object",
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {
        name: {"type": "integer", "minimum": 0}
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    },
}
_ID: Final = {"type": "string", "pattern": "^chatcmpl-"}


_STREAM: Final = (
    "With `stream: true`, server-sent events: one `data: <ChatCompletionChunk>` per "
    'delta, all with the same `id`: first `{"role": "assistant"}`, then `{"content": '
    "...}` deltas as the agent writes them, then `delta: {}` with `finish_reason: "
    '"stop"`, the usage chunk if asked, and `data: [DONE]`. A failed turn ends with '
    "`data: <Error>` and no `[DONE]`. `: keep-alive` comment lines are sent while the "
    "turn is silent. Headers `Cache-Control: no-cache`, `X-Accel-Buffering: no`."
)


def answer_schemas(model: str) -> dict[str, Schema]:
    served = {"type": "string", "const": model}
    return {
        "Health": _obj({"status": {"const": "ok"}}),
        "Readiness": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["ready", "degraded", "draining", "unavailable"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                "degraded": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "Model": _obj(
            {
                "id": served,
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
            }
        ),
        "ModelList": _obj(
            {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"$ref": REF + "Model"}},
            }
        ),
        "Usage": _USAGE,
        "ChatCompletion": _obj(
            {
                "id": _ID,
                "object": {"const": "chat.completion"},
                "created": {"type": "integer"},
                "model": served,
                "choices": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": _obj(
                        {
                            "index": {"const": 0},
                            "message": _obj(
                                {"role": {"const": "assistant"}, "content": {"type": "string"}}
                            ),
                            "finish_reason": {"const": "stop"},
                        }
                    ),
                },
                "usage": {"$ref": REF + "Usage"},
            }
        ),
        "ChatCompletionChunk": _obj(
            {
                "id": _ID,
                "object": {"const": "chat.completion.chunk"},
                "created": {"type": "integer"},
                "model": served,
                "choices": {
                    "type": "array",
                    "maxItems": 1,
                    "items": _obj(
                        {
                            "index": {"const": 0},
                            "delta": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "role": {"const": "assistant"},
                                    "content": {"type": "string"},
                                },
                            },
                            "finish_reason": {"enum": ["stop", None]},
                        }
                    ),
                },
                "usage": {"$ref": REF + "Usage"},
            },
            optional=("usage",),
            description="One `data:` event of a streamed answer. The last chunk before "
            "`[DONE]` has `choices: []` and `usage` when `stream_options.include_usage` "
            "was set.",
        ),
        # One server-sent event, as OpenAPI 3.2 and Schemathesis read a text/event-stream
        # schema: its `data` is JSON text of a chunk or an error, or the closing [DONE].
        "ChatCompletionEvent": {
            "type": "object",
            "required": ["data"],
            "properties": {
                # `nanobot.tool`: a tool step, with stream_options.include_tool_events.
                "event": {"enum": ["message", "nanobot.tool"]},
                "data": {
                    "anyOf": [
                        {"const": "[DONE]"},
                        {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {
                                "anyOf": [
                                    {"$ref": REF + "ChatCompletionChunk"},
                                    {"$ref": REF + "Error"},
                                    {"$ref": REF + "ToolEvent"},
                                ]
                            },
                        },
                    ]
                },
            },
            "description": _STREAM,
        },
        "ToolEvent": _obj(
            {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "status": {"enum": ["started", "done", "failed"]},
                "summary": {"type": "string"},
            },
            description="One of the agent's own tool steps (`event: nanobot.tool`), only "
            "in streams that set `stream_options.include_tool_events`; its summary is "
            "short and masked.",
        ),
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "message": {"type": "string"},
                        "type": {
                            "enum": [
                                "invalid_request_error",
                                "authentication_error",
                                "server_error",
                            ]
                        },
                        "param": {"type": ["string", "null"]},
                        "code": {"type": "integer"},
                    }
                )
            },
            description="Every error, as OpenAI sends it; also the last event of a "
            "streamed answer that failed (then without a stop chunk and without `[DONE]`).",
        ),
    }


def _obj(
    properties: Schema, *, optional: tuple[str, ...] = (), description: str | None = None
) -> Schema:
    schema: Schema = {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema
