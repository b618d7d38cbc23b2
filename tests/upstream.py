"""A scripted OpenAI-compatible model server of the tests' own, on 127.0.0.1.

Each request takes the next step of its script (an answer or a fault) and is recorded
whole (body, headers), so a test can check exactly what nanobot sent upstream. With the
script empty it answers with its ``default`` step for the request, else
``echo: <last user text>``. Answers stream as SSE when the
request says ``stream: true``, else come as one JSON document, as OpenAI does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from nanobot_api.adapters.llm.openai_compat import OpenAICompatChatModel
from tests.local_http import serve_locally


@attrs.frozen
class Text:
    """Answer with ``text`` (streamed in ``pieces`` if given, else word by word)."""

    text: str
    usage: tuple[int, int] | None = (10, 5)
    pieces: tuple[str, ...] | None = None
    # A streamed answer waits for this after its first piece (to show nothing buffers).
    gate: asyncio.Event | None = attrs.field(default=None, eq=False)
    # All of a streamed answer's events in one write (as a busy provider's reach a reader).
    together: bool = False
    # Seconds the model "thinks" before its answer starts (a model call of known length).
    delay_s: float = 0.0


@attrs.frozen
class Calls:
    """Answer with tool calls: ``(name, arguments JSON text)`` each, ids made up."""

    calls: tuple[tuple[str, str], ...]
    text: str = ""
    usage: tuple[int, int] | None = (10, 5)


@attrs.frozen
class Status:
    """Answer with an HTTP error status, an OpenAI-style error body, maybe Retry-After."""

    status: int
    message: str = "scripted failure"
    retry_after: str | None = None


@attrs.frozen
class Hang:
    """Never answer (until the server stops)."""


@attrs.frozen
class Break:
    """Stream ``text`` then cut the connection without finishing the answer (once
    ``gate`` is set, if given: the answer is under way until then)."""

    text: str = "partial"
    gate: asyncio.Event | None = attrs.field(default=None, eq=False)


Step = Text | Calls | Status | Hang | Break


@attrs.frozen
class Received:
    """One request as the upstream saw it."""

    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    # The body's length in bytes, as it came over the wire.
    size: int

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.body["messages"]
        return messages

    @property
    def tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = self.body.get("tools", [])
        return tools

    @property
    def last_user_text(self) -> str:
        content = self.messages[-1]["content"]
        if isinstance(content, str):
            return content
        return "\n\n".join(p["text"] for p in content if p["type"] == "text")


class ScriptedUpstream:
    """``async with ScriptedUpstream(steps) as up:`` serves at ``up.base_url`` (``.../v1``)."""

    def __init__(
        self, steps: Iterable[Step] = (), *, default: Callable[[Received], Step] | None = None
    ) -> None:
        self.script: deque[Step] = deque(steps)
        self._default = default
        self.received: list[Received] = []
        self._stopping = asyncio.Event()
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._calls = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def add(self, *steps: Step) -> None:
        self.script.extend(steps)

    async def wait_received(self, count: int) -> Received:
        """Returns once ``count`` requests have arrived: the latest of them."""
        while len(self.received) < count:
            await self._arrived.wait()
        return self.received[count - 1]

    async def __aenter__(self) -> ScriptedUpstream:
        # Far above aiohttp's default of 1 MiB: tests send histories of several MiB.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        self.received.append(Received(body, dict(request.headers), time.monotonic(), len(raw)))
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
        step = self.script.popleft() if self.script else None
        if step is None and self._default is not None:
            step = self._default(self.received[-1])
        if step is None:
            step = Text("echo: " + self.received[-1].last_user_text)
        stream = bool(body.get("stream"))
        if isinstance(step, Status):
            headers = {"Retry-After": step.retry_after} if step.retry_after else {}
            error = {"error": {"message": step.message, "type": "scripted", "code": step.status}}
            return web.json_response(error, status=step.status, headers=headers)
        if isinstance(step, Hang):
            await self._stopping.wait()
            return web.Response(status=503)
        if isinstance(step, Break):
            return await self._break(request, step)
        if isinstance(step, Text) and step.delay_s:
            await asyncio.sleep(step.delay_s)
        if stream:
            return await self._stream(request, step)
        return web.json_response(self._completion(step))

    def _new_id(self) -> str:
        self._calls += 1
        return f"chatcmpl-{self._calls}"

    def _tool_calls(self, step: Calls) -> list[dict[str, Any]]:
        return [
            {
                "id": f"call_{self._calls}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
            for i, (name, args) in enumerate(step.calls)
        ]

    def _completion(self, step: Text | Calls) -> dict[str, Any]:
        cid = self._new_id()
        message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
        if isinstance(step, Calls):
            message["tool_calls"] = self._tool_calls(step)
        answer: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": 0,
            "model": "scripted",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if isinstance(step, Calls) else "stop",
                }
            ],
        }
        if step.usage is not None:
            answer["usage"] = _usage(step.usage)
        return answer

    async def _stream(self, request: web.Request, step: Text | Calls) -> web.StreamResponse:
        cid = self._new_id()
        options = self.received[-1].body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        held: list[bytes] | None = [] if isinstance(step, Text) and step.together else None

        async def event(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "scripted",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            if held is None:
                await resp.write(data)
            else:
                held.append(data)

        await event({"role": "assistant", "content": ""})
        pieces = _pieces(step)
        for index, piece in enumerate(pieces):
            await event({"content": piece})
            if index == 0 and isinstance(step, Text) and step.gate is not None:
                await step.gate.wait()
        if isinstance(step, Calls):
            for i, call in enumerate(self._tool_calls(step)):
                # As OpenAI does: id and name first, the arguments in a few pieces.
                first = {"index": i, "id": call["id"], "type": "function"}
                first["function"] = {"name": call["function"]["name"], "arguments": ""}
                await event({"tool_calls": [first]})
                args = call["function"]["arguments"]
                for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                    await event({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
        await event({}, "tool_calls" if isinstance(step, Calls) else "stop")
        if held:
            await resp.write(b"".join(held))
        if include_usage and step.usage is not None:
            usage_chunk = {"id": cid, "choices": [], "usage": _usage(step.usage)}
            await resp.write(f"data: {json.dumps(usage_chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _break(self, request: web.Request, step: Break) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"choices": [{"index": 0, "delta": {"content": step.text}}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if step.gate is not None:
            await step.gate.wait()
        assert request.transport is not None
        request.transport.abort()
        return resp


def _pieces(step: Text | Calls) -> list[str]:
    if isinstance(step, Text) and step.pieces is not None:
        return list(step.pieces)
    words = step.text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if step.text else []


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    return {
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "total_tokens": sum(usage),
    }


@contextlib.asynccontextmanager
async def chat_model(
    upstream: ScriptedUpstream, api_key: str = "sk-test-secret-key", **options: Any
) -> AsyncIterator[OpenAICompatChatModel]:
    """The real adapter pointed at ``upstream``, on its own client session."""
    options.setdefault("retry_base_s", 0.01)
    async with aiohttp.ClientSession() as session:
        yield OpenAICompatChatModel(
            session, upstream.base_url, api_key, "scripted-model", **options
        )


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
