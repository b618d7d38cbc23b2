"""``GET /openapi.json``: an OpenAPI 3.1 description of the API, generated at app creation.

Request bodies are generated from the attrs classes ``wire.py`` validates with (their
fields and types walked into JSON Schema, the content-part union as a ``oneOf`` with a
discriminator on ``"type"``), so the document cannot disagree with the parser. The
answers' schemas are in ``answer_schemas.py``.
"""

from __future__ import annotations

import json
from typing import Final

from quart import Quart, Response

from nanobot_api.adapters.http import wire
from nanobot_api.adapters.http.answer_schemas import answer_schemas
from nanobot_api.adapters.http.headers import CHAT_ID_HEADERS, SESSION_HEADER
from nanobot_api.adapters.http.responses_openapi import responses_paths, responses_schemas
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.http.typeschema import REF, Schema, SchemaBuilder
from nanobot_api.domain.attachments import MIB, REMOTE_URL_REFUSED
from nanobot_api.domain.requests import DEFAULT_UPLOAD_PROMPT
from nanobot_api.domain.sessions import SESSION_ID_MAX_CHARS

# ---- requests: generated from wire.py's classes ---------------------------------------

_SESSION_ID: Final = {
    "type": ["string", "null"],
    "minLength": 1,
    "maxLength": SESSION_ID_MAX_CHARS,
    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
    "description": "Selects the session `api:<session_id>`; omitted or null: the shared "
    "session `api:default`. 1-256 printable characters.",
}


def _request_schemas(builder: SchemaBuilder, settings: HttpSettings, model: str) -> None:
    components = builder.components
    builder.ref(wire.ChatBody)
    properties = components["ChatBody"]["properties"]
    # session_id is typed Any on the wire because the domain owns its rules.
    properties["session_id"] = _SESSION_ID
    # Any other model is refused (400), so the document names the one served.
    properties["model"] = {
        "enum": [model, None],
        "description": f"Omitted, null, or the served model '{model}'.",
    }
    builder.ref(wire.UserMessage)
    components["UserMessage"]["properties"]["role"] = {"const": "user"}
    if settings.history == "reject":
        messages: Schema = {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {"$ref": REF + "UserMessage"},
            "description": "Exactly one user message; the server keeps the history.",
        }
    else:
        builder.ref(wire.PlainMessage)
        messages = {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": REF + "PlainMessage"},
            "description": "A whole conversation (api.history = latest): the last "
            "message is the turn and must be a UserMessage; the rest is ignored.",
        }
    components["ChatCompletionRequest"] = {
        "allOf": [
            {"$ref": REF + "ChatBody"},
            {"type": "object", "required": ["messages"], "properties": {"messages": messages}},
        ],
        "description": "Other OpenAI fields (temperature, max_tokens, tools, user, ...) are "
        "accepted and ignored. Image and file parts carry `data:<mime>;base64,...` URLs "
        f"only: {REMOTE_URL_REFUSED}",
    }
    components["ChatForm"] = {
        "type": "object",
        "properties": {
            "message": {"type": "string"},
            "files": {
                "type": "array",
                "maxItems": settings.limits.max_files,
                "items": {"type": "string", "contentMediaType": "application/octet-stream"},
            },
            "session_id": {**_SESSION_ID, "type": "string"},
            "model": {"enum": [model, ""]},
            "stream": {"enum": list(wire.FORM_BOOLEANS)},
        },
        "description": "Without `message`, files are sent with the text "
        f"{DEFAULT_UPLOAD_PROMPT!r}.",
    }


# ---- paths --------------------------------------------------------------------------

_HEADERS: Final = {
    "X-Request-ID": {
        "description": "The client's X-Request-ID when it sent a valid one, else a new id.",
        "schema": {"type": "string"},
    },
    "X-Session-Id": {
        "description": "The session the turn ran in (`default` for the shared one).",
        "schema": {"type": "string"},
    },
}
_ERRORS: Final = {
    400: "The request is malformed: a field of the wrong type, another model, not one "
    "user message, a bad session id, invalid base64, a remote URL.",
    401: "Missing or wrong `Authorization: Bearer <api key>`.",
    404: "No such route or model.",
    405: "The route does not answer this method.",
    409: "previous_response_id is not the latest response of its conversation "
    "(type conversation_conflict).",
    413: "A file, the number of files or the whole body is over its limit.",
    415: "A file whose bytes are of no supported type.",
    500: "Internal server error (details in the server log only).",
    502: "The upstream model failed; the message names its status.",
    504: "The turn ran past api.timeout.",
}


def _error(status: int) -> Schema:
    return {
        "description": _ERRORS[status],
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}},
        "content": {"application/json": {"schema": {"$ref": REF + "Error"}}},
    }


def _ok(description: str, schema: str, *, session: bool = False) -> Schema:
    headers = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    if session:
        headers["X-Session-Id"] = {"$ref": "#/components/headers/X-Session-Id"}
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": REF + schema}}},
    }


def _operation(summary: str, responses: dict[int | str, Schema], secured: bool) -> Schema:
    statuses: dict[str, Schema] = {str(status): body for status, body in responses.items()}
    if secured:
        statuses["401"] = _error(401)
    statuses.setdefault("405", _error(405))
    statuses["500"] = _error(500)
    return {"summary": summary, "responses": dict(sorted(statuses.items()))}


def _paths(secured: bool) -> Schema:
    chat_ok = _ok("The answer (JSON), or its stream (SSE).", "ChatCompletion", session=True)
    chat_ok["content"]["text/event-stream"] = {"schema": {"$ref": REF + "ChatCompletionEvent"}}
    open_route: Schema = {"security": []}
    return {
        "/health": {
            "get": {
                **_operation("Liveness", {200: _ok("Up.", "Health")}, False),
                **open_route,
            }
        },
        "/health/ready": {
            "get": {
                **_operation(
                    "Readiness: ready, degraded naming what is down (still 200), or not",
                    {
                        200: _ok("Serving.", "Readiness"),
                        503: _ok("Draining or a dependency is unusable.", "Readiness"),
                    },
                    False,
                ),
                **open_route,
            }
        },
        "/v1/models": {
            "get": _operation("The served model", {200: _ok("One model.", "ModelList")}, secured)
        },
        "/v1/models/{model_id}": {
            "parameters": [
                {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": _operation(
                "One model", {200: _ok("The model.", "Model"), 404: _error(404)}, secured
            ),
        },
        "/v1/chat/completions": {
            "post": {
                **_operation(
                    "One turn of a session",
                    {200: chat_ok, **{s: _error(s) for s in (400, 413, 415, 502, 504)}},
                    secured,
                ),
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": False,
                        "schema": {**_SESSION_ID, "type": "string"},
                        "description": "Names the session when the body has no session_id.",
                    }
                    for name in (SESSION_HEADER, *CHAT_ID_HEADERS)
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": REF + "ChatCompletionRequest"}},
                        "multipart/form-data": {
                            "schema": {"$ref": REF + "ChatForm"},
                            "encoding": {"files": {"contentType": "*/*"}},
                        },
                    },
                },
            }
        },
        "/openapi.json": {
            "get": _operation(
                "This document",
                {
                    200: {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                secured,
            )
        },
    }


def openapi_document(model: str, settings: HttpSettings) -> Schema:
    """The OpenAPI 3.1 document of the app serving ``model`` with ``settings``."""
    builder = SchemaBuilder(wire.PART_TAGS)
    _request_schemas(builder, settings, model)
    limits = settings.limits
    secured = bool(settings.api_key)
    document: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "nanobot-api",
            "version": _version(),
            "description": "An OpenAI-compatible API in front of a stateful agent. The "
            "server keeps each session's history; a request carries only the new user "
            f"message. Files: at most {limits.max_files} per request, "
            f"{limits.max_file_bytes // MIB} MiB each, "
            f"{limits.max_request_bytes // MIB} MiB per body. Any other route answers "
            "404, a wrong method 405, both with the Error body.",
        },
        "paths": {**_paths(secured), **responses_paths(_operation, _error, _ok, secured)},
        "components": {
            "schemas": {**builder.components, **answer_schemas(model), **responses_schemas()},
            "headers": _HEADERS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
    if secured:
        document["security"] = [{"bearerAuth": []}]
    return document


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanobot-api")
    except PackageNotFoundError:
        return "0.0.0"


def install_openapi(app: Quart, model: str, settings: HttpSettings) -> None:
    """Serves ``GET /openapi.json``, built once now."""
    body = json.dumps(openapi_document(model, settings), ensure_ascii=False).encode()

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return Response(body, content_type="application/json")
