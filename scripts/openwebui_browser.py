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


# ---- the browser -------------------------------------------------------------------


async def run_steps(owui_url: str, recorder: Recorder, shots: Path) -> None:
    """The steps of tests/fixtures/README.md, as a person does them in the browser."""
    import re

    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox"],
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 900})

        async def settle(step: str) -> None:
            # Open WebUI's task requests (title, tags, follow-ups) come after the answer.
            await page.wait_for_timeout(6000)
            await page.screenshot(path=str(shots / f"{step}.png"))

        async def answer(text: str) -> None:
            await page.get_by_text(text).first.wait_for(timeout=90_000)

        async def send(text: str) -> None:
            await page.locator("#chat-input").click()
            await page.keyboard.type(text)
            await page.keyboard.press("Enter")

        async def open_home(url: str) -> None:
            await page.goto(url, wait_until="load", timeout=120_000)
            await page.locator("#chat-input").wait_for(timeout=120_000)
            # The release notes pop up once, a moment after the page is ready.
            welcome = page.get_by_role("button", name=re.compile("Okay"))
            for _ in range(20):
                if await welcome.count():
                    await welcome.first.click()
                    break
                await page.wait_for_timeout(500)

        recorder.step = "0-load"
        await open_home(owui_url)

        recorder.step = "1-send-first"
        await send("first message alpha")
        await answer("ECHO[1]: first message alpha")
        await settle(recorder.step)

        recorder.step = "2-send-second"
        await send("second message beta")
        await answer("ECHO[2]: second message beta")
        await settle(recorder.step)

        recorder.step = "3-regenerate"
        await page.get_by_role("button", name="Regenerate").last.click()
        await page.get_by_role("button", name="Try Again").click()
        await page.get_by_role("button", name="Previous message").first.wait_for(timeout=90_000)
        await settle(recorder.step)

        recorder.step = "4-edit-first"
        await page.get_by_role("button", name="Edit").first.click(force=True)
        editor = page.locator("textarea[id^=message-edit-]").first
        await editor.fill("edited first")
        await page.get_by_role("button", name="Send", exact=True).click()
        await answer("ECHO[1]: edited first")
        await settle(recorder.step)

        recorder.step = "5-switch-back"
        await page.get_by_role("button", name="Previous message").first.click(force=True)
        await answer("ECHO[2]: second message beta")
        await settle(recorder.step)

        recorder.step = "6-send-third"
        await send("third after switch")
        await answer("ECHO[3]: third after switch")
        await settle(recorder.step)

        recorder.step = "7-file-chat"
        await open_home(owui_url)
        notes = shots / "notes.txt"
        notes.write_text("PAPAYA\n", encoding="utf-8")
        await page.locator("input[type=file]").first.set_input_files(str(notes))
        await page.get_by_text("notes.txt").first.wait_for(timeout=60_000)
        await page.wait_for_timeout(3000)  # the upload is processed before it can be sent
        await send("what fruit is in the file?")
        # The answer quotes Open WebUI's template, whose [1] it shows as a citation:
        # the answer's toolbar tells it is complete.
        await page.get_by_role("button", name="Regenerate").first.wait_for(timeout=90_000)
        await settle(recorder.step)

        recorder.step = "8-temp-chat"
        await open_home(owui_url.rstrip("/") + "/?temporary-chat=true")
        await send("temp hello")
        await answer("ECHO[1]: temp hello")
        await settle(recorder.step)
        await browser.close()


# ---- the whole run -----------------------------------------------------------------


def owui_env(args: argparse.Namespace, data: Path, proxy_port: int, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "PORT": str(port),
        "WEBUI_AUTH": "False",
        "ENABLE_FORWARD_USER_INFO_HEADERS": "true",
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ENABLE_OLLAMA_API": "false",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ANONYMIZED_TELEMETRY": "false",
        # No embedding model can be downloaded here: files go into the prompt whole.
        "BYPASS_EMBEDDING_AND_RETRIEVAL": "true",
        "OPENAI_API_BASE_URLS": f"http://127.0.0.1:{proxy_port}/v1",
        "OPENAI_API_KEYS": "anything",
    }
    if args.recipe:
        env["OPENAI_API_CONFIGS"] = json.dumps({"0": {"headers": RECIPE_HEADERS}})
    return env


def show_sessions(nanobot: str, config: Path, workspace: Path) -> None:
    base = [nanobot, "sessions"]
    where = ["-c", str(config), "-w", str(workspace)]
    listing = subprocess.run([*base, "list", *where], capture_output=True, text=True, check=True)
    print("$ nanobot sessions list")
    print(listing.stdout, end="")
    for line in listing.stdout.splitlines():
        key = line.split()[0]
        if ":" not in key:
            continue
        shown = subprocess.run(
            [*base, "show", key, "--all", *where], capture_output=True, text=True, check=False
        )
        print(f"$ nanobot sessions show {key} --all")
        print(_abridged(shown.stdout), end="")


def _abridged(text: str) -> str:
    """Each message's first line: the file chat's turn holds Open WebUI's whole template."""
    kept: list[str] = []
    hidden = 0
    for line in text.splitlines():
        if line.startswith(("--- ", "user: ", "assistant: ", "tool ")):
            if hidden:
                kept[-1] += f"  [+{hidden} lines]"
            kept.append(line[:120])
            hidden = 0
        else:
            hidden += 1
    if hidden:
        kept[-1] += f"  [+{hidden} lines]"
    return "".join(f"{line}\n" for line in kept)


async def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="owui-run-"))
    model_port, nanobot_port, proxy_port, owui_port = (free_port() for _ in range(4))
    config = work / "config.json"
    config.write_text(
        json.dumps(
            {
                "api": {"history": "latest", "port": nanobot_port},
                "agents": {"defaults": {"provider": "custom", "model": MODEL}},
                "providers": {
                    "custom": {"apiBase": f"http://127.0.0.1:{model_port}/v1", "apiKey": "x"}
                },
            }
        ),
        encoding="utf-8",
    )
    workspace = work / "workspace"
    recording = out / ("openwebui-0.12.4-recipe.jsonl" if args.recipe else "forwarding.jsonl")
    recording.unlink(missing_ok=True)

    model = web.Application()
    model.router.add_post("/v1/chat/completions", _stand_in)
    model.router.add_get("/v1/models", _models)
    runners = [await serve(model, model_port)]
    recorder = Recorder(f"http://127.0.0.1:{nanobot_port}", recording)
    proxy = web.Application()
    proxy.router.add_route("*", "/{tail:.*}", recorder.handle)
    runners.append(await serve(proxy, proxy_port))
    recorder.session = ClientSession(timeout=ClientTimeout(total=300))

    logs = (out / "nanobot.log").open("w"), (out / "open-webui.log").open("w")
    server = subprocess.Popen(
        [args.nanobot, "serve", "-c", str(config), "-w", str(workspace)],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    owui = subprocess.Popen(
        [
            str(Path(args.owui) / "bin" / "open-webui"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(owui_port),
        ],
        env=owui_env(args, work / "owui-data", proxy_port, owui_port),
        stdout=logs[1],
        stderr=subprocess.STDOUT,
        cwd=work,
    )
    try:
        await wait_http(f"http://127.0.0.1:{nanobot_port}/health", 60)
        await wait_http(f"http://127.0.0.1:{owui_port}/health", 900)
        await run_steps(f"http://127.0.0.1:{owui_port}/", recorder, out)
    finally:
        for process in (owui, server):
            process.terminate()
            process.wait(timeout=60)
        await recorder.session.close()
        for runner in runners:
            await runner.cleanup()
    print(f"# Open WebUI 0.12.4, {'with the recipe' if args.recipe else 'forwarding only'}")
    print(f"# requests recorded in {recording}")
    show_sessions(args.nanobot, config, workspace)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--owui", required=True, help="the venv Open WebUI is installed in")
    parser.add_argument("--nanobot", default=".venv/bin/nanobot", help="the nanobot command")
    parser.add_argument("--out", required=True, help="folder for the recording and screenshots")
    parser.add_argument("--recipe", action="store_true", help="add the recipe's headers")
    sys.exit(asyncio.run(main(parser.parse_args())))
