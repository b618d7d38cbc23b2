"""Every endpoint and error of SPEC.md through Quart's test client, over fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from nanobot_api.adapters.http.app import create_quart_app
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.echo import EchoAgent
from nanobot_api.domain.attachments import UploadLimits
from nanobot_api.domain.errors import UpstreamFailed
from nanobot_api.domain.ports import Agent
from nanobot_api.domain.sessions import api_session
from tests.fakes import FailingAgent, GatedAgent, TextOnlyAttachments

KEY = "sk-test-key"
USER_HI = {"messages": [{"role": "user", "content": "hi there"}]}


def make_app(
    agent: Agent | None = None,
    *,
    store: InMemorySessionStore | None = None,
    api_key: str = "",
    timeout_s: float = 30,
    keepalive_s: float = 15,
    limits: UploadLimits | None = None,
) -> Quart:
    service = ChatService(
        agent or EchoAgent(),
        store or InMemorySessionStore(),
        TextOnlyAttachments(),
        timeout_s=timeout_s,
    )
    settings = HttpSettings(
        api_key=api_key, sse_keepalive_s=keepalive_s, limits=limits or UploadLimits()
    )
    return create_quart_app(service, settings)


@pytest.fixture(name="client")
async def _client() -> AsyncIterator[Client]:
    app = make_app()
    async with app.test_app() as running:
        yield running.test_client()


def events(body: bytes) -> list[str]:
    return [block for block in body.decode().split("\n\n") if block]


def chunks(body: bytes) -> list[dict[str, object]]:
    return [json.loads(e.removeprefix("data: ")) for e in events(body) if e.startswith("data: {")]


def error_of(payload: object) -> dict[str, object]:
    assert isinstance(payload, dict)
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


async def test_health(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_models_list_and_retrieve(client: Client) -> None:
    listed = await (await client.get("/v1/models")).get_json()
    model = {"id": "nanobot-echo", "object": "model", "created": 0, "owned_by": "nanobot"}
    assert listed == {"object": "list", "data": [model]}
    assert await (await client.get("/v1/models/nanobot-echo")).get_json() == model
    missing = await client.get("/v1/models/gpt-4o")
    assert missing.status_code == 404
    assert error_of(await missing.get_json())["type"] == "invalid_request_error"


async def test_unknown_route_and_wrong_method_answer_json(client: Client) -> None:
    missing = await client.get("/v1/nothing")
    assert missing.status_code == 404
    assert error_of(await missing.get_json())["code"] == 404
    wrong = await client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.content_type == "application/json"
    assert error_of(await wrong.get_json())["code"] == 405
    assert "POST" in wrong.headers["Allow"]


async def test_chat_completion_answer(client: Client) -> None:
    response = await client.post("/v1/chat/completions", json={**USER_HI, "session_id": "s"})
    assert response.status_code == 200
    assert response.headers["X-Session-Id"] == "s"
    body = await response.get_json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "nanobot-echo"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hi there"},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


async def test_streamed_answer_follows_the_openai_chunk_format(
    client: Client,
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json={**USER_HI, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 200
    assert response.content_type.startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["X-Session-Id"] == "default"
    body = await response.get_data()
    assert events(body)[-1] == "data: [DONE]"
    parsed = chunks(body)
    assert len({c["id"] for c in parsed}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in parsed)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant"}
    content = [c["choices"][0]["delta"]["content"] for c in parsed[1:-2]]
    assert content == ["echo:", " hi", " there"]
    assert parsed[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["total_tokens"] == 5


async def test_no_usage_chunk_unless_asked(client: Client) -> None:
    response = await client.post("/v1/chat/completions", json={**USER_HI, "stream": True})
    parsed = chunks(await response.get_data())
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in parsed[-1]


async def test_a_turn_failing_mid_stream_ends_with_an_error_event_and_no_done() -> None:
    app = make_app(FailingAgent(UpstreamFailed("Upstream model error: HTTP 500")))
    async with app.test_app() as running:
        response = await running.test_client().post(
            "/v1/chat/completions", json={**USER_HI, "stream": True}
        )
        body = await response.get_data()
    assert "[DONE]" not in body.decode()
    last = chunks(body)[-1]
    assert error_of(last) == {
        "message": "Upstream model error: HTTP 500",
        "type": "server_error",
        "param": None,
        "code": 502,
    }
    assert all(c.get("choices", [{}])[0].get("finish_reason") is None for c in chunks(body)[:-1])


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (UpstreamFailed("Upstream model error: HTTP 503"), 502, "Upstream model error: HTTP 503"),
        (RuntimeError("secret detail"), 500, "Internal server error"),
    ],
)
async def test_a_failing_turn_maps_to_its_status(
    error: Exception, status: int, message: str
) -> None:
    app = make_app(FailingAgent(error))
    async with app.test_app() as running:
        response = await running.test_client().post("/v1/chat/completions", json=USER_HI)
        assert response.status_code == status
        assert error_of(await response.get_json())["message"] == message


async def test_a_turn_over_the_timeout_is_504_and_a_streamed_one_ends_in_error() -> None:
    app = make_app(GatedAgent(), timeout_s=0.05)
    async with app.test_app() as running:
        client = running.test_client()
        response = await client.post("/v1/chat/completions", json=USER_HI)
        assert response.status_code == 504
        assert error_of(await response.get_json())["message"] == "Request timed out after 0.05s"
        streamed = await client.post("/v1/chat/completions", json={**USER_HI, "stream": True})
        body = await streamed.get_data()
    assert "[DONE]" not in body.decode()
    assert error_of(chunks(body)[-1])["code"] == 504


async def test_a_silent_turn_gets_keepalive_comments() -> None:
    agent = GatedAgent()
    app = make_app(agent, keepalive_s=0.01)
    async with app.test_app() as running:
        client = running.test_client()
        async with client.request(
            "/v1/chat/completions",
            method="POST",
            headers={"Content-Type": "application/json"},
        ) as connection:
            await connection.send(json.dumps({**USER_HI, "stream": True}).encode())
            await connection.send_complete()
            received = b""
            while received.count(b": keep-alive") < 2:
                received += await connection.receive()
            agent.gate("hi there").set()
            while b"[DONE]" not in received:
                received += await connection.receive()
    assert b"done hi there" in received


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Request body must be valid JSON"),
        (b'{"messages": []}', "Only a single user message is supported"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "model": "gpt-4o"}',
            "Only configured model 'nanobot-echo' is available",
        ),
    ],
)
async def test_bad_requests_are_400_with_a_clear_message(
    client: Client, body: bytes, message: str
) -> None:
    response = await client.post(
        "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = error_of(await response.get_json())
    assert error["message"].startswith(message)  # a refusal goes on to say what to send
    assert (error["type"], error["code"]) == ("invalid_request_error", 400)


async def test_a_body_over_the_request_limit_is_refused_before_reading() -> None:
    app = make_app(limits=UploadLimits(max_request_bytes=1024))
    async with app.test_app() as running:
        response = await running.test_client().post(
            "/v1/chat/completions",
            data=b"x" * 2048,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert error_of(await response.get_json())["message"] == "Request body exceeds 1024 bytes limit"


async def test_a_chunked_body_is_refused_once_it_crosses_the_request_limit() -> None:
    app = make_app(limits=UploadLimits(max_request_bytes=1024))
    async with app.test_app() as running:
        async with running.test_client().request(
            "/v1/chat/completions",
            method="POST",
            headers={"Content-Type": "application/json"},
        ) as connection:
            await connection.send(b'{"messages": [{"role": "user", "content": "')
            await connection.send(b"x" * 2048)
            # The answer comes before the client has finished its body.
            await connection.receive()
        assert connection.status_code == 413


async def test_api_key_is_required_everywhere_but_health() -> None:
    app = make_app(api_key=KEY)
    async with app.test_app() as running:
        client = running.test_client()
        assert (await client.get("/health")).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            response = await client.get("/v1/models", headers=headers)
            assert response.status_code == 401
            error = error_of(await response.get_json())
            assert (error["type"], error["code"]) == ("authentication_error", 401)
        ok = await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200


async def test_every_response_carries_a_request_id(client: Client) -> None:
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    made = await client.get("/nowhere")
    assert made.headers["X-Request-ID"].startswith("req_")
    failed = await client.post("/v1/chat/completions", json={})
    assert failed.headers["X-Request-ID"].startswith("req_")


async def test_sessions_are_kept_apart_through_http() -> None:
    store = InMemorySessionStore()
    app = make_app(store=store)
    async with app.test_app() as running:
        client = running.test_client()
        for session, text in (("a", "one"), ("b", "two"), ("a", "three")):
            body = {"messages": [{"role": "user", "content": text}], "session_id": session}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    history_a = await store.history(api_session("a"))
    assert [r.user_text for r in history_a] == ["one", "three"]
    assert [r.user_text for r in await store.history(api_session("b"))] == ["two"]
