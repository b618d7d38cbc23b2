"""An agent behind the real HTTP app, driven in process: no socket, no server to start.

Requests go through Quart's test client inside ``app.test_app()``, so they pass the
same routes, validation, limits, sessions and streaming as over the network. Answers
come back parsed; an error is a value to assert on, not an exception.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, cast

import attrs

from nanobot_api.app.wiring.library import AgentLike, as_agent, build_app
from nanobot_api.domain.conversation import Usage

if TYPE_CHECKING:
    from quart import Quart
    from quart.testing.client import QuartClient
    from quart.typing import TestAppProtocol
    from werkzeug.datastructures import Headers

    from nanobot_api.app.config import Config

FileSpec: TypeAlias = tuple[str, bytes] | tuple[str, bytes, str]
"""A file to upload: ``(name, data)`` or ``(name, data, content_type)``."""

JSON = "application/json"
CHAT_PATH = "/v1/chat/completions"


@attrs.frozen
class ApiError:
    """The OpenAI error body the server answered: ``{"error": {...}}``."""

    message: str
    type: str
    param: str | None
    code: int

    @classmethod
    def from_json(cls, payload: object) -> ApiError | None:
        """The error in ``payload``, or None when it is not an error body."""
        if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
            return None
        error = payload["error"]
        return cls(
            str(error.get("message", "")),
            str(error.get("type", "")),
            error.get("param"),
            int(error.get("code", 0)),
        )


class ChatFailed(AssertionError):
    """Raised by :meth:`ChatResult.raise_for_error` for an answer that is not a success."""

    def __init__(self, result: ChatResult) -> None:
        error = result.error
        detail = f"{error.code} {error.type}: {error.message}" if error else "no [DONE]"
        super().__init__(f"chat failed with HTTP {result.status}: {detail}")
        self.result = result


@attrs.frozen
class HttpResult:
    """Any answer of the app, as received."""

    status: int
    headers: Headers
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def error(self) -> ApiError | None:
        try:
            return ApiError.from_json(self.json())
        except ValueError:
            return None


@attrs.frozen
class ChatResult:
    """A chat completion answer, parsed; streamed or not, success or error.

    ``text`` is the assistant's whole reply (the content deltas joined, for a
    stream). For a stream, ``chunks`` are the ``chat.completion.chunk`` objects in
    order, ``done`` tells whether it ended with ``data: [DONE]`` and ``error`` holds
    the error event that ends a failed one. ``json`` is the body of a non-streamed
    answer (None for a stream).
    """

    status: int
    headers: Headers
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    streamed: bool = False
    json: Any = None
    chunks: tuple[dict[str, Any], ...] = ()
    done: bool = False
    keepalives: int = 0
    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    error: ApiError | None = None

    @property
    def session_id(self) -> str | None:
        """The session the server used (``X-Session-Id``); ``default`` for the shared one."""
        return self.headers.get("X-Session-Id")

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Request-ID")

    @property
    def ok(self) -> bool:
        """200, no error, and for a stream the closing ``[DONE]``."""
        return self.status == 200 and self.error is None and (self.done or not self.streamed)

    def raise_for_error(self) -> ChatResult:
        """Returns this result if :attr:`ok`, else raises ChatFailed (an AssertionError)."""
        if not self.ok:
            raise ChatFailed(self)
        return self

    @classmethod
    def parse(cls, status: int, headers: Headers, body: bytes) -> ChatResult:
        if headers.get("Content-Type", "").startswith("text/event-stream"):
            return _parse_stream(status, headers, body)
        try:
            payload = json.loads(body)
        except ValueError:
            return cls(status, headers, body)
        usage = finish = None
        text = ""
        if isinstance(payload, dict) and payload.get("choices"):
            choice = payload["choices"][0]
            text = choice["message"]["content"] or ""
            finish = choice.get("finish_reason")
            usage = _usage(payload.get("usage"))
        error = ApiError.from_json(payload)
        return cls(status, headers, body, False, payload, (), False, 0, text, usage, finish, error)


def _usage(payload: object) -> Usage | None:
    if not isinstance(payload, dict):
        return None
    return Usage(int(payload["prompt_tokens"]), int(payload["completion_tokens"]))


def _parse_stream(status: int, headers: Headers, body: bytes) -> ChatResult:
    chunks: list[dict[str, Any]] = []
    pieces: list[str] = []
    done = False
    keepalives = 0
    usage = finish = error = None
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        if not lines:
            continue
        data = [line[5:].removeprefix(" ") for line in lines if line.startswith("data:")]
        if not data:
            keepalives += 1  # an SSE comment, ": keep-alive"
            continue
        text = "\n".join(data)
        if text == "[DONE]":
            done = True
            continue
        event = json.loads(text)
        if "error" in event:
            error = ApiError.from_json(event)
            continue
        chunks.append(event)
        usage = _usage(event.get("usage")) or usage
        for choice in event.get("choices") or ():
            pieces.append(choice.get("delta", {}).get("content") or "")
            finish = choice.get("finish_reason") or finish
    return ChatResult(
        status, headers, body, True, None, tuple(chunks), done, keepalives, "".join(pieces),
        usage, finish, error,
    )  # fmt: skip


class HarnessFactory(Protocol):
    """What the ``nanobot_harness`` fixture is: ``Harness``'s signature (for annotations)."""

    def __call__(
        self, agent: AgentLike, config: Config | None = None, **overrides: Any
    ) -> Harness: ...


class Harness:
    """``agent`` behind the real HTTP app, in process.

    ``async with Harness(agent, config=None, **overrides) as h:`` builds the app as
    :func:`nanobot_api.create_app` does (same keywords: ``api_key=``, ``timeout=``,
    ``max_file_mb=``, ``history=``, ``store=``, ...) with a fresh temporary
    workspace unless ``workspace=`` is given, and runs it for the block. When an API
    key is configured, every request carries it unless ``headers`` give another
    ``Authorization``. Use it from an asyncio test (Quart runs on asyncio only).
    """

    def __init__(self, agent: AgentLike, config: Config | None = None, **overrides: Any) -> None:
        self.agent = as_agent(agent)
        self._config = config
        self._overrides = overrides
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._running: TestAppProtocol | None = None
        self._app: Quart | None = None
        self._client: QuartClient | None = None
        self._auth: dict[str, str] = {}
        self.workspace: Path | None = None

    async def __aenter__(self) -> Harness:
        overrides = dict(self._overrides)
        if "workspace" not in overrides:
            self._tmp = tempfile.TemporaryDirectory(prefix="nanobot-harness-")
            overrides["workspace"] = Path(self._tmp.name)
        try:
            app, config = build_app(self.agent, self._config, overrides)
            running = app.test_app()
            await running.startup()
        except BaseException:
            self._cleanup()
            raise
        self.workspace = config.workspace
        if config.api.api_key:
            self._auth = {"Authorization": f"Bearer {config.api.api_key}"}
        self._running = running
        self._app = app
        # The protocol Quart declares lacks open()'s defaults; the client is a QuartClient.
        self._client = cast("QuartClient", running.test_client())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._running is not None:
                await self._running.shutdown()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        self._running = self._client = self._app = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def app(self) -> Quart:
        """The Quart app under test."""
        if self._app is None:
            raise RuntimeError("use the harness inside 'async with Harness(...) as h'")
        return self._app

    @property
    def client(self) -> QuartClient:
        """Quart's test client, for requests the helpers below do not cover."""
        if self._client is None:
            raise RuntimeError("use the harness inside 'async with Harness(...) as h'")
        return self._client

    @property
    def model(self) -> str:
        return self.agent.model

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> HttpResult:
        """Any request, answered as received."""
        sent = {**self._auth, **(headers or {})}
        response = await self.client.open(path, method=method, data=body, headers=sent)
        data = await response.get_data()
        assert isinstance(data, bytes)
        return HttpResult(response.status_code, response.headers, data)

    async def get(self, path: str, *, headers: Mapping[str, str] | None = None) -> HttpResult:
        return await self.request("GET", path, headers=headers)

    async def models(self) -> list[str]:
        """The model ids ``GET /v1/models`` lists."""
        answer = await self.get("/v1/models")
        return [model["id"] for model in answer.json()["data"]]

    async def send(self, body: object, *, headers: Mapping[str, str] | None = None) -> ChatResult:
        """POSTs a raw chat completion body: bytes or str as is, anything else as JSON."""
        if isinstance(body, bytes | str):
            raw = body.encode() if isinstance(body, str) else body
        else:
            raw = json.dumps(body).encode()
        return await self._chat(raw, {"Content-Type": JSON, **(headers or {})})

    async def chat(
        self,
        text: str = "",
        *,
        session_id: str | None = None,
        files: Sequence[FileSpec] = (),
        stream: bool = False,
        model: str | None = None,
        include_usage: bool = False,
        files_as: Literal["multipart", "json"] = "multipart",
        extra: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ChatResult:
        """Sends one user message the way an OpenAI client would, and parses the answer.

        Without ``files`` the body is JSON (``{"messages": [{"role": "user", ...}]}``
        plus the fields given, and ``extra``'s). With ``files`` it is a
        multipart/form-data upload (fields ``message``, ``files``, ``session_id``,
        ``model``, ``stream``), or with ``files_as="json"`` a JSON body whose content
        parts carry each file as a base64 data URL (``image_url`` for an image name,
        else ``file``). Never raises for an error answer: see ``result.error``.
        """
        if files and files_as == "multipart":
            if include_usage or extra:
                raise ValueError("include_usage and extra need a JSON body: files_as='json'")
            fields = {"message": text, "stream": "true" if stream else "false"}
            if session_id is not None:
                fields["session_id"] = session_id
            if model is not None:
                fields["model"] = model
            raw, content_type = _multipart(fields, files)
            return await self._chat(raw, {"Content-Type": content_type, **(headers or {})})
        content: object = text
        if files:
            content = ([{"type": "text", "text": text}] if text else []) + [
                _json_part(spec) for spec in files
            ]
        body: dict[str, object] = {"messages": [{"role": "user", "content": content}]}
        if session_id is not None:
            body["session_id"] = session_id
        if model is not None:
            body["model"] = model
        if stream:
            body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        return await self.send({**body, **(extra or {})}, headers=headers)

    async def _chat(self, raw: bytes, headers: Mapping[str, str]) -> ChatResult:
        answer = await self.request("POST", CHAT_PATH, body=raw, headers=headers)
        return ChatResult.parse(answer.status, answer.headers, answer.body)


def _content_type(spec: FileSpec) -> str:
    if len(spec) == 3:
        return spec[2]
    return mimetypes.guess_type(spec[0])[0] or "application/octet-stream"


def _json_part(spec: FileSpec) -> dict[str, object]:
    mime = _content_type(spec)
    url = f"data:{mime};base64,{base64.b64encode(spec[1]).decode()}"
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"file_data": url, "filename": spec[0]}}


def _multipart(fields: Mapping[str, str], files: Sequence[FileSpec]) -> tuple[bytes, str]:
    """A multipart/form-data body with repeated ``files`` parts, and its content type."""
    from werkzeug.datastructures import Headers
    from werkzeug.sansio.multipart import (
        Data,
        Epilogue,
        Field,
        File,
        MultipartEncoder,
        Preamble,
    )

    boundary = f"nanobot-harness-{secrets.token_hex(12)}"
    encoder = MultipartEncoder(boundary.encode())
    out = [encoder.send_event(Preamble(data=b""))]
    for name, value in fields.items():
        out.append(encoder.send_event(Field(name=name, headers=Headers())))
        out.append(encoder.send_event(Data(data=value.encode(), more_data=False)))
    for spec in files:
        part_headers = Headers({"Content-Type": _content_type(spec)})
        out.append(encoder.send_event(File(name="files", filename=spec[0], headers=part_headers)))
        out.append(encoder.send_event(Data(data=spec[1], more_data=False)))
    out.append(encoder.send_event(Epilogue(data=b"")))
    return b"".join(out), f"multipart/form-data; boundary={boundary}"
