"""Front ends that resend whole conversations or cannot send body fields (SPEC.md, last section).

Requests replay the shapes Open WebUI sends: the chat id in a header, the whole
conversation in `messages`, a regenerate, and title generation marked by
`X-OpenWebUI-Task`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from quart.typing import TestClientProtocol as Client
from werkzeug.datastructures import Headers

from nanobot_api.adapters.http.app import create_quart_app
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.echo import EchoAgent
from nanobot_api.domain.requests import HistoryMode
from nanobot_api.domain.sessions import SessionKey
from tests.fakes import TextOnlyAttachments

CHAT = "/v1/chat/completions"
ORIGIN = "https://chat.example.org"
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


class FrontEndServer:
    def __init__(self, client: Client, store: InMemorySessionStore) -> None:
        self.client = client
        self.store = store

    async def post(
        self, body: dict[str, object], headers: dict[str, str] | None = None
    ) -> tuple[int, Headers, str]:
        """Status, headers and the answer text (streamed answers joined)."""
        response = await self.client.post(CHAT, json=body, headers=headers or {})
        raw = await response.get_data()
        if response.content_type.startswith("text/event-stream"):
            chunks = [
                json.loads(line.removeprefix(b"data: "))
                for line in raw.split(b"\n\n")
                if line.startswith(b"data: {")
            ]
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1])
            assert raw.rstrip().endswith(b"data: [DONE]")
        else:
            payload = json.loads(raw)
            text = (
                payload["choices"][0]["message"]["content"]
                if response.status_code == 200
                else payload["error"]["message"]
            )
        return response.status_code, response.headers, text

    async def turns(self, session_id: str) -> list[tuple[str, str]]:
        history = await self.store.history(SessionKey("api", session_id))
        return [(r.user_text, r.messages[-1].content or "") for r in history]


async def serve(
    history: HistoryMode, cors: frozenset[str] = frozenset()
) -> AsyncIterator[FrontEndServer]:
    store = InMemorySessionStore()
    service = ChatService(EchoAgent(), store, TextOnlyAttachments(), timeout_s=30)
    app = create_quart_app(service, HttpSettings(history=history, cors_origins=cors))
    async with app.test_app() as running:
        yield FrontEndServer(running.test_client(), store)


@pytest.fixture(name="latest")
async def _latest() -> AsyncIterator[FrontEndServer]:
    async for server in serve("latest"):
        yield server


@pytest.fixture(name="reject")
async def _reject() -> AsyncIterator[FrontEndServer]:
    async for server in serve("reject", frozenset({ORIGIN})):
        yield server


@pytest.mark.parametrize("stream", [False, True])
async def test_open_webui_conversation_keeps_exactly_the_real_turns(
    latest: FrontEndServer, stream: bool
) -> None:
    chat = {"X-OpenWebUI-Chat-Id": "owui-chat-1"}
    first = {"model": "nanobot-echo", "stream": stream, "messages": [SYSTEM, user("hello")]}
    status, headers, text = await latest.post(first, chat)
    assert (status, text) == (200, "echo: hello")
    assert headers["X-Session-Id"] == "owui-chat-1"

    second = {**first, "messages": [SYSTEM, user("hello"), assistant(text), user("more")]}
    more = 'echo: more (turn 2; earlier: "hello")'  # the echo agent shows what it remembers
    assert (await latest.post(second, chat))[2] == more

    # Regenerate: the same conversation again redoes the last turn instead of adding one.
    status, _, again = await latest.post(second, chat)
    assert (status, again) == (200, more)
    assert len(await latest.store.turns(SessionKey("api", "owui-chat-1"))) == 3

    title = {
        "model": "nanobot-echo",
        "stream": stream,
        "messages": [user("### Task:\nGenerate a concise title for: hello / more")],
    }
    task_headers = {**chat, "X-OpenWebUI-Task": "title_generation"}
    status, _, title_text = await latest.post(title, task_headers)
    assert status == 200
    assert title_text.startswith("echo: ### Task:")

    assert await latest.turns("owui-chat-1") == [("hello", "echo: hello"), ("more", more)]


async def test_a_regenerate_after_a_new_turn_only_replaces_the_last(latest: FrontEndServer) -> None:
    chat = {"X-Session-Id": "r"}
    await latest.post({"messages": [user("a")]}, chat)
    await latest.post({"messages": [user("a"), assistant("echo: a"), user("b")]}, chat)
    await latest.post({"messages": [user("a"), assistant("echo: a"), user("b")]}, chat)
    await latest.post(
        {
            "messages": [
                *(user("a"), assistant("echo: a"), user("b"), assistant("echo: b")),
                user("b"),
            ]
        },
        chat,
    )
    assert [t for t, _ in await latest.turns("r")] == ["a", "b", "b"]


async def test_a_client_sending_only_new_messages_never_regenerates(
    latest: FrontEndServer,
) -> None:
    """Without a front end's headers, one user message is a new turn, even the same text."""
    for _ in range(2):
        await latest.post({"messages": [user("same")]}, {"X-Session-Id": "n"})
    assert await latest.turns("n") == [
        ("same", "echo: same"),
        ("same", 'echo: same (turn 2; earlier: "same")'),
    ]


async def test_an_earlier_turn_the_session_never_stored_is_taken_from_the_request(
    latest: FrontEndServer,
) -> None:
    """An answer edited in place in the front end: the model sees the request's text."""
    chat = {"X-Session-Id": "edited"}
    await latest.post({"messages": [user("a")]}, chat)
    await latest.post({"messages": [user("a"), assistant("changed by hand"), user("b")]}, chat)
    assert await latest.turns("edited") == [
        ("a", "changed by hand"),
        ("b", 'echo: b (turn 2; earlier: "a")'),
    ]


async def test_a_conversation_without_a_session_is_refused_with_instructions(
    latest: FrontEndServer,
) -> None:
    status, _, message = await latest.post({"messages": [user("a"), assistant("b"), user("c")]})
    assert status == 400
    assert "X-Session-Id" in message
    assert "ENABLE_FORWARD_USER_INFO_HEADERS" in message
    status, headers, _ = await latest.post({"messages": [user("alone")]})
    assert (status, headers["X-Session-Id"]) == (200, "default")


async def test_latest_mode_needs_a_user_message_last(latest: FrontEndServer) -> None:
    body = {"messages": [user("a"), assistant("b")], "session_id": "x"}
    status, _, message = await latest.post(body)
    assert status == 400
    assert message.startswith("The last message must be a user message")


async def test_reject_mode_still_refuses_conversations(reject: FrontEndServer) -> None:
    body = {"messages": [user("a"), assistant("b"), user("c")], "session_id": "x"}
    status, _, message = await reject.post(body)
    assert status == 400
    # The default mode names the fix (spec/README.md, "The default mode's refusal").
    assert message.startswith("Only a single user message is supported")
    assert 'api.history = "latest"' in message
    assert "X-Session-Id" in message


@pytest.mark.parametrize(
    ("headers", "body_session", "expected"),
    [
        ({"X-Session-Id": "h"}, None, "h"),
        ({"X-OpenWebUI-Chat-Id": "w", "X-Chat-Id": "c"}, None, "w"),
        ({"X-Chat-Id": "c"}, None, "c"),
        ({"X-Session-Id": "h", "X-OpenWebUI-Chat-Id": "w"}, None, "h"),
        ({"X-OpenWebUI-Chat-Id": "w"}, "body", "body"),
        ({"X-Session-Id": "same"}, "same", "same"),
        ({}, None, "default"),
    ],
)
async def test_session_precedence_between_body_and_headers(
    reject: FrontEndServer, headers: dict[str, str], body_session: str | None, expected: str
) -> None:
    body: dict[str, object] = {"messages": [user("hi")]}
    if body_session is not None:
        body["session_id"] = body_session
    status, answer_headers, _ = await reject.post(body, headers)
    assert (status, answer_headers["X-Session-Id"]) == (200, expected)
    assert [t for t, _ in await reject.turns(expected)] == ["hi"]


@pytest.mark.parametrize(
    ("headers", "body_session"),
    [
        ({"X-Session-Id": "a"}, "b"),
        ({"X-Session-Id": ""}, None),
        ({"X-Chat-Id": "x" * 257}, None),
    ],
)
async def test_conflicting_or_invalid_session_headers_are_refused(
    reject: FrontEndServer, headers: dict[str, str], body_session: str | None
) -> None:
    body: dict[str, object] = {"messages": [user("hi")]}
    if body_session is not None:
        body["session_id"] = body_session
    status, _, _ = await reject.post(body, headers)
    assert status == 400


async def test_cors_preflight_for_an_allowed_origin(reject: FrontEndServer) -> None:
    response = await reject.client.options(
        CHAT,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-session-id",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET",
        "POST",
        "DELETE",
        "OPTIONS",
    }
    allowed = {h.lower() for h in response.headers["Access-Control-Allow-Headers"].split(", ")}
    assert {"authorization", "content-type", "x-session-id", "x-request-id"} <= allowed


async def test_cors_headers_on_a_streamed_answer_and_none_for_other_origins(
    reject: FrontEndServer,
) -> None:
    body = {"messages": [user("hi")], "stream": True}
    allowed = await reject.client.post(CHAT, json=body, headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = allowed.headers["Access-Control-Expose-Headers"]
    assert {"X-Session-Id", "X-Request-ID"} <= set(exposed.split(", "))
    assert (await allowed.get_data()).rstrip().endswith(b"[DONE]")
    other = await reject.client.post(CHAT, json=body, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = await reject.client.options(CHAT, headers={"Origin": "https://evil.example"})
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_open_webui_tasks_without_the_task_header_take_no_turn(
    latest: FrontEndServer,
) -> None:
    """With forwarding only, Open WebUI's title task arrives under the chat's id with
    no X-OpenWebUI-Task: its shape alone keeps it out of the chat's history."""
    chat = {"X-OpenWebUI-Chat-Id": "owui-t", "X-OpenWebUI-User-Id": "u1"}
    title = "### Task:\nGenerate a concise title.\n<chat_history>\nUSER: hi\n</chat_history>"
    status, _, text = await latest.post({"stream": False, "messages": [user(title)]}, chat)
    assert status == 200
    assert text.startswith("echo: ### Task:")
    await latest.post({"stream": True, "messages": [user("hi")], "tools": []}, chat)
    assert await latest.turns("owui-t") == [("hi", "echo: hi")]


async def test_an_empty_task_header_is_a_chat_turn(latest: FrontEndServer) -> None:
    """The recipe's X-OpenWebUI-Task: {{TASK}} is empty on a chat turn."""
    headers = {"X-Session-Id": "e", "X-OpenWebUI-Task": ""}
    await latest.post({"messages": [user("kept")]}, headers)
    assert await latest.turns("e") == [("kept", "echo: kept")]
