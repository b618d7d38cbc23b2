"""Requests a hostile or careless client sends, each through a real socket."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import attrs
import pytest

from nanobot_api.adapters.http.app import create_quart_app
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.config import Config
from nanobot_api.app.echo import EchoAgent
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from nanobot_api.domain.sessions import api_session
from tests.fakes import TextOnlyAttachments
from tests.raw_http import Answer, read_answer, request_bytes, send

CHAT = "/v1/chat/completions"


@asynccontextmanager
async def serving(
    store: InMemorySessionStore | None = None, **settings: object
) -> AsyncIterator[RunningServer]:
    service = ChatService(
        EchoAgent(), store or InMemorySessionStore(), TextOnlyAttachments(), timeout_s=10
    )
    app = create_quart_app(service, HttpSettings(**settings))  # type: ignore[arg-type]
    async with running_server(app) as server:
        yield server


def post(
    server: RunningServer, body: bytes, headers: dict[str, str | bytes] | None = None
) -> bytes:
    sent: dict[str, str | bytes] = {
        "Host": f"127.0.0.1:{server.port}",
        "Connection": "close",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **(headers or {}),
    }
    return request_bytes("POST", CHAT, sent, body)


def chat_body(content: object, **fields: object) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": content}], **fields}).encode()


# ---- malformed bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"messages": [{"role": "user", "content": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
        b'{"messages": [{"role": "user", "content": "hi"}], "x": '
        + b'{"a":' * 100_000
        + b"1"
        + b"}" * 100_000
        + b"}",
    ],
    ids=["body", "content", "ignored-field"],
)
async def test_json_nested_100000_deep_is_a_400_not_a_500(body: bytes) -> None:
    async with serving() as server:
        answer = await send(server.port, post(server, body))
    assert answer.status == 400
    assert answer.error_type() == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat_body("\ud800"), "messages[0].content"),
        (chat_body([{"type": "text", "text": "a\udfff"}]), "messages[0].content[0].text"),
        (chat_body("hi", session_id="s\ud800"), "session_id"),
        (chat_body("hi", stream=True), None),  # control: a stream that works
    ],
)
async def test_a_lone_surrogate_anywhere_is_a_400_before_any_stream(
    body: bytes, param: str | None
) -> None:
    async with serving() as server:
        answer = await send(server.port, post(server, body))
    if param is None:
        assert answer.status == 200
        assert b"data: [DONE]" in answer.body
        return
    assert answer.status == 400
    assert answer.json()["error"]["param"] == param  # type: ignore[index]


async def test_base64_with_line_breaks_and_spaces_is_accepted_and_garbage_refused() -> None:
    text = "hello, wrapped world " * 20
    wrapped = base64.encodebytes(text.encode()).decode()  # 76 columns, as `base64` prints
    spaced = " ".join(wrapped.split("\n"))
    async with serving() as server:
        for payload in (wrapped, spaced):
            part = {"type": "file", "file": {"file_data": f"data:text/plain;base64,{payload}"}}
            answer = await send(server.port, post(server, chat_body([part])))
            assert answer.status == 200, answer.body
            assert f"{len(text)} chars" in answer.body.decode()
        bad = {"type": "file", "file": {"file_data": "data:text/plain;base64,ab$c"}}
        answer = await send(server.port, post(server, chat_body([bad])))
    assert answer.status == 400
    assert "not valid base64" in answer.error_message()


# ---- bodies that never arrive -----------------------------------------------------------


@pytest.mark.slow
async def test_a_body_trickling_in_gets_408_within_the_body_deadline() -> None:
    async with serving(body_timeout_s=1.0) as server:
        head = post(server, b"")[:-2]  # the head, its Content-Length replaced below
        head = head.replace(b"Content-Length: 0", b"Content-Length: 100000") + b"\r\n"
        started = time.monotonic()
        async with (
            await anyio.connect_tcp("127.0.0.1", server.port) as stream,
            anyio.create_task_group() as group,
        ):
            await stream.send(head)

            async def trickle() -> None:
                # One byte every 0.2 s: each read is quick, the whole body never is.
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    while True:
                        await stream.send(b" ")
                        await anyio.sleep(0.2)

            group.start_soon(trickle)
            answer = await read_answer(stream, timeout_s=5)
            group.cancel_scope.cancel()
    assert answer.status == 408
    assert time.monotonic() - started < 3


async def test_a_body_shorter_than_its_length_gets_408() -> None:
    async with serving(body_timeout_s=0.5) as server:
        body = chat_body("hi")
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            await stream.send(post(server, body, {"Content-Length": str(len(body) + 10)}))
            answer = await read_answer(stream, timeout_s=3)
    assert answer.status == 408
    assert "api.bodyTimeoutS" in answer.error_message()


# ---- sessions named in headers ----------------------------------------------------------


async def test_a_non_ascii_session_header_names_the_same_session_as_the_body() -> None:
    store = InMemorySessionStore()
    async with serving(store) as server:
        by_header = post(server, chat_body("one"), {"X-Session-Id": "café-☕".encode()})
        first = await send(server.port, by_header)
        by_body = post(server, chat_body("two", session_id="café-☕"))
        second = await send(server.port, by_body)
        both = post(server, chat_body("three", session_id="café-☕"), {"X-Session-Id": "café-☕"})
        third = await send(server.port, both)
    assert (first.status, second.status, third.status) == (200, 200, 200)
    history = await store.history(api_session("café-☕"))
    assert [record.user_text for record in history] == ["one", "two", "three"]


# ---- pages on other sites ---------------------------------------------------------------


async def test_a_cross_site_form_post_is_403_before_its_body_is_read() -> None:
    store = InMemorySessionStore()
    async with serving(store) as server:
        head = request_bytes(
            "POST",
            CHAT,
            {
                "Host": f"127.0.0.1:{server.port}",
                "Origin": "https://evil.example",
                "Content-Type": "multipart/form-data; boundary=x",
                "Content-Length": "1000000",
                "Connection": "close",
            },
        )
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            await stream.send(head)  # and never the body: the answer comes regardless
            answer = await read_answer(stream, timeout_s=3)
    assert answer.status == 403
    assert answer.error_type() == "forbidden_origin"
    assert await store.history(api_session(None)) == ()


async def test_json_sent_as_text_plain_is_415_and_runs_no_turn() -> None:
    store = InMemorySessionStore()
    async with serving(store) as server:
        answer = await send(
            server.port, post(server, chat_body("hi"), {"Content-Type": "text/plain"})
        )
    assert answer.status == 415
    assert await store.history(api_session(None)) == ()


# ---- paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"), [("//v1/chat/completions", 200), ("/v1//chat/completions", 404)]
)
async def test_doubled_slashes_are_routed_as_quart_routes_them_never_a_500_or_redirect(
    path: str, status: int
) -> None:
    """Leading slashes count as one (werkzeug's rule); inner ones are not merged into a
    308 whose Location is built from the Host header."""
    key = "sk-0123456789abcdef"
    async with serving(api_key=key) as server:
        sent: dict[str, str | bytes] = {
            "Host": "evil.example",
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Content-Length": str(len(chat_body("hi"))),
            "Connection": "close",
        }
        answer = await send(server.port, request_bytes("POST", path, sent, chat_body("hi")))
    assert answer.status == status
    assert "location" not in answer.headers
    if status == 404:
        assert answer.error_type() == "invalid_request_error"


# ---- one request cannot stall the others ------------------------------------------------


@pytest.mark.slow
async def test_a_huge_body_of_data_url_parameters_does_not_stall_health() -> None:
    """60 MB of ";a" inside a data URL once held the event loop for 18 s."""
    body = (
        b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": '
        b'{"url": "data:image/png' + b";a" * 8_000_000 + b'"}}]}]}'
    )
    async with serving() as server:
        slowest = 0.0
        answer: Answer | None = None

        async def chat() -> None:
            nonlocal answer
            answer = await send(server.port, post(server, body), timeout_s=30)

        async with anyio.create_task_group() as group:
            group.start_soon(chat)
            while answer is None:
                started = time.monotonic()
                health = request_bytes(
                    "GET", "/health", {"Host": "localhost", "Connection": "close"}
                )
                assert (await send(server.port, health)).status == 200
                slowest = max(slowest, time.monotonic() - started)
                await anyio.sleep(0.05)
    assert answer is not None
    assert answer.status == 400
    assert slowest < 1.0


# ---- the same rules on the Responses API's routes ---------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
        (json.dumps({"input": "a\ud800"}).encode(), 400),
        (json.dumps({"input": "hello"}).encode(), 200),
    ],
    ids=["deep", "surrogate", "control"],
)
async def test_hostile_bodies_to_the_responses_api_are_400_too(
    tmp_path: Path, body: bytes, status: int
) -> None:
    config = attrs.evolve(Config(), workspace=tmp_path / "workspace")
    async with running_server(build(config)) as server:
        sent: dict[str, str | bytes] = {
            "Host": f"127.0.0.1:{server.port}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
        answer = await send(server.port, request_bytes("POST", "/v1/responses", sent, body))
    assert answer.status == status, answer.body[:300]
    if status == 400:
        assert answer.error_type() == "invalid_request_error"
