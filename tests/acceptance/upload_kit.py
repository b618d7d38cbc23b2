"""What the upload acceptance tests share: an agent that records its turns, request
builders, and the checks every answer and every saved file must pass."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs

from nanobot_api import Document, Image, Reply, Turn
from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.config import Config
from nanobot_api.app.echo import EchoAgent
from nanobot_api.app.wiring.live_server import RunningServer
from nanobot_api.testing import ChatResult, Harness, HttpResult
from tests.files import encode_multipart

CHAT = "/v1/chat/completions"
OCTETS = "application/octet-stream"
MEDIA = Path("media") / "api"
# 32 hex digits from `secrets`, then the extension of the kind found in the bytes.
STORED_NAME = re.compile(r"[0-9a-f]{32}\.(png|jpg|gif|webp|pdf|docx|xlsx|pptx|txt)")
ERROR_KEYS = {"message", "type", "param", "code"}


def token(label: str) -> str:
    """A marker no file contains by chance."""
    return f"{label}-{secrets.token_hex(6)}"


class RecordingAgent:
    """An Agent (the public protocol) that keeps every turn it is given and answers
    with a count of what it received."""

    model = "recorder"

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    async def respond(self, turn: Turn, reply: Reply) -> None:
        self.turns.append(turn)
        await reply.send(f"got {len(turn.images)} images, {len(turn.documents)} documents")

    @property
    def last(self) -> Turn:
        assert self.turns, "the agent was never called"
        return self.turns[-1]

    def document(self, name: str) -> Document:
        """The last turn's document called ``name``."""
        found = [doc for doc in self.last.documents if doc.name == name]
        assert len(found) == 1, [doc.name for doc in self.last.documents]
        return found[0]


def harness(agent: Any, config: Config, **overrides: Any) -> Harness:
    """The real app in process, its workspace the one ``config`` names, history in memory
    (so the workspace holds nothing but what uploads put there)."""
    overrides.setdefault("store", InMemorySessionStore())
    return Harness(agent, config, workspace=config.workspace, **overrides)


def with_limits(
    config: Config,
    *,
    max_file_mb: int | None = None,
    max_files: int | None = None,
    max_request_mb: int | None = None,
) -> Config:
    """``config`` with the given ``api.*`` upload limits replaced."""
    api = config.api
    return attrs.evolve(
        config,
        api=attrs.evolve(
            api,
            max_file_mb=api.max_file_mb if max_file_mb is None else max_file_mb,
            max_files=api.max_files if max_files is None else max_files,
            max_request_mb=api.max_request_mb if max_request_mb is None else max_request_mb,
        ),
    )


# ---------------------------------------------------------------------------
# JSON bodies


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def text_part(text: str) -> dict[str, object]:
    return {"type": "text", "text": text}


def image_part(url: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url}}


def file_part(url: str, filename: str) -> dict[str, object]:
    return {"type": "file", "file": {"file_data": url, "filename": filename}}


def chat_body(*parts: dict[str, object], **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": list(parts)}], **extra}


def form(*files: tuple[str, bytes], message: str = "hi") -> tuple[bytes, str]:
    """A multipart body with ``files`` as repeated ``files`` parts."""
    return encode_multipart({"message": message}, [("files", n, d, OCTETS) for n, d in files])


async def post_multipart(h: Harness, body: bytes, content_type: str) -> ChatResult:
    answer = await h.request("POST", CHAT, body=body, headers={"Content-Type": content_type})
    return ChatResult.parse(answer.status, answer.headers, answer.body)


# ---------------------------------------------------------------------------
# Checks


def assert_error(result: ChatResult | HttpResult, status: int, message: str) -> None:
    """An OpenAI error body with ``status``, whose message starts with ``message``."""
    assert result.status == status, result.body[:300]
    assert result.headers.get("Content-Type", "").startswith("application/json")
    payload = json.loads(result.body)
    assert set(payload) == {"error"}
    error = payload["error"]
    assert set(error) == ERROR_KEYS
    assert error["code"] == status
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str)
    assert error["message"].startswith(message), error["message"]


async def assert_healthy(h: Harness) -> None:
    """/health and an ordinary chat turn both answer 200, at once."""
    with anyio.fail_after(5):
        health = await h.get("/health")
        assert health.status == 200
        assert health.json() == {"status": "ok"}
        ordinary = await h.chat("still there?")
        assert ordinary.status == 200, ordinary.body[:300]


def stored(workspace: Path) -> list[Path]:
    """The files saved under ``<workspace>/media/api/`` (sidecars left out)."""
    root = workspace / MEDIA
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix != ".json")


def all_files(root: Path) -> Iterator[Path]:
    return (path for path in root.rglob("*") if path.is_file())


def assert_saved(workspace: Path, path: str, data: bytes, original: str | None) -> None:
    """``path`` (as the agent got it) is a fresh name under media/api holding ``data``,
    with the client's name only in its sidecar."""
    saved = Path(path)
    assert saved.parent == workspace / MEDIA
    assert STORED_NAME.fullmatch(saved.name), saved.name
    assert saved.read_bytes() == data
    meta = json.loads(saved.with_name(f"{saved.name}.json").read_text())
    assert meta["original_name"] == original
    assert meta["size"] == len(data)


def assert_image(image: Image, data: bytes, mime: str, workspace: Path) -> None:
    assert image.data == data
    assert image.mime == mime
    assert_saved(workspace, image.path, data, image.filename)


CLIENT_ERROR = range(400, 500)


async def refused_then_healthy(
    config: Config, body: object, status: int | range, message: str
) -> ChatResult:
    """Sends ``body`` (a JSON body, or a multipart (bytes, content type) pair) to the
    echo agent: refused with ``status`` (one, or any of a range) and error JSON whose
    message starts with ``message``, within 3 s; nothing saved; healthy after."""
    async with harness(EchoAgent(), config) as h:
        with anyio.fail_after(3):
            if isinstance(body, tuple):
                result = await post_multipart(h, *body)
            else:
                result = await h.send(body)
        assert result.status in (status if isinstance(status, range) else [status])
        assert_error(result, result.status, message)
        assert stored(config.workspace) == []
        await assert_healthy(h)
    return result


async def socket_server_is_healthy(server: RunningServer, http: aiohttp.ClientSession) -> None:
    """The echo agent's server, on its socket: /health and a chat turn answer 200, at once."""
    with anyio.fail_after(5):
        async with http.get(f"{server.origin}/health") as health:
            assert health.status == 200
        body = {"messages": [{"role": "user", "content": "ping"}]}
        async with http.post(f"{server.base_url}/chat/completions", json=body) as answer:
            assert answer.status == 200
            assert (await answer.json())["choices"][0]["message"]["content"] == "echo: ping"
