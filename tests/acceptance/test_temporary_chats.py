"""Temporary chats (``temporary:`` session ids) leave nothing stored once idle for
``api.temporaryTtlS``: their turns (see test_open_webui_replay.py) and the files sent
in them, on both backends and across replicas, through real sockets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import anyio
import attrs

from nanobot_api.adapters.media.postgres import PostgresMediaStore
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import scratch_database
from tests.acceptance.test_open_webui_replay import backend_of, open_webui_backend, stand_in
from tests.files import make_png
from tests.upstream import ScriptedUpstream

TEMPORARY = "api:temporary:api-client"


def uploads_by_session(media: Path) -> dict[str, str]:
    """The session of each file in an uploads folder (from its sidecar) -> its name."""
    return {
        json.loads(sidecar.read_bytes())["session"]: sidecar.name.removesuffix(".json")
        for sidecar in media.glob("*.json")
    }


async def send_image(http: aiohttp.ClientSession, server: RunningServer, session: str) -> None:
    """One turn from an API client holding an image, as OpenAI's SDKs send one."""
    picture = "data:image/png;base64," + base64.b64encode(make_png(session)).decode()
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": picture}},
    ]
    body = {"messages": [{"role": "user", "content": content}]}
    url = server.origin + "/v1/chat/completions"
    async with http.post(url, json=body, headers={"X-Session-Id": session}) as response:
        assert response.status == 200, await response.text()


async def until_gone(media: Path, session: str) -> None:
    """Polls, as a person would, for about 10 s (the sweeps run every TTL / 4)."""
    for _ in range(200):
        if session not in uploads_by_session(media):
            return
        await anyio.sleep(0.05)


def with_ttl(config: Config, ttl_s: float) -> Config:
    return attrs.evolve(config, api=attrs.evolve(config.api, temporary_ttl_s=ttl_s))


async def test_uploads_to_a_temporary_chat_go_with_it(config: Config, storage_url: str) -> None:
    """An API client's image in a temporary chat is removed with the chat (file, sidecar
    and the database's copy); an upload to another session stays."""
    async with ScriptedUpstream(default=stand_in) as up:
        served = with_ttl(open_webui_backend(config, up.base_url, storage_url), 1.0)
        media = served.workspace / "media" / "api"
        async with (
            running_server(build(served)) as server,
            aiohttp.ClientSession() as http,
            backend_of(served).opened() as backend,
        ):
            for session in ("kept", "temporary:api-client"):
                await send_image(http, server, session)
            saved = uploads_by_session(media)
            assert set(saved) == {"api:kept", TEMPORARY}
            await until_gone(media, TEMPORARY)
            assert {p.name for p in media.iterdir()} == {
                saved["api:kept"],
                saved["api:kept"] + ".json",
            }
            assert set(await backend.sessions.sessions()) == {SessionKey("api", "kept")}
            if isinstance(backend.media, PostgresMediaStore):
                assert await backend.media.load(saved[TEMPORARY]) is None
                assert await backend.media.load(saved["api:kept"]) is not None


async def test_a_replica_drops_its_copy_when_another_forgets_the_chat(
    config: Config, shared_postgres_url: str, tmp_path: Path
) -> None:
    """Two replicas on one database: the chat's turn and upload land on the second, the
    first (shorter TTL) forgets the chat, and the second still removes its working copy."""
    async with ScriptedUpstream(default=stand_in) as up:
        base = open_webui_backend(config, up.base_url, shared_postgres_url)
        first = attrs.evolve(with_ttl(base, 0.8), workspace=tmp_path / "first")
        second = attrs.evolve(with_ttl(base, 1.6), workspace=tmp_path / "second")
        media = second.workspace / "media" / "api"
        async with (
            scratch_database(shared_postgres_url),
            backend_of(second).opened() as backend,
            running_server(build(first)),
            running_server(build(second)) as server,
            aiohttp.ClientSession() as http,
        ):
            await send_image(http, server, "temporary:api-client")
            (name,) = uploads_by_session(media).values()
            await until_gone(media, TEMPORARY)
            assert list(media.iterdir()) == []
            assert await backend.sessions.sessions() == {}
            assert isinstance(backend.media, PostgresMediaStore)
            assert await backend.media.load(name) is None
