"""Drive a real Open WebUI 0.12.4 in headless Chromium against nanobot-api; print history.

Outside ``make test`` (Open WebUI installs about 7 GB). It starts, all on 127.0.0.1:

- a stand-in model answering ``ECHO[k]: <last user text>`` (``k``: the user messages
  it was sent), so each answer shows how many turns the model saw;
- ``nanobot serve`` in ``"latest"`` mode in front of it;
- a recording proxy between Open WebUI and nanobot, writing every request (headers,
  body) and answer as JSON lines, the format of tests/fixtures;
- Open WebUI (``--owui``: its venv) with forwarding on and, with ``--recipe``, the
  recipe's connection headers (docs/how-to/front-ends.md);

then runs the steps of tests/fixtures/README.md in Chromium (Debian's ``chromium``,
through Playwright installed in the Open WebUI venv) and prints each session's stored
history (``nanobot sessions show KEY --all``). Run it with the Open WebUI venv's
Python::

    /path/to/owui/bin/python scripts/openwebui_browser.py --owui /path/to/owui \\
        --nanobot .venv/bin/nanobot --out /tmp/owui-run [--recipe]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

RECIPE_HEADERS = {
    "X-Session-Id": "{{CHAT_ID}}",
    "X-OpenWebUI-Task": "{{TASK}}",
    "X-OpenWebUI-Message-Id": "{{MESSAGE_ID}}",
    "X-OpenWebUI-User-Message-Id": "{{USER_MESSAGE_ID}}",
    "X-OpenWebUI-User-Message-Parent-Id": "{{USER_MESSAGE_PARENT_ID}}",
}
MODEL = "scripted-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- the stand-in model ------------------------------------------------------------


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    content = messages[-1].get("content") or ""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    return str(content)


async def _stand_in(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    messages = body.get("messages", [])
    users = sum(1 for m in messages if m.get("role") == "user")
    text = f"ECHO[{users}]: {_last_user_text(messages)}"
    base = {"id": "chatcmpl-standin", "created": int(time.time()), "model": MODEL}
    if not body.get("stream"):
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response({**base, "object": "chat.completion", "choices": [choice]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
        chunk = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    return response


async def _models(_: web.Request) -> web.Response:
    model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "scripted"}
    return web.json_response({"object": "list", "data": [model]})


# ---- the recording proxy -----------------------------------------------------------


class Recorder:
    """Passes Open WebUI's requests on to nanobot and writes each down."""

    def __init__(self, target: str, out: Path) -> None:
        self.target = target
        self.out = out
        self.step = "0-load"
        self.seq = 0
        self.session: ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        raw = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        self.seq += 1
        entry: dict[str, Any] = {
            "seq": self.seq,
            "t": time.time(),
            "step": self.step,
            "method": request.method,
            "path": request.path,
            "headers": dict(request.headers),
        }
        if raw:
            entry["body"] = json.loads(raw)
        async with self.session.request(
            request.method, self.target + request.path_qs, data=raw or None, headers=headers
        ) as upstream:
            text = await upstream.text()
            entry["status"] = upstream.status
            entry["response_headers"] = dict(upstream.headers)
            entry["response_text"] = text
            passed = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in {"content-length", "transfer-encoding", "content-encoding"}
            }
        entry["t_end"] = time.time()
        with self.out.open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
        return web.Response(status=upstream.status, text=text, headers=passed)


async def serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with ClientSession(timeout=ClientTimeout(total=5)) as http:
        while True:
            try:
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
            await asyncio.sleep(1)
