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
        --nanobot .venv/bin/nanobot --out /tmp/owui-run [--recipe] [--storage-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import socket
import subprocess
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


class Browser:
    """One Open WebUI page, used as a person uses it."""

    def __init__(self, page: Any, recorder: Recorder, shots: Path) -> None:
        self.page = page
        self.recorder = recorder
        self.shots = shots

    def step(self, name: str) -> None:
        self.recorder.step = name

    async def settle(self) -> None:
        # Open WebUI's task requests (title, tags, follow-ups) come after the answer.
        await self.page.wait_for_timeout(6000)
        await self.page.screenshot(path=str(self.shots / f"{self.recorder.step}.png"))

    async def answer(self, text: str) -> None:
        await self.page.get_by_text(text).first.wait_for(timeout=90_000)

    async def send(self, text: str) -> None:
        await self.page.locator("#chat-input").click()
        await self.page.keyboard.type(text)
        await self.page.keyboard.press("Enter")

    async def button(self, name: str, *, first: bool = True, force: bool = False) -> None:
        found = self.page.get_by_role("button", name=name, exact=True)
        await (found.first if first else found.last).click(force=force)

    async def open_home(self, url: str) -> None:
        await self.page.goto(url, wait_until="load", timeout=120_000)
        await self.page.locator("#chat-input").wait_for(timeout=120_000)
        # The release notes pop up once, a moment after the page is ready.
        welcome = self.page.get_by_role("button", name=re.compile("Okay"))
        for _ in range(20):
            if await welcome.count():
                await welcome.first.click()
                return
            await self.page.wait_for_timeout(500)


async def chat_steps(b: Browser, home: str) -> None:
    """Steps 1-6: two messages, a regenerate, an edit of the first, a switch back."""
    b.step("0-load")
    await b.open_home(home)
    b.step("1-send-first")
    await b.send("first message alpha")
    await b.answer("ECHO[1]: first message alpha")
    await b.settle()
    b.step("2-send-second")
    await b.send("second message beta")
    await b.answer("ECHO[2]: second message beta")
    await b.settle()
    b.step("3-regenerate")
    await b.button("Regenerate", first=False)
    await b.button("Try Again")
    await b.page.get_by_role("button", name="Previous message").first.wait_for(timeout=90_000)
    await b.settle()
    b.step("4-edit-first")
    await b.button("Edit", force=True)
    await b.page.locator("textarea[id^=message-edit-]").first.fill("edited first")
    await b.button("Send")
    await b.answer("ECHO[1]: edited first")
    await b.settle()
    b.step("5-switch-back")
    await b.button("Previous message", force=True)
    await b.answer("ECHO[2]: second message beta")
    await b.settle()
    b.step("6-send-third")
    await b.send("third after switch")
    await b.answer("ECHO[3]: third after switch")
    await b.settle()


async def file_and_temporary_steps(b: Browser, home: str) -> None:
    """Steps 7-8: a new chat with an uploaded file, then a temporary chat."""
    b.step("7-file-chat")
    await b.open_home(home)
    notes = b.shots / "notes.txt"
    notes.write_text("PAPAYA\n", encoding="utf-8")
    await b.page.locator("input[type=file]").first.set_input_files(str(notes))
    await b.page.get_by_text("notes.txt").first.wait_for(timeout=60_000)
    await b.page.wait_for_timeout(3000)  # the upload is processed before it can be sent
    await b.send("what fruit is in the file?")
    # The answer quotes Open WebUI's template, whose [1] it shows as a citation: the
    # answer's toolbar tells it is complete.
    await b.page.get_by_role("button", name="Regenerate").first.wait_for(timeout=90_000)
    await b.settle()
    b.step("8-temp-chat")
    await b.open_home(home.rstrip("/") + "/?temporary-chat=true")
    await b.send("temp hello")
    await b.answer("ECHO[1]: temp hello")
    await b.settle()


async def run_steps(home: str, recorder: Recorder, shots: Path) -> None:
    """The steps of tests/fixtures/README.md in headless Chromium."""
    from playwright.async_api import async_playwright  # the Open WebUI venv's

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox"],
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        b = Browser(page, recorder, shots)
        await chat_steps(b, home)
        await file_and_temporary_steps(b, home)
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


@dataclasses.dataclass
class Run:
    """Where one run keeps its files, and the ports its servers listen on."""

    args: argparse.Namespace
    out: Path
    work: Path
    ports: dict[str, int]

    @property
    def config(self) -> Path:
        return self.work / "config.json"

    @property
    def workspace(self) -> Path:
        return self.work / "workspace"

    @property
    def recording(self) -> Path:
        name = "openwebui-0.12.4-recipe.jsonl" if self.args.recipe else "forwarding.jsonl"
        return self.out / name


def prepare(args: argparse.Namespace) -> Run:
    """Folders, ports and nanobot's config, before anything starts."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(args, out, Path(tempfile.mkdtemp(prefix="owui-run-")), {})
    run.ports = {name: free_port() for name in ("model", "nanobot", "proxy", "owui")}
    settings = {
        "api": {"history": "latest", "port": run.ports["nanobot"]},
        "agents": {"defaults": {"provider": "custom", "model": MODEL}},
        "providers": {
            "custom": {"apiBase": f"http://127.0.0.1:{run.ports['model']}/v1", "apiKey": "x"}
        },
    }
    if args.storage_url:
        settings["storage"] = {"url": args.storage_url}
    run.config.write_text(json.dumps(settings), encoding="utf-8")
    run.recording.unlink(missing_ok=True)
    return run


async def start(command: list[str], log: Path, **options: Any) -> asyncio.subprocess.Process:
    with log.open("w") as file:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            *command, stdout=file, stderr=asyncio.subprocess.STDOUT, **options
        )


async def main(run: Run) -> None:
    ports = run.ports
    model = web.Application()
    model.router.add_post("/v1/chat/completions", _stand_in)
    model.router.add_get("/v1/models", _models)
    runners = [await serve(model, ports["model"])]
    recorder = Recorder(f"http://127.0.0.1:{ports['nanobot']}", run.recording)
    proxy = web.Application()
    proxy.router.add_route("*", "/{tail:.*}", recorder.handle)
    runners.append(await serve(proxy, ports["proxy"]))
    recorder.session = ClientSession(timeout=ClientTimeout(total=300))
    nanobot = [run.args.nanobot, "serve", "-c", str(run.config), "-w", str(run.workspace)]
    server = await start(nanobot, run.out / "nanobot.log")
    owui_command = [str(Path(run.args.owui) / "bin" / "open-webui"), "serve"]
    owui_command += ["--host", "127.0.0.1", "--port", str(ports["owui"])]
    env = owui_env(run.args, run.work / "owui-data", ports["proxy"], ports["owui"])
    owui = await start(owui_command, run.out / "open-webui.log", env=env, cwd=run.work)
    try:
        await wait_http(f"http://127.0.0.1:{ports['nanobot']}/health", 60)
        await wait_http(f"http://127.0.0.1:{ports['owui']}/health", 900)
        await run_steps(f"http://127.0.0.1:{ports['owui']}/", recorder, run.out)
    finally:
        for process in (owui, server):
            process.terminate()
            await process.wait()
        await recorder.session.close()
        for runner in runners:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--owui", required=True, help="the venv Open WebUI is installed in")
    parser.add_argument("--nanobot", default=".venv/bin/nanobot", help="the nanobot command")
    parser.add_argument("--out", required=True, help="folder for the recording and screenshots")
    parser.add_argument("--recipe", action="store_true", help="add the recipe's headers")
    parser.add_argument(
        "--storage-url", default="", help="nanobot's storage.url (PostgreSQL); SQLite if empty"
    )
    prepared = prepare(parser.parse_args())
    asyncio.run(main(prepared))
    print(
        f"# Open WebUI 0.12.4, {'with the recipe' if prepared.args.recipe else 'forwarding only'}"
    )
    print(f"# storage: {'PostgreSQL' if prepared.args.storage_url else 'SQLite'}")
    print(f"# requests recorded in {prepared.recording}")
    show_sessions(prepared.args.nanobot, prepared.config, prepared.workspace)
