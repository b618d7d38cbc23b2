"""The Quart application: every endpoint of SPEC.md over the ChatTurns port, behind
the one request pipeline (``pipeline/``)."""

from __future__ import annotations

from quart import Quart, Response

from nanobot_api.adapters.http.answers import model_json
from nanobot_api.adapters.http.chat_endpoint import ChatEndpoint
from nanobot_api.adapters.http.chat_page import install_chat_page
from nanobot_api.adapters.http.openapi import install_openapi
from nanobot_api.adapters.http.operations import NoHealth, Operations, install_operations_routes
from nanobot_api.adapters.http.pipeline import Pipeline, Stage
from nanobot_api.adapters.http.pipeline.access_log import AccessLogStage
from nanobot_api.adapters.http.pipeline.authentication import ApiKey, AuthenticationStage
from nanobot_api.adapters.http.pipeline.body import BodyStage
from nanobot_api.adapters.http.pipeline.error_rendering import (
    ErrorRenderingStage,
    install_quart_error_rendering,
    json_response,
)
from nanobot_api.adapters.http.pipeline.idempotency import IdempotencyStage
from nanobot_api.adapters.http.pipeline.limits import TurnLimitStage
from nanobot_api.adapters.http.pipeline.origin import OriginStage
from nanobot_api.adapters.http.pipeline.request_id import RequestIdStage
from nanobot_api.adapters.http.pipeline.routing import CHAT_PATH, Router
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.domain.errors import NotFound
from nanobot_api.domain.ports import ChatTurns


def create_quart_app(
    turns: ChatTurns, settings: HttpSettings, operations: Operations | None = None
) -> Quart:
    """The HTTP API in front of ``turns``; serve it with an ASGI server (Hypercorn).
    With ``operations``, also the health probes and ``/metrics``."""
    app = Quart("nanobot_api")
    # The body stage bounds every body before Quart sees it; Quart's own bound is the same.
    app.config.update(MAX_CONTENT_LENGTH=settings.limits.max_request_bytes)
    # "/v1//chat/completions" is not a route, rather than a 308 built from the Host.
    app.url_map.merge_slashes = False
    install_quart_error_rendering(app)
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
        # Never reached: the pipeline's router hands these POSTs to ChatEndpoint. The
        # rule is here so other methods on the path get Quart's 405 and OPTIONS answer.
        raise RuntimeError("POST /v1/chat/completions is served by ChatEndpoint")

    router = Router(ChatEndpoint(turns, settings), app.asgi_app)
    # Quart's documented place for ASGI middleware: its test client goes through it too.
    stages = standard_stages(settings, operations or Operations(NoHealth()))
    app.asgi_app = Pipeline(app.asgi_app, stages, router)  # type: ignore[method-assign]
    return app


def standard_stages(settings: HttpSettings, operations: Operations) -> list[Stage]:
    """The pipeline's stages, in the order every request passes them."""
    limits = settings.limits
    keys = operations.keys or (ApiKey(settings.api_key),)
    keyed = any(key.key for key in keys)
    stages: list[Stage] = [
        RequestIdStage(),
        AccessLogStage(operations.metrics),
        ErrorRenderingStage(),
        OriginStage(settings.cors_origins, None if keyed else settings.allowed_hosts),
        AuthenticationStage(keys, operations.limiter, operations.trusted_proxies),
        BodyStage(limits.max_request_bytes, limits.body_too_large, settings.body_timeout_s),
    ]
    if operations.idempotency is not None:
        stages.append(
            IdempotencyStage(
                operations.idempotency,
                ttl_s=operations.idempotency_ttl_s,
                lease_s=operations.turn_lease_s,
                renewed_lease_s=operations.renewed_lease_s,
            )
        )
    if operations.limiter is not None and operations.limiter.limits_turns:
        stages.append(TurnLimitStage(operations.limiter))
    return stages
