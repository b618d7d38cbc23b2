"""A stand-in model that answers what real client libraries ask of it, by rule.

Unlike ``tests/upstream.py`` (a script per test), it reads each request: a tool the
client forces is called with the smallest valid arguments; a ``response_format``
schema is answered with its smallest instance; a tool result is acknowledged (in a
call of ``final_answer`` when a call is required, as smolagents' agents ask); a
question that mentions the weather, or any question when a tool call is required,
calls the weather tool, or else the request's last tool (the client's); anything else
is echoed with the number of user messages the request held, so a test sees that the
server sent the session's history upstream. A streamed call comes in pieces, as
OpenAI streams it. Every request is recorded.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

from aiohttp import web

from nanobot_api.domain.schema_instance import minimal_instance
from tests.local_http import serve_locally


class StandInModel:
    """``async with StandInModel() as model:`` serves at ``model.base_url``."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._ids = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def systems(self) -> list[str]:
        """The system message of each request received ("" when it had none)."""
        texts = []
        for body in self.received:
            first = body["messages"][0]
            texts.append(_text(first) if first["role"] == "system" else "")
        return texts

    async def __aenter__(self) -> StandInModel:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        content, calls = self._answer(body)
        self._ids += 1
        if body.get("stream"):
            return await self._stream(request, content, calls)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return web.json_response(
            {
                "id": f"chatcmpl-standin-{self._ids}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "standin"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if calls else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            }
        )

    def _answer(self, body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        messages = body["messages"]
        tools = {t["function"]["name"]: t["function"] for t in body.get("tools", [])}
        forced = body.get("tool_choice")
        if isinstance(forced, dict) and forced.get("function", {}).get("name") in tools:
            return None, [self._call(tools[forced["function"]["name"]])]
        shape = body.get("response_format") or {}
        if shape.get("type") == "json_schema":
            schema = shape["json_schema"].get("schema", {})
            return json.dumps(minimal_instance(schema)), []
        if shape.get("type") == "json_object":
            return json.dumps({"ok": True}), []
        last = messages[-1]
        result = _tool_result(last)
        if result is not None:
            return self._acknowledged(result, tools, forced)
        if tools and (forced == "required" or "weather" in _text(last).lower()):
            # The client's tools come after the server's own (its message tool).
            named = [f for name, f in tools.items() if "weather" in name]
            return None, [self._call((named or list(tools.values()))[-1])]
        users = sum(1 for m in messages if m["role"] == "user")
        return f"echo: {_text(last)} (user messages: {users})", []

    def _acknowledged(
        self, result: str, tools: dict[str, Any], forced: object
    ) -> tuple[str | None, list[dict[str, Any]]]:
        ack = f"The tool answered: {result}"
        if forced == "required" and "final_answer" in tools:
            # smolagents' agents must call a tool every step: the answer is one.
            return None, [self._call(tools["final_answer"], {"answer": ack})]
        return ack, []

    def _call(self, function: dict[str, Any], arguments: Any = None) -> dict[str, Any]:
        if arguments is None:
            arguments = minimal_instance(function.get("parameters") or {"type": "object"})
        if isinstance(arguments, dict):
            # A place name a test can look for, where the schema takes any string.
            arguments = {k: ("Paris" if v == "" else v) for k, v in arguments.items()}
        return {
            "id": f"call_standin_{self._ids}",
            "type": "function",
            "function": {"name": function["name"], "arguments": json.dumps(arguments)},
        }

    async def _stream(
        self, request: web.Request, content: str | None, calls: list[dict[str, Any]]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": f"chatcmpl-standin-{self._ids}",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "standin",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await event({"role": "assistant", "content": ""})
        for index, word in enumerate((content or "").split(" ") if content else []):
            await event({"content": word if index == 0 else " " + word})
        for index, call in enumerate(calls):
            # As OpenAI streams a call: its id and name first, then its arguments in pieces.
            function = call["function"]
            start = {**call, "function": {"name": function["name"], "arguments": ""}}
            await event({"tool_calls": [{"index": index, **start}]})
            arguments = function["arguments"]
            for at in range(0, len(arguments), 5):
                piece = {"index": index, "function": {"arguments": arguments[at : at + 5]}}
                await event({"tool_calls": [piece]})
        await event({}, "tool_calls" if calls else "stop")
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _tool_result(message: dict[str, Any]) -> str | None:
    """A tool's result: a ``tool`` message, or smolagents' way of sending one (a user
    message starting "Observation:")."""
    text = _text(message)
    if message["role"] == "tool":
        return text
    if message["role"] == "user" and text.startswith("Observation:"):
        return text.removeprefix("Observation:").strip()
    return None
