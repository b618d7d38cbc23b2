"""Every route against every rule of the pipeline, on a real socket.

Each rule (request id, origin, host, key, body limit, error JSON) is checked on every
route, 404 and 405 included: a rule that lived in one route's code and not another's
would show here as one cell of the matrix.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from nanobot_api.adapters.http.app import create_quart_app
from nanobot_api.adapters.http.operations import NoHealth, Operations
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.observability.logs import request_id_var
from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.echo import ECHO_MODEL, EchoAgent
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from nanobot_api.domain.attachments import UploadLimits
from nanobot_api.domain.ports import Reply
from nanobot_api.domain.turns import Turn
from tests.fakes import TextOnlyAttachments
from tests.raw_http import Answer, request_bytes, send

KEY = "sk-matrix-0123456789"
FRONT_END = "https://ui.example"
LIMIT = 4096
CHAT_BODY = b'{"messages": [{"role": "user", "content": "hi"}]}'


@attrs.frozen
class Route:
    method: str
    path: str
    ok: int  # the status when every rule is met
    public: bool = False
    body: bytes = b""


ROUTES = (
    Route("GET", "/health", 200, public=True),
    Route("GET", "/", 200, public=True),  # the chat page
    Route("GET", "/static/chat.js", 200, public=True),
    Route("GET", "/health/live", 200, public=True),
    Route("GET", "/health/ready", 200, public=True),
    Route("GET", "/v1/models", 200),
    Route("GET", f"/v1/models/{ECHO_MODEL}", 200),
    Route("GET", "/openapi.json", 200),
    Route("POST", "/v1/chat/completions", 200, body=CHAT_BODY),
    Route("GET", "/no/such/route", 404),
    Route("GET", "/v1/chat/completions", 405),
    Route("POST", "/v1/models", 405, body=b"{}"),
)


@asynccontextmanager
async def serving(*, api_key: str = "") -> AsyncIterator[RunningServer]:
    service = ChatService(EchoAgent(), InMemorySessionStore(), TextOnlyAttachments(), timeout_s=10)
    settings = HttpSettings(
        api_key=api_key,
        limits=UploadLimits(max_request_bytes=LIMIT),
        cors_origins=frozenset({FRONT_END}),
    )
    app = create_quart_app(service, settings, Operations(NoHealth()))
    async with running_server(app, api_key=api_key) as server:
        yield server


async def ask(
    server: RunningServer,
    route: Route,
    headers: dict[str, str] | None = None,
    *,
    method: str | None = None,
    body: bytes | None = None,
) -> Answer:
    """One request on its own connection, as raw HTTP/1.1; the whole answer."""
    body = route.body if body is None else body
    sent: dict[str, str | bytes] = {"Host": f"127.0.0.1:{server.port}", "Connection": "close"}
    if server.api_key:
        sent["Authorization"] = f"Bearer {server.api_key}"
    if body:
        sent |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
    sent |= headers or {}
    request = request_bytes(method or route.method, route.path, sent, body)
    return await send(server.port, request)


async def test_every_route_answers_when_every_rule_is_met() -> None:
    async with serving(api_key=KEY) as server:
        for route in ROUTES:
            answer = await ask(server, route)
            assert answer.status == route.ok, route
            if answer.status >= 400:
                answer.error_type()


async def test_every_route_carries_the_request_id_given_or_a_new_one() -> None:
    async with serving(api_key=KEY) as server:
        for route in ROUTES:
            given = await ask(server, route, {"X-Request-ID": "trace-1"})
            assert given.headers["x-request-id"] == "trace-1", route
            fresh = await ask(server, route, {"X-Request-ID": "x" * 500})
            assert fresh.headers["x-request-id"].startswith("req_"), route
            refused = await ask(server, route, {"X-Request-ID": "trace-2", "Authorization": ""})
            assert refused.headers["x-request-id"] == "trace-2", route


async def test_every_route_but_the_public_ones_needs_the_key() -> None:
    async with serving(api_key=KEY) as server:
        for route in ROUTES:
            answer = await ask(server, route, {"Authorization": "Bearer wrong"})
            if route.public:
                assert answer.status == route.ok, route
            else:
                assert answer.status == 401, route
                assert answer.error_type() == "authentication_error"


async def test_cors_for_the_front_end_and_403_for_other_pages_on_every_route() -> None:
    async with serving(api_key=KEY) as server:
        for route in ROUTES:
            allowed = await ask(server, route, {"Origin": FRONT_END})
            assert allowed.status == route.ok, route
            assert allowed.headers["access-control-allow-origin"] == FRONT_END, route
            preflight = await ask(
                server,
                route,
                {"Origin": FRONT_END, "Access-Control-Request-Method": route.method},
                method="OPTIONS",
                body=b"",
            )
            assert preflight.status == 204, route
            assert "POST" in preflight.headers["access-control-allow-methods"]
            other = await ask(server, route, {"Origin": "https://evil.example"})
            if route.public:
                assert other.status == route.ok, route
            else:
                assert other.status == 403, route
                assert other.error_type() == "forbidden_origin"
            assert "access-control-allow-origin" not in other.headers


async def test_a_page_of_the_server_itself_is_not_a_foreign_origin() -> None:
    async with serving(api_key=KEY) as server:
        for route in ROUTES:
            own = await ask(server, route, {"Origin": server.origin})
            assert own.status == route.ok, route


async def test_a_keyless_server_answers_only_its_own_host_names() -> None:
    async with serving() as server:
        for route in ROUTES:
            for host in ("localhost", f"localhost:{server.port}", "[::1]:1", "127.0.0.2"):
                answer = await ask(server, route, {"Host": host})
                assert answer.status == route.ok, (route, host)
            rebound = await ask(server, route, {"Host": f"evil.example:{server.port}"})
            if route.public:
                assert rebound.status == route.ok, route
            else:
                assert rebound.status == 403, route
                assert rebound.error_type() == "forbidden_host"
                assert "api.allowedHosts" in json.loads(rebound.body)["error"]["message"]


async def test_every_route_refuses_a_body_over_the_limit_before_reading_it() -> None:
    async with serving(api_key=KEY) as server:
        for route in ROUTES:
            answer = await ask(
                server,
                route,
                {"Content-Type": "application/json", "Content-Length": str(LIMIT + 1)},
                body=b"",
            )
            assert answer.status == 413, route
            answer.error_type()


async def test_every_route_refuses_a_body_that_is_not_json_or_a_form() -> None:
    async with serving(api_key=KEY) as server:
        for route in ROUTES:
            answer = await ask(server, route, {"Content-Type": "text/plain"}, body=CHAT_BODY)
            assert answer.status == 415, route
            answer.error_type()


async def test_a_turn_runs_with_its_request_id_in_the_log_context() -> None:
    seen: list[str | None] = []

    class Recording(EchoAgent):
        async def respond(self, turn: Turn, reply: Reply) -> None:
            seen.append(request_id_var.get())
            await super().respond(turn, reply)

    service = ChatService(Recording(), InMemorySessionStore(), TextOnlyAttachments(), timeout_s=10)
    app = create_quart_app(service, HttpSettings())
    async with running_server(app) as server:
        chat = Route("POST", "/v1/chat/completions", 200, body=CHAT_BODY)
        answer = await ask(server, chat, {"X-Request-ID": "trace-log"})
    assert answer.status == 200
    assert seen == ["trace-log"]
    assert request_id_var.get() is None
