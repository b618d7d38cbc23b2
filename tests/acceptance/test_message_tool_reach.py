"""The ``message`` tool's reach, as a prompt-injected model would test it, through a live
server: the openai SDK -> nanobot (the real LLM agent) -> a scripted model that calls
``message`` -> a fake Telegram; then what the caller got, what the model was told, what
the platform received and what the stores hold, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import attrs
from openai import AsyncOpenAI

from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, TelegramConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.app.wiring.storage import Storage, storage_for
from nanobot_api.domain.sessions import SessionKey
from tests.acceptance.test_channels import MODEL, call, configured, tool_results
from tests.acceptance.test_cli import run_nanobot
from tests.acceptance.test_temporary_chats import uploads_by_session
from tests.platforms import FakePlatforms
from tests.upstream import Calls, ScriptedUpstream, Text

NOT_UPLOADED = "is not a file uploaded in this conversation; nothing was sent"


@attrs.frozen
class Stack:
    up: ScriptedUpstream
    fake: FakePlatforms
    client: AsyncOpenAI
    config: Config
    # The served stores, opened a second time as another process would.
    backend: Storage

    async def turn(self, session: str, text: str, *files: tuple[str, bytes]) -> str:
        """One turn of ``session`` (with ``files`` attached as the SDK sends them); the
        answer's text."""
        content: list[dict[str, object]] = [{"type": "text", "text": text}]
        for name, data in files:
            url = f"data:text/plain;base64,{base64.b64encode(data).decode()}"
            content.append({"type": "file", "file": {"file_data": url, "filename": name}})
        reply = await self.client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": content}],  # type: ignore[misc,list-item]
            extra_headers={"X-Session-Id": session},
        )
        return reply.choices[0].message.content or ""

    def telegram_files(self) -> list[tuple[str | None, bytes | None]]:
        return [(p.filename, p.data) for p in self.fake.messages("telegram") if p.filename]


@asynccontextmanager
async def stack(
    tmp_path: Path,
    storage_url: str,
    *,
    allow: tuple[str, ...] = (),
    max_sends: int = 5,
) -> AsyncIterator[Stack]:
    """Telegram enabled (its ``allowChatIds`` is ``allow``), Discord not."""
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        config = configured(tmp_path / "workspace", up, fake)
        channels = config.channels
        telegram = attrs.evolve(channels.telegram, allow_chat_ids=allow)
        assert isinstance(telegram, TelegramConfig)
        config = attrs.evolve(
            config,
            agents=AgentsConfig(AgentDefaults(model=MODEL, max_sends_per_turn=max_sends)),
            channels=attrs.evolve(channels, telegram=telegram),
            storage=attrs.evolve(config.storage, url=storage_url),
        )
        async with (
            running_server(build(config)) as server,
            AsyncOpenAI(base_url=server.base_url, api_key="dummy", max_retries=0) as client,
            storage_for(config).opened() as backend,
        ):
            yield Stack(up, fake, client, config, backend)


async def test_media_reaches_only_this_sessions_uploads(tmp_path: Path, storage_url: str) -> None:
    """The databases, their ``-wal``, paths out of the uploads folder and another
    session's upload (by the name its client gave it or the name it is stored under)
    are refused; this session's upload is delivered, its bytes intact."""
    async with stack(tmp_path, storage_url) as s:
        s.up.add(Text("kept"))
        assert await s.turn("theirs", "keep this", ("theirs.txt", b"their private notes")) == "kept"
        media = s.config.workspace / "media" / "api"
        their_copy = uploads_by_session(media)["api:theirs"]
        refused = [
            "sessions.sqlite3",
            "sessions.sqlite3-wal",
            "outbox.sqlite3",
            "../sessions.sqlite3",
            "../../workspace/sessions.sqlite3",
            str(s.config.workspace / "sessions.sqlite3"),
            "theirs.txt",
            their_copy,
            f"../api/{their_copy}",
            str(media / their_copy),
        ]
        attempts = [
            call(content="as asked", channel="telegram", chat_id="42", media=[name])
            for name in refused
        ]
        own = call(content="your notes", channel="telegram", chat_id="42", media=["mine.txt"])
        s.up.add(Calls((*attempts, own)), Text("done"))

        answer = await s.turn("mine", "send my notes to 42", ("mine.txt", b"my own notes"))

        assert answer == "done"
        *refusals, delivered = tool_results(s.up)
        assert refusals == [
            f"Error: message failed: media {name!r} {NOT_UPLOADED}" for name in refused
        ]
        assert delivered.startswith("Message delivered to telegram:42 (event ")
        assert s.telegram_files() == [("mine.txt", b"my own notes")]
        (event,) = await s.backend.outbox.events()
        assert (event.chat_id, event.status, event.content) == ("42", "delivered", "your notes")
        await untouched_databases(s, tmp_path)


async def untouched_databases(s: Stack, tmp_path: Path) -> None:
    """The stores still work and hold every turn; on SQLite, `nanobot sessions list` run
    beside the server leaves the live WAL in place (had the server read a database file
    in-process, closing it would have dropped the server's SQLite locks, and the CLI's
    close would then delete the WAL under it: checked by hand, it does)."""
    workspace = s.config.workspace
    if s.config.storage.url:
        counts = await s.backend.sessions.sessions()
        assert counts == {SessionKey("api", "mine"): 1, SessionKey("api", "theirs"): 1}
    else:
        args = ("sessions", "list", "-w", str(workspace))
        # In a thread: the server answers from this event loop meanwhile.
        listed = await anyio.to_thread.run_sync(lambda: run_nanobot(*args, home=tmp_path))
        assert listed.returncode == 0, listed.stderr
        rows = [line.split() for line in listed.stdout.splitlines()]
        assert rows == [["api:mine", "1", "turn"], ["api:theirs", "1", "turn"]]
        assert (workspace / "sessions.sqlite3-wal").exists()
    s.up.add(Text("still here"))
    assert await s.turn("mine", "anything else?") == "still here"
    history = await s.backend.sessions.history(SessionKey("api", "mine"))
    assert [t.user_text for t in history] == [
        "send my notes to 42\n[document: mine.txt, 12 chars]",
        "anything else?",
    ]
    assert [t.messages[-1].content for t in history] == ["done", "still here"]


async def test_allow_chat_ids_and_max_sends_per_turn(tmp_path: Path, storage_url: str) -> None:
    """A chat outside Telegram's ``allowChatIds`` is refused, one inside is delivered;
    a reply of 200 calls makes exactly ``maxSendsPerTurn`` sends, the rest refused with
    a result saying so, and the caller still gets the answer."""
    async with stack(tmp_path, storage_url, allow=("42",), max_sends=3) as s:
        # A file the client named as the database: the name finds the upload, only it.
        db = ("sessions.sqlite3", b"an upload, not the database")
        attach = {"channel": "telegram", "media": [db[0]]}
        s.up.add(
            Calls(
                (
                    call(content="leak", chat_id="666", **attach),
                    call(content="hello", chat_id=42, **attach),
                )
            ),
            Text("turn one"),
        )
        assert await s.turn("s", "say hello", db) == "turn one"
        outside, inside = tool_results(s.up)
        assert outside == (
            "Error: message failed: chat '666' is not among the chats telegram may send to "
            "(allowChatIds); nothing was sent"
        )
        assert inside.startswith("Message delivered to telegram:42")
        assert s.telegram_files() == [db]

        flood = tuple(
            call(content=f"spam {i}", channel="telegram", chat_id="42") for i in range(200)
        )
        s.up.add(Calls(flood), Text("turn two"))
        assert await s.turn("s", "tell 42 everything") == "turn two"
        results = tool_results(s.up)[-200:]
        assert all(r.startswith("Message delivered to telegram:42") for r in results[:3])
        assert set(results[3:]) == {
            "Error: message failed: this turn already made 3 sends, the most one turn may "
            "make; nothing was sent"
        }
        sent = [(p.chat_id, p.text) for p in s.fake.messages("telegram") if p.text]
        assert sent == [("42", "hello"), ("42", "spam 0"), ("42", "spam 1"), ("42", "spam 2")]
        events = await s.backend.outbox.events()
        assert sorted(e.content for e in events) == ["hello", "spam 0", "spam 1", "spam 2"]
        assert {e.status for e in events} == {"delivered"}
