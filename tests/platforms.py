"""Telegram, Discord, Slack and a webhook receiver of the tests' own, on one 127.0.0.1 port.

Each speaks the shape of its platform's API (paths, auth, JSON and multipart bodies,
answers), records every request as it arrived and every message it "created", and
takes scripted faults per platform: an error status (with Retry-After), or a hang
until released. Tests wait on arrivals with :meth:`FakePlatforms.wait_for`, not sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import hmac
import json
import urllib.parse
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import attrs
from aiohttp import web

from tests.local_http import serve_locally

Platform = Literal["telegram", "discord", "slack", "webhook"]
TELEGRAM_TOKEN = "123456:tg-SECRET-token-abc"
DISCORD_TOKEN = "discord-SECRET-token-xyz"
SLACK_TOKEN = "xoxb-slack-SECRET-token"
WEBHOOK_SECRET = "webhook-SECRET-signing"


@attrs.frozen
class Fail:
    """Answer with ``status``; Telegram/Slack/Discord-shaped error bodies are filled in."""

    status: int
    retry_after: str | None = None
    description: str = "scripted failure"


@attrs.frozen
class Hang:
    """Hold the request open until :meth:`FakePlatforms.release` (or the server stops).

    With ``after_create`` (Discord only) the message is created first: the platform has
    it, the sender never hears so (a crash between "sent" and "marked sent").
    """

    after_create: bool = False


@attrs.frozen
class Hold:
    """Hold the request open until :meth:`FakePlatforms.release`, then answer it as
    usual (a slow platform: the delivery is in flight for as long as a test needs)."""


@attrs.frozen
class Ok:
    """Answer this request normally (to script a fault for a later one)."""


Fault = Fail | Hang | Hold | Ok


@attrs.frozen
class Posted:
    """A message the platform created: text, or a file (name and bytes)."""

    platform: Platform
    chat_id: str
    text: str | None = None
    filename: str | None = None
    data: bytes | None = None
    nonce: str | None = None
    event_id: str | None = None


@attrs.frozen
class Arrival:
    """A request as it arrived (before any fault was applied)."""

    platform: Platform
    path: str
    headers: dict[str, str]
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


class FakePlatforms:
    """``async with FakePlatforms() as fake:`` serves until the block ends."""

    def __init__(self) -> None:
        self.faults: dict[Platform, deque[Fault]] = {
            name: deque() for name in ("telegram", "discord", "slack", "webhook")
        }
        self.arrivals: list[Arrival] = []
        self.posted: list[Posted] = []
        self.webhook_status = 200
        self._changed = asyncio.Condition()
        self._release = asyncio.Event()
        self._nonces: dict[str, str] = {}
        self._uploads: dict[str, tuple[str, bytes, int]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- where each platform answers -------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def telegram_base(self) -> str:
        return f"{self.origin}/telegram"

    @property
    def discord_base(self) -> str:
        return f"{self.origin}/discord/api/v10"

    @property
    def slack_base(self) -> str:
        return f"{self.origin}/slack/api"

    @property
    def webhook_url(self) -> str:
        return f"{self.origin}/hook?token=hook-SECRET-in-url"

    def fail(self, platform: Platform, *faults: Fault) -> None:
        """The next requests to ``platform`` meet these faults, in order."""
        self.faults[platform].extend(faults)

    def release(self) -> None:
        """Lets every hanging request go on (they answer 503) and every held one (they
        answer as usual)."""
        self._release.set()

    def messages(self, platform: Platform | None = None) -> list[Posted]:
        return [p for p in self.posted if platform is None or p.platform == platform]

    async def wait_for(
        self, predicate: Callable[[FakePlatforms], bool], within_s: float = 10.0
    ) -> None:
        """Returns once ``predicate(self)`` holds; raises TimeoutError after ``within_s``."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> FakePlatforms:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/telegram/bot{token}/{method}", self._telegram)
        app.router.add_post("/discord/api/v10/channels/{chat}/messages", self._discord)
        app.router.add_post("/slack/api/{method}", self._slack)
        app.router.add_post("/slack/upload/{file_id}", self._slack_upload)
        app.router.add_post("/hook", self._webhook)
        self._runner, self.port = await serve_locally(app, self.port, shutdown_timeout=0.5)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- shared ------------------------------------------------------------------------

    async def _arrive(
        self, platform: Platform, request: web.Request
    ) -> tuple[bytes, Fail | Hang | None]:
        body = await request.read()
        self.arrivals.append(Arrival(platform, request.path_qs, dict(request.headers), body))
        await self._notify()
        queue = self.faults[platform]
        fault = queue.popleft() if queue else None
        if isinstance(fault, Hold):
            await self._release.wait()
        return body, (None if isinstance(fault, Ok | Hold) else fault)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _post(self, posted: Posted) -> None:
        self.posted.append(posted)
        await self._notify()

    async def _fault(self, fault: Fail | Hang, body: dict[str, Any]) -> web.Response:
        if isinstance(fault, Hang):
            await self._release.wait()
            return web.json_response({"ok": False}, status=503)
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        return web.json_response(body, status=fault.status, headers=headers)

    # --- Telegram Bot API ------------------------------------------------------------------

    async def _telegram(self, request: web.Request) -> web.Response:
        raw, fault = await self._arrive("telegram", request)
        if fault is not None:
            error: dict[str, Any] = {
                "ok": False,
                "error_code": getattr(fault, "status", 503),
                "description": getattr(fault, "description", ""),
            }
            if isinstance(fault, Fail) and fault.retry_after:
                error["parameters"] = {"retry_after": int(fault.retry_after)}
            return await self._fault(fault, error)
        if request.match_info["token"] != TELEGRAM_TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        if method == "sendMessage":
            data = json.loads(raw)
            posted = Posted("telegram", str(data["chat_id"]), text=data["text"])
        elif method == "sendDocument":
            form = _multipart(request, raw)
            name, content = form["document"]
            posted = Posted("telegram", form["chat_id"][1].decode(), filename=name, data=content)
        else:
            return web.json_response({"ok": False, "description": "Not Found"}, status=404)
        await self._post(posted)
        return web.json_response({"ok": True, "result": {"message_id": len(self.posted)}})

    # --- Discord REST --------------------------------------------------------------------

    async def _discord(self, request: web.Request) -> web.Response:
        raw, fault = await self._arrive("discord", request)
        if isinstance(fault, Hang) and fault.after_create:
            await self._discord_create(request, raw)
        if fault is not None:
            retry = float(fault.retry_after) if isinstance(fault, Fail) and fault.retry_after else 0
            body = {"message": getattr(fault, "description", ""), "retry_after": retry}
            return await self._fault(fault, body)
        return await self._discord_create(request, raw)

    async def _discord_create(self, request: web.Request, raw: bytes) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {DISCORD_TOKEN}":
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        chat = request.match_info["chat"]
        if request.content_type == "application/json":
            payload = json.loads(raw)
            posted = Posted("discord", chat, text=payload["content"], nonce=payload.get("nonce"))
        else:
            form = _multipart(request, raw)
            payload = json.loads(form["payload_json"][1])
            name, content = form["files[0]"]
            posted = Posted("discord", chat, filename=name, data=content, nonce=payload["nonce"])
        # As Discord does with enforce_nonce: a nonce seen before returns the old message.
        if payload.get("enforce_nonce") and posted.nonce in self._nonces:
            return web.json_response({"id": self._nonces[posted.nonce]})
        await self._post(posted)
        message_id = str(len(self.posted))
        if posted.nonce is not None:
            self._nonces[posted.nonce] = message_id
        return web.json_response({"id": message_id, "channel_id": chat})

    # --- Slack Web API -------------------------------------------------------------------

    async def _slack(self, request: web.Request) -> web.Response:
        raw, fault = await self._arrive("slack", request)
        if fault is not None:
            return await self._fault(
                fault, {"ok": False, "error": getattr(fault, "description", "")}
            )
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        methods = {
            "chat.postMessage": self._slack_post,
            "files.getUploadURLExternal": self._slack_upload_url,
            "files.completeUploadExternal": self._slack_complete,
        }
        method = methods.get(request.match_info["method"])
        if method is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return await method(raw)

    async def _slack_post(self, raw: bytes) -> web.Response:
        data = json.loads(raw)
        if data["channel"] == "C_MISSING":
            return web.json_response({"ok": False, "error": "channel_not_found"})
        await self._post(Posted("slack", data["channel"], text=data["text"]))
        return web.json_response({"ok": True, "ts": f"{len(self.posted)}.0001"})

    async def _slack_upload_url(self, raw: bytes) -> web.Response:
        form = _urlencoded(raw)
        file_id = f"F{len(self.arrivals)}"
        self._uploads[file_id] = (form["filename"], b"", int(form["length"]))
        url = f"{self.origin}/slack/upload/{file_id}"
        return web.json_response({"ok": True, "file_id": file_id, "upload_url": url})

    async def _slack_complete(self, raw: bytes) -> web.Response:
        data = json.loads(raw)
        for item in data["files"]:
            name, content, _ = self._uploads.pop(item["id"])
            await self._post(Posted("slack", data["channel_id"], filename=name, data=content))
        return web.json_response({"ok": True, "files": data["files"]})

    async def _slack_upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrivals.append(Arrival("slack", request.path_qs, dict(request.headers), body))
        file_id = request.match_info["file_id"]
        name, _, length = self._uploads[file_id]
        if len(body) != length:
            return web.Response(status=400, text="length mismatch")
        self._uploads[file_id] = (name, body, length)
        return web.Response(text="OK - 200")

    # --- a webhook receiver ----------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        raw, fault = await self._arrive("webhook", request)
        if fault is not None:
            return await self._fault(fault, {"error": getattr(fault, "description", "")})
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if request.headers.get("X-Nanobot-Signature") != expected:
            return web.json_response({"error": "bad signature"}, status=401)
        event = json.loads(raw)
        for item in event["media"]:
            data = base64.b64decode(item["data_base64"])
            name = item["filename"]
            await self._post(
                Posted("webhook", event["chat_id"], filename=name, data=data, event_id=event["id"])
            )
        await self._post(
            Posted("webhook", event["chat_id"], text=event["content"], event_id=event["id"])
        )
        return web.json_response({"received": event["id"]}, status=self.webhook_status)


def _multipart(request: web.Request, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body's fields by name, as (filename, bytes)."""
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + raw, policy=email.policy.HTTP)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        fields[name] = (part.get_filename(), payload)
    return fields


def _urlencoded(raw: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(raw.decode()))
