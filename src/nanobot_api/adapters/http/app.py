"""The Quart application: every endpoint of SPEC.md over the ChatTurns port."""

from __future__ import annotations

from quart import Quart, Response

from nanobot_api.adapters.http.answers import model_json
from nanobot_api.adapters.http.chat_endpoint import CHAT_PATH, ChatEndpoint
from nanobot_api.adapters.http.chat_page import install_chat_page
from nanobot_api.adapters.http.middleware import (
    install_error_handlers,
    install_request_hooks,
    json_response,
)
from nanobot_api.adapters.http.openapi import install_openapi
from nanobot_api.adapters.http.operations import Operations, install_operations_routes
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.domain.errors import NotFound
from nanobot_api.domain.ports import ChatTurns


def create_quart_app(
    turns: ChatTurns, settings: HttpSettings, operations: Operations | None = None
) -> Quart:
    """The HTTP API in front of ``turns``; serve it with an ASGI server (Hypercorn).
    With ``operations``, also the health probes and ``/metrics``."""
    app = Quart("nanobot_api")
    # No Quart route reads a body (the chat endpoint answers the POSTs), but a body
    # sent to one anyway is still not buffered past the request limit.
    app.config.update(MAX_CONTENT_LENGTH=settings.limits.max_request_bytes)
    install_request_hooks(app, settings)
    install_error_handlers(app)
    install_openapi(app, turns.model, settings)
    if settings.chat_page:
        install_chat_page(app)

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok"})

    if operations is not None:
        install_operations_routes(app, operations)

    @app.get("/v1/models")
    async def list_models() -> Response:
        return json_response({"object": "list", "data": [model_json(turns.model)]})

    @app.get("/v1/models/<path:model_id>")
    async def retrieve_model(model_id: str) -> Response:
        if model_id != turns.model:
            raise NotFound(f"The model '{model_id}' does not exist", "model")
        return json_response(model_json(turns.model))

    @app.post(CHAT_PATH)
    async def chat_completions() -> Response:
        # Never reached: ChatEndpoint answers these POSTs before Quart routes them. The
        # rule is here so other methods on the path get Quart's 405 and OPTIONS answer.
        raise RuntimeError("POST /v1/chat/completions is served by ChatEndpoint")

    # Quart's documented place for ASGI middleware: its test client goes through it too.
    app.asgi_app = ChatEndpoint(app.asgi_app, turns, settings)  # type: ignore[method-assign]
    return app
