"""Files at rest are private, failed turns leave no upload, the media folder is bounded,
and text from clients reaches a terminal or a log line escaped (spec/README.md)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import attrs
import httpx2

from nanobot_api.adapters.observability.logs import TextFormatter
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.app.config import (
    AgentDefaults,
    AgentsConfig,
    ChannelsConfig,
    Config,
    ProviderConfig,
    WebhookConfig,
)
from nanobot_api.app.echo import EchoAgent
from nanobot_api.app.sessions_admin import show_session
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.domain.conversation import Message, TurnRecord
from nanobot_api.domain.errors import UpstreamFailed
from nanobot_api.domain.ports import Agent
from nanobot_api.domain.sessions import SessionKey
from tests.fakes import FailingAgent
from tests.subprocess_server import one_turn
from tests.upstream import ScriptedUpstream, Text, closed_port

NOTE = base64.b64encode(b"private notes\n").decode()


def _upload(text: str, session: str) -> dict[str, object]:
    part = {
        "type": "file",
        "file": {"filename": "n.txt", "file_data": f"data:text/plain;base64,{NOTE}"},
    }
    content = [{"type": "text", "text": text}, part]
    return {"messages": [{"role": "user", "content": content}], "session_id": session}


@asynccontextmanager
async def _client(config: Config, agent: Agent | None = None) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of the real server for ``config`` (with ``agent``, else the agent that
    config makes) on a socket, while the block runs."""
    async with (
        running_server(build(config, agent=agent)) as server,
        httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
    ):
        yield client


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_workspace_folders_are_0700_and_its_files_0600_wal_and_shm_included(
    config: Config,
) -> None:
    # A channel enabled opens the outbox; an Idempotency-Key and a response use the
    # requests and responses databases: every database of the workspace is in use.
    webhook = WebhookConfig(enabled=True, url=f"http://127.0.0.1:{closed_port()}/hook")
    config = attrs.evolve(config, channels=ChannelsConfig(webhook=webhook))
    async with _client(config, EchoAgent()) as client:
        answer = await client.post(
            "/v1/chat/completions",
            json=_upload("keep", "files"),
            headers={"Idempotency-Key": "at-rest"},
        )
        assert answer.status_code == 200, answer.text
        response = await client.post("/v1/responses", json={"input": "and this"})
        assert response.status_code == 200, response.text
        workspace = config.workspace
        # Looked at while the server runs, so SQLite's -wal and -shm files exist.
        files = [path for path in workspace.rglob("*") if path.is_file()]
        folders = [workspace, *(path for path in workspace.rglob("*") if path.is_dir())]
        modes = {str(path.relative_to(workspace)): _mode(path) for path in files}
        assert dict.fromkeys(modes, 0o600) == modes
        assert [_mode(folder) for folder in folders] == [0o700] * len(folders)
    databases = ("sessions", "outbox", "requests", "responses")
    for name in databases:
        for suffix in ("", "-wal", "-shm"):
            assert f"{name}.sqlite3{suffix}" in modes
    assert len([name for name in modes if name.startswith("media/api/")]) == 2  # file, sidecar


async def test_nanobot_serve_narrows_the_uploads_an_older_version_left_readable(
    tmp_path: Path,
) -> None:
    """A workspace from before files at rest were private: `nanobot serve` makes its
    uploads' folders 0700 and files 0600 at start-up, and follows no symlink there."""
    workspace = tmp_path / "ws"
    uploads = workspace / "media" / "api"
    uploads.mkdir(parents=True, mode=0o755)
    old = uploads / "0123456789abcdef0123456789abcdef.txt"
    old.write_bytes(b"private notes\n")
    (uploads / f"{old.name}.json").write_text('{"session": "api:old"}')
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not the server's")
    (uploads / "link.txt").symlink_to(elsewhere)
    for path in (workspace / "media", uploads):
        path.chmod(0o755)
    for path in (old, uploads / f"{old.name}.json", elsewhere):
        path.chmod(0o644)
    async with ScriptedUpstream() as up:
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
        }
        body = {"messages": [{"role": "user", "content": "hi"}], "session_id": "new"}
        served = await one_turn(tmp_path, config, body, request_id="at-rest-1")
    assert (served.answer.status_code, served.exit_code) == (200, 0), served.stderr
    assert [_mode(path) for path in (workspace / "media", uploads)] == [0o700, 0o700]
    assert [_mode(old), _mode(uploads / f"{old.name}.json")] == [0o600, 0o600]
    assert _mode(elsewhere) == 0o644


async def test_the_uploads_of_a_failed_turn_are_removed(config: Config) -> None:
    agent = FailingAgent(UpstreamFailed("Upstream returned HTTP 502"))
    async with _client(config, agent) as client:
        for _ in range(2):
            answer = await client.post("/v1/chat/completions", json=_upload("x", "fails"))
            assert answer.status_code == 502
    media = config.workspace / "media" / "api"
    assert not media.exists() or list(media.iterdir()) == []


async def test_the_media_folder_keeps_under_max_media_mb_dropping_the_oldest(
    config: Config,
) -> None:
    config = attrs.evolve(config, api=attrs.evolve(config.api, max_media_mb=1))
    big = base64.b64encode(b"x" * 400_000).decode()
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "big"},
                    {
                        "type": "file",
                        "file": {"filename": "b.txt", "file_data": f"data:text/plain;base64,{big}"},
                    },
                ],
            }
        ]
    }
    async with _client(config, EchoAgent()) as client:
        names = []
        for _ in range(4):
            answer = await client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            media = config.workspace / "media" / "api"
            names.append({p.name for p in media.iterdir() if p.suffix == ".txt"})
    total = sum(p.stat().st_size for p in media.iterdir())
    assert total <= 1024 * 1024
    assert len(names[-1]) == 2  # two of 400 KB fit in 1 MiB, the oldest went
    assert names[0] & names[-1] == set()


def _stored(media: Path) -> set[str]:
    """The uploads' copies in the media folder (not their sidecars)."""
    if not media.exists():
        return set()
    return {path.name for path in media.iterdir() if path.suffix != ".json"}


async def test_the_media_bound_spares_a_running_turns_session_and_drops_idle_ones_oldest_first(
    config: Config, storage_url: str
) -> None:
    """A turn holds its upload while other sessions' uploads push the folder over
    ``api.maxMediaMb`` (1 MiB): the idle sessions' oldest uploads go first, then the
    running session's older one; the file in use never, even with the folder over the
    bound; a turn that ends while it is over brings it back within the bound."""
    gate = asyncio.Event()
    media = config.workspace / "media" / "api"

    def upload(session: str, size: int = 300_000, **more: object) -> dict[str, object]:
        data = base64.b64encode(b"x" * size).decode()
        url = f"data:text/plain;base64,{data}"
        part = {"type": "file", "file": {"filename": "b.txt", "file_data": url}}
        content = [{"type": "text", "text": "keep this"}, part]
        return {"messages": [{"role": "user", "content": content}], "session_id": session, **more}

    async with ScriptedUpstream(default=lambda _: Text("ok")) as up:
        config = attrs.evolve(
            config,
            api=attrs.evolve(config.api, max_media_mb=1),
            agents=AgentsConfig(AgentDefaults(model="m1")),
            providers={"custom": ProviderConfig(api_base=up.base_url, api_key="sk-up")},
            storage=attrs.evolve(config.storage, url=storage_url),
        )
        async with _client(config) as client:

            async def turn(body: dict[str, object]) -> set[str]:
                """One turn; the uploads' copies it added (and that are still there)."""
                before = _stored(media)
                answer = await client.post("/v1/chat/completions", json=body)
                assert answer.status_code == 200, answer.text
                return _stored(media) - before

            async def held_turn() -> None:
                body = upload("busy", stream=True)
                answer = await client.post("/v1/chat/completions", json=body)
                assert answer.status_code == 200
                assert "held" in answer.text

            (older,) = await turn(upload("busy"))  # the oldest, of the session held next
            (idle1,) = await turn(upload("idle-1"))
            async with anyio.create_task_group() as tg:
                up.add(Text("held", gate=gate))  # the busy session's turn waits mid-answer
                tg.start_soon(held_turn)
                try:
                    await up.wait_received(3)
                    (running,) = _stored(media) - {older, idle1}
                    await turn(upload("idle-2"))  # 1.2 MB: idle-1 goes
                    (idle3,) = await turn(upload("idle-3"))  # 1.2 MB: idle-2 goes
                    assert _stored(media) == {older, running, idle3}
                    # 1.7 MB: idle-3 goes, then the busy session's older one; the running
                    # turn's and this turn's own stay while in use, then this one goes as
                    # it ends.
                    await turn(upload("idle-4", size=800_000))
                    assert _stored(media) == {running}
                finally:
                    gate.set()
        assert _stored(media) == {running}
        assert sum(path.stat().st_size for path in media.iterdir()) <= 1024 * 1024


async def test_sessions_show_prints_escape_sequences_escaped(config: Config) -> None:
    key = SessionKey("api", "tty")
    async with SqliteSessionStore(config.workspace / "sessions.sqlite3") as store:
        hostile = "red \x1b[31mtext\x1b[0m\rover\nnext line"
        await store.commit(key, TurnRecord((Message.user(hostile), Message.assistant("ok"))))
        out = io.StringIO()
        await show_session(store, key, out)
    shown = out.getvalue()
    assert "\x1b" not in shown
    assert "\r" not in shown
    assert "red \\x1b[31mtext\\x1b[0m\\rover\\nnext line" in shown


def test_a_newline_in_client_text_cannot_forge_a_log_line() -> None:
    record = logging.LogRecord(
        "nanobot_api.x", logging.INFO, __file__, 1, "sent to %s", ("c1\n2026 INFO forged",), None
    )
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "c1\\n2026 INFO forged" in line
