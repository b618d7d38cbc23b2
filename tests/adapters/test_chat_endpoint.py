"""What the chat endpoint does with the connection itself, on a real socket."""

from __future__ import annotations

import logging
import socket
import struct

import anyio
import anyio.abc
import pytest
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

from nanobot_api.adapters.http.app import create_quart_app
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.echo import EchoAgent
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.domain.ports import Agent, Reply
from nanobot_api.domain.sessions import api_session
from nanobot_api.domain.turns import Turn
from tests.fakes import GatedAgent, TextOnlyAttachments

BODY = b'{"messages": [{"role": "user", "content": "%s"}], "session_id": "s"}'


def server_of(agent: Agent, store: InMemorySessionStore, *, body_timeout_s: float = 60):
    service = ChatService(agent, store, TextOnlyAttachments(), timeout_s=30)
    return running_server(create_quart_app(service, HttpSettings(body_timeout_s=body_timeout_s)))


async def exchange(port: int, request: bytes, *, close_after_send: bool = False) -> bytes:
    """Sends raw bytes and reads the whole answer (the server closes or answers once)."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        if close_after_send:
            return b""
        answer = b""
        with anyio.fail_after(10):
            while b"\r\n\r\n" not in answer or not _complete(answer):
                try:
                    answer += await stream.receive()
                except anyio.EndOfStream:
                    break
        return answer


async def connect(port: int) -> anyio.abc.SocketStream:
    return await anyio.connect_tcp("127.0.0.1", port)


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return len(body) >= int(value)
    return False


def post(body: bytes, *, length: int | None = None) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length)
    ) + body


async def test_a_client_leaving_a_non_streamed_turn_cancels_it_and_frees_the_session() -> None:
    agent = GatedAgent(model="gated")
    store = InMemorySessionStore()
    async with server_of(agent, store) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            await stream.send(post(BODY % b"cut"))
            await agent.started_event("cut").wait()
        # The connection is closed with the turn still waiting at its gate.
        with anyio.fail_after(5):
            await agent.ended_event("cut").wait()
        agent.gate("next").set()
        answer = await exchange(server.port, post(BODY % b"next"))
    assert answer.startswith(b"HTTP/1.1 200")
    assert b'"content":"done next"' in answer
    assert [r.user_text for r in await store.history(api_session("s"))] == ["next"]


async def test_a_body_that_stops_arriving_gets_408_and_nothing_runs() -> None:
    agent = GatedAgent(model="gated")
    async with server_of(agent, InMemorySessionStore(), body_timeout_s=0.3) as server:
        whole = BODY % b"slow"
        with anyio.fail_after(5):
            answer = await exchange(server.port, post(whole[:10], length=len(whole)))
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"Request body not received in time" in answer
    assert agent.seen == []


async def test_a_client_leaving_before_its_body_is_whole_leaves_the_server_well() -> None:
    agent = GatedAgent(model="gated")
    store = InMemorySessionStore()
    async with server_of(agent, store) as server:
        whole = BODY % b"gone"
        await exchange(server.port, post(whole[:10], length=len(whole)), close_after_send=True)
        agent.gate("after").set()
        answer = await exchange(server.port, post(BODY % b"after"))
    assert answer.startswith(b"HTTP/1.1 200")
    assert [t.text for t in agent.seen] == ["after"]


@pytest.mark.parametrize("method", [b"GET", b"PUT", b"DELETE"])
async def test_other_methods_on_the_path_get_405_json(method: bytes) -> None:
    async with server_of(GatedAgent(), InMemorySessionStore()) as server:
        answer = await exchange(
            server.port, method + b" /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
    assert answer.startswith(b"HTTP/1.1 405")
    assert b'"code":405' in answer
    assert b"allow: " in answer.lower()


async def test_a_body_refused_halfway_is_read_on_so_its_sender_gets_the_answer() -> None:
    """A malformed form is refused at its first part while the client is still sending
    the rest; reading on (bounded) lets the client finish its write and read the 400."""
    rest = b"x" * (256 * 1024)
    head = b"not a multipart part\r\n"
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: %d\r\n\r\n" % (len(head) + len(rest))
    ) + head
    async with (
        server_of(GatedAgent(), InMemorySessionStore()) as server,
        await anyio.connect_tcp("127.0.0.1", server.port) as stream,
    ):
        await stream.send(request)
        await anyio.sleep(0.05)  # the server has refused the form by now
        for start in range(0, len(rest), 16 * 1024):
            await stream.send(rest[start : start + 16 * 1024])
            await anyio.sleep(0.01)
        answer = b""
        with anyio.fail_after(5):
            while not _complete(answer):
                answer += await stream.receive()
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"Malformed multipart/form-data body" in answer


class _WrittenChunks:
    """ASGI middleware that keeps every response body chunk the app writes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.started = anyio.Event()  # set once the response has started

    def around(self, app: ASGIFramework) -> ASGIFramework:
        async def recorded(
            scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
        ) -> None:
            async def recording(message: ASGISendEvent) -> None:
                await send(message)
                if message["type"] == "http.response.start":
                    self.started.set()
                if message["type"] == "http.response.body":
                    self.chunks.append(bytes(message.get("body", b"")))

            await app(scope, receive, recording)

        return recorded


class _BurstAgent:
    """Writes two deltas without waiting for anything in between, as a model's burst
    of chunks does, and notes whether the first was written before it went on."""

    model = "burst"

    def __init__(self, written: _WrittenChunks) -> None:
        self._written = written
        self.first_written_before_the_second: bool | None = None

    async def respond(self, turn: Turn, reply: Reply) -> None:
        await self._written.started.wait()  # the model takes a while to answer
        await reply.send("first")
        self.first_written_before_the_second = any(
            b'"content":"first"' in chunk for chunk in self._written.chunks
        )
        await reply.send(" second")


async def test_a_streamed_delta_is_written_before_the_turn_goes_on() -> None:
    written = _WrittenChunks()
    agent = _BurstAgent(written)
    service = ChatService(agent, InMemorySessionStore(), TextOnlyAttachments(), timeout_s=30)
    app = create_quart_app(service, HttpSettings())
    app.asgi_app = written.around(app.asgi_app)  # type: ignore[method-assign]
    body = b'{"messages": [{"role": "user", "content": "go"}], "session_id": "s", "stream": true}'
    answer = b""
    async with running_server(app) as server, await connect(server.port) as stream:
        await stream.send(post(body))
        with anyio.fail_after(10):
            while b"data: [DONE]" not in answer:
                answer += await stream.receive()
    assert b'"content":"first"' in answer
    assert b'"content":" second"' in answer
    assert agent.first_written_before_the_second is True


async def test_clients_cutting_streams_short_leave_no_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemorySessionStore()
    body = (
        b'{"messages": [{"role": "user", "content": "one two three four five six seven"}],'
        b' "session_id": "s", "stream": true}'
    )
    with caplog.at_level(logging.WARNING):
        async with server_of(EchoAgent(), store) as server:
            for n in range(60):
                stream = await connect(server.port)
                await stream.send(post(body))
                if n % 3 == 0:
                    await anyio.sleep(0.001)
                # Gone before the answer, as a closed browser tab: the connection is
                # reset rather than closed, so the server's writes fail at once.
                raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                await stream.aclose()
            answer = await exchange(server.port, post(BODY % b"after"))
    assert answer.startswith(b"HTTP/1.1 200")
    # Each cut stream was a turn written into a closed connection until it noticed.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_request_to_an_absolute_url_is_answered_like_any_other() -> None:
    agent = GatedAgent(model="gated")
    agent.gate("whole").set()
    async with server_of(agent, InMemorySessionStore()) as server:
        request = post(BODY % b"whole").replace(
            b"POST /v1/chat/completions", b"POST http://t/v1/chat/completions", 1
        )
        answer = await exchange(server.port, request)
    assert answer.startswith(b"HTTP/1.1 200")
    assert b'"content":"done whole"' in answer
