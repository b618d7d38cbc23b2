"""The Responses and Conversations APIs in ``/openapi.json``: their paths and schemas.

The answers are built by ``responses_json.py``; these schemas describe them, and the
fuzz test checks live answers against them. Request bodies are described as loosely
as ``responses_wire.py`` reads them (it translates them into a chat request, whose
rules then apply), so every body the schema allows gets a documented answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from nanobot_api.adapters.http.typeschema import REF, Schema

Operation = Callable[[str, dict[int | str, Schema], bool], Schema]
ErrorOf = Callable[[int], Schema]
OkOf = Callable[[str, str], Schema]

_STRING: Final = {"type": "string"}
_NULLABLE_STRING: Final = {"type": ["string", "null"]}
_METADATA: Final = {
    "type": ["object", "null"],
    "maxProperties": 16,
    "additionalProperties": {"type": "string", "maxLength": 512},
}
_RESPONSE_EVENTS: Final = (
    "Server-sent events, each `event: <type>` and `data: <event>` with a "
    "`sequence_number` from 0: `response.created`, `response.in_progress`, "
    "`response.output_item.added`, `response.content_part.added`, "
    "`response.output_text.delta`..., `response.output_text.done`, "
    "`response.content_part.done`, `response.output_item.done`, then "
    "`response.completed` with the whole response. A failed or cancelled response ends "
    'with `response.failed` instead. With `include: ["nanobot.tool_events"]`, '
    "`nanobot.tool.started|done|failed` events show the agent's own tool steps."
)


def _obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "required": required if required is not None else list(properties),
        "properties": properties,
    }


def _page(item: str) -> Schema:
    return _obj(
        {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": REF + item}},
            "first_id": _NULLABLE_STRING,
            "last_id": _NULLABLE_STRING,
            "has_more": {"type": "boolean"},
        }
    )


def responses_schemas() -> dict[str, Schema]:
    """The request and answer schemas of the two APIs, by component name."""
    item = {"type": "object", "required": ["type", "id"], "properties": {"type": _STRING}}
    return {
        "ResponseRequest": {
            "type": "object",
            "required": ["input"],
            "properties": {
                "input": {
                    "oneOf": [_STRING, {"type": "array", "items": {"type": "object"}}],
                    "description": "A user message, or items: messages (user, system, "
                    "developer, assistant) with input_text/input_image/input_file parts, "
                    "function_call and function_call_output items.",
                },
                "model": _NULLABLE_STRING,
                "instructions": _NULLABLE_STRING,
                "conversation": {"oneOf": [_STRING, {"type": "object"}, {"type": "null"}]},
                "previous_response_id": _NULLABLE_STRING,
                "stream": {"type": ["boolean", "null"]},
                "background": {"type": ["boolean", "null"]},
                "store": {"type": ["boolean", "null"]},
                "include": {"type": ["array", "null"], "items": _STRING},
                "text": {"type": ["object", "null"]},
                "tools": {"type": ["array", "null"]},
            },
            "description": "Other fields are accepted and ignored.",
        },
        "Response": _obj(
            {
                "id": {"type": "string", "pattern": "^resp_"},
                "object": {"const": "response"},
                "created_at": {"type": "integer"},
                "status": {"enum": ["queued", "in_progress", "completed", "failed", "cancelled"]},
                "model": _STRING,
                "output": {"type": "array", "items": item},
                "usage": {"type": ["object", "null"]},
                "previous_response_id": _NULLABLE_STRING,
                "conversation": {"type": ["object", "null"]},
                "error": {"type": ["object", "null"]},
            }
        ),
        "ResponseEvent": {
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": _STRING,
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "type": "object",
                        "required": ["type", "sequence_number"],
                        "properties": {
                            "type": _STRING,
                            "sequence_number": {"type": "integer", "minimum": 0},
                        },
                    },
                },
            },
            "description": _RESPONSE_EVENTS,
        },
        "ResponseDeleted": _obj(
            {"id": _STRING, "object": {"const": "response.deleted"}, "deleted": {"const": True}}
        ),
        "InputItemList": _page("Item"),
        "Item": item,
        "ConversationRequest": {
            "type": "object",
            "properties": {
                "metadata": _METADATA,
                "items": {"type": ["array", "null"], "items": {"type": "object"}},
            },
        },
        "ConversationUpdate": {"type": "object", "properties": {"metadata": _METADATA}},
        "Conversation": _obj(
            {
                "id": _STRING,
                "object": {"const": "conversation"},
                "created_at": {"type": "integer"},
                "metadata": {"type": "object", "additionalProperties": _STRING},
            }
        ),
        "ConversationList": _page("Conversation"),
        "ConversationDeleted": _obj(
            {
                "id": _STRING,
                "object": {"const": "conversation.deleted"},
                "deleted": {"const": True},
            }
        ),
        "ItemList": _page("Item"),
    }


def _path_param(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": _STRING}


def _query(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_PAGE_QUERY: Final = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
    _query("after", _STRING),
    _query("order", {"enum": ["asc", "desc"]}),
]


def _json_body(schema: str) -> Schema:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF + schema}}},
    }


def responses_paths(operation: Operation, error: ErrorOf, ok: OkOf, secured: bool) -> Schema:
    """The paths of the two APIs, built with ``openapi.py``'s operation helpers."""
    streamed = ok("The response (JSON), or its events (SSE).", "Response")
    streamed["content"]["text/event-stream"] = {"schema": {"$ref": REF + "ResponseEvent"}}
    errors: dict[int | str, Schema] = {s: error(s) for s in (400, 404)}
    one_response = [_path_param("response_id")]
    one_conversation = [_path_param("conversation_id")]
    return {
        "/v1/responses": {
            "post": {
                **operation(
                    "A turn as a response (stored, streamed, in the background)",
                    {
                        200: streamed,
                        **{s: error(s) for s in (400, 404, 409, 413, 415, 502, 504)},
                    },
                    secured,
                ),
                "requestBody": _json_body("ResponseRequest"),
            }
        },
        "/v1/responses/{response_id}": {
            "parameters": one_response,
            "get": {
                **operation(
                    "A stored response, or its events from `starting_after`",
                    {200: streamed, **errors},
                    secured,
                ),
                "parameters": [
                    _query("stream", {"type": "boolean"}),
                    _query("starting_after", {"type": "integer"}),
                ],
            },
            "delete": operation(
                "Forgets a stored response",
                {200: ok("Deleted.", "ResponseDeleted"), **errors},
                secured,
            ),
        },
        "/v1/responses/{response_id}/cancel": {
            "parameters": one_response,
            "post": operation(
                "Cancels a background response",
                {200: ok("The response as it ended.", "Response"), **errors},
                secured,
            ),
        },
        "/v1/responses/{response_id}/input_items": {
            "parameters": one_response,
            "get": {
                **operation(
                    "A response's input items",
                    {200: ok("A page of items.", "InputItemList"), **errors},
                    secured,
                ),
                "parameters": _PAGE_QUERY,
            },
        },
        "/v1/conversations": {
            "post": {
                **operation(
                    "A new conversation (a session)",
                    {200: ok("The conversation.", "Conversation"), 400: error(400)},
                    secured,
                ),
                "requestBody": _json_body("ConversationRequest"),
            },
            "get": {
                **operation(
                    "The caller's conversations, most recently changed first",
                    {200: ok("A page.", "ConversationList"), 400: error(400)},
                    secured,
                ),
                "parameters": _PAGE_QUERY[:2],
            },
        },
        "/v1/conversations/{conversation_id}": {
            "parameters": one_conversation,
            "get": operation("A conversation", {200: ok("It.", "Conversation"), **errors}, secured),
            "post": {
                **operation(
                    "Replaces a conversation's metadata",
                    {200: ok("It.", "Conversation"), **errors},
                    secured,
                ),
                "requestBody": _json_body("ConversationUpdate"),
            },
            "delete": operation(
                "Forgets a conversation and its history",
                {200: ok("Deleted.", "ConversationDeleted"), **errors},
                secured,
            ),
        },
        "/v1/conversations/{conversation_id}/items": {
            "parameters": one_conversation,
            "get": {
                **operation(
                    "A conversation's history as items",
                    {200: ok("A page of items.", "ItemList"), **errors},
                    secured,
                ),
                "parameters": _PAGE_QUERY,
            },
        },
    }
