"""The floor for bench/inflight.py: a bare relay, no sessions, no pipeline.

An aiohttp server that forwards each chat request to the model with aiohttp's client,
parses every event of the model's stream and writes what one read brought as one
event (as nanobot's relay does). What it costs under the same load is what any Python
relay on aiohttp pays before storing, leasing, logging or counting anything.

    .venv/bin/python bench/inflight.py --floor
"""

from __future__ import annotations

import json
import sys

import aiohttp
from aiohttp import web

BACKLOG = 4096


def chunk(text: str) -> bytes:
    delta = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    body = {"id": "floor", "object": "chat.completion.chunk", "choices": [delta]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def texts_of(events: list[bytes]) -> list[str]:
    texts = []
    for event in events:
        data = event.removeprefix(b"data: ")
        if data == b"[DONE]":
            continue
        for choice in json.loads(data).get("choices", []):
            text = choice.get("delta", {}).get("content")
            if text:
                texts.append(text)
    return texts


def run(port: int, upstream: str) -> None:
    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        sent = {"model": "m", "messages": body["messages"], "stream": True}
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async with request.app["client"].post(upstream, json=sent) as answer:
            rest = b""
            async for data in answer.content.iter_any():
                *events, rest = (rest + data).split(b"\n\n")
                texts = texts_of(events)
                if texts:
                    await response.write(chunk("".join(texts)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(app: web.Application) -> None:
        app["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    app = web.Application()
    app.on_startup.append(start)
    app.router.add_post("/v1/chat/completions", relay)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=BACKLOG)


if __name__ == "__main__":
    run(int(sys.argv[1]), sys.argv[2])
