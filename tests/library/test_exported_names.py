"""The public API is exactly these names, and an agent written against them alone works."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from openai import AsyncOpenAI
from PIL import Image as PILImage

import nanobot_api
import nanobot_api.testing
from nanobot_api import (
    Document,
    Image,
    InvalidRequest,
    Reply,
    Turn,
    UpstreamFailed,
    Usage,
    create_app,
)
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.testing import Harness


def test_the_public_names_are_pinned() -> None:
    assert nanobot_api.__all__ == [
        "Agent",
        "Reply",
        "Turn",
        "SessionKey",
        "Message",
        "Image",
        "Document",
        "Usage",
        "NanobotError",
        "InvalidRequest",
        "UpstreamFailed",
        "agent",
        "create_app",
        "serve",
    ]
    assert nanobot_api.testing.__all__ == [
        "Harness",
        "ChatResult",
        "HttpResult",
        "ApiError",
        "ChatFailed",
        "FileSpec",
        "HarnessFactory",
    ]
    for module in (nanobot_api, nanobot_api.testing):
        assert all(hasattr(module, name) for name in module.__all__)


def test_importing_the_package_loads_no_server_or_document_library() -> None:
    heavy = ["quart", "hypercorn", "aiohttp", "pypdf", "docx", "openpyxl", "pptx", "PIL"]
    code = (
        "import json, sys, nanobot_api; "
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


class Librarian:
    """A custom agent that uses only what ``nanobot_api`` exports."""

    model = "librarian"

    def __init__(self) -> None:
        self.seen: list[Turn] = []

    async def respond(self, turn: Turn, reply: Reply) -> None:
        self.seen.append(turn)
        if turn.text == "upstream?":
            raise UpstreamFailed("Upstream model error: HTTP 503")
        if turn.text == "invalid?":
            raise InvalidRequest("Librarians do not answer that", "messages")
        images: tuple[Image, ...] = turn.images
        documents: tuple[Document, ...] = turn.documents
        await reply.send(f"{turn.session.session_id}: {turn.text}")
        for image in images:
            await reply.send(f" [{image.mime}]")
        for document in documents:
            await reply.send(f" [{document.name}: {document.text}]")
        await reply.send(f" ({len(turn.history)} before)")
        reply.add_usage(Usage(prompt_tokens=5, completion_tokens=2))


def _png() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4), (0, 120, 0)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_a_custom_agent_works_through_the_harness() -> None:
    librarian = Librarian()
    async with Harness(librarian) as h:
        first = (await h.chat("hello", session_id="s1")).raise_for_error()
        assert first.text == "s1: hello (0 before)"
        assert first.usage == Usage(5, 2)
        streamed = await h.chat("again", session_id="s1", stream=True, include_usage=True)
        assert streamed.ok
        assert streamed.text == "s1: again (1 before)"
        assert streamed.usage == Usage(5, 2)
        files = [("notes.txt", b"chapter one"), ("dot.png", _png())]
        with_files = await h.chat("read", files=files, files_as="json")
        assert with_files.text == "default: read [image/png] [notes.txt: chapter one] (0 before)"
        upstream = await h.chat("upstream?")
        assert (upstream.status, upstream.error and upstream.error.type) == (502, "server_error")
        invalid = await h.chat("invalid?", stream=True)
        assert not invalid.done
        assert invalid.error is not None
        assert (invalid.error.code, invalid.error.param) == (400, "messages")
    assert [t.text for t in librarian.seen if t.session.session_id == "s1"] == ["hello", "again"]


async def test_a_custom_agent_works_over_a_socket_with_the_openai_sdk(tmp_path: Path) -> None:
    app = create_app(Librarian(), workspace=tmp_path, api_key="sk-lib")
    async with (
        running_server(app, api_key="sk-lib") as server,
        AsyncOpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0) as client,
    ):
        assert [m.id for m in (await client.models.list()).data] == ["librarian"]
        answer = await client.chat.completions.create(
            model="librarian",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"session_id": "sdk"},
        )
        assert answer.choices[0].message.content == "sdk: hi (0 before)"
        assert answer.usage is not None
        assert answer.usage.total_tokens == 7
        stream = await client.chat.completions.create(
            model="librarian",
            messages=[{"role": "user", "content": "more"}],
            extra_body={"session_id": "sdk"},
            stream=True,
        )
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
        assert "".join(p or "" for p in pieces) == "sdk: more (1 before)"
