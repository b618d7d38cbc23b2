"""LlmAgent inside the chat use case, talking to the scripted upstream over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.llm_agent import LlmAgent, iteration_limit_text
from nanobot_api.domain.attachments import Document, Image, Upload
from nanobot_api.domain.conversation import Message, Usage
from nanobot_api.domain.errors import InvalidRequest, TurnTimedOut, UpstreamFailed
from nanobot_api.domain.models import JsonObject, ToolContext, ToolSpec
from nanobot_api.domain.ports import SessionStore, Tool
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.turns import PreparedTurn, TurnResult
from tests.upstream import Calls, Hang, ScriptedUpstream, Status, Text, chat_model

A = SessionKey("api", "a")
B = SessionKey("api", "b")


class AddTool:
    """Adds two integers; records every call it ran."""

    spec = ToolSpec(
        "add",
        "Adds two integers.",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    )

    def __init__(self) -> None:
        self.calls: list[tuple[JsonObject, SessionKey]] = []

    async def call(self, arguments: JsonObject, context: ToolContext) -> str:
        self.calls.append((arguments, context.session))
        a, b = arguments["a"], arguments["b"]
        assert isinstance(a, int)
        assert isinstance(b, int)
        return str(a + b)


class BrokenTool:
    spec = ToolSpec("broken", "Always fails.")

    async def call(self, arguments: JsonObject, context: ToolContext) -> str:
        raise RuntimeError("bug inside the tool")


class RefusingTool:
    spec = ToolSpec("refuse", "Refuses politely.")

    async def call(self, arguments: JsonObject, context: ToolContext) -> str:
        raise InvalidRequest("not allowed here")


class NoUploads:
    async def accept(
        self, uploads: Sequence[Upload]
    ) -> tuple[tuple[Image, ...], tuple[Document, ...]]:
        return (), ()


class Collected:
    """A Reply that keeps what reached the caller."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.usage = Usage()
        self.remembered: list[Message] = []

    async def send(self, delta: str) -> None:
        self.deltas.append(delta)

    def add_usage(self, usage: Usage) -> None:
        self.usage += usage

    def remember(self, message: Message) -> None:
        self.remembered.append(message)

    @property
    def text(self) -> str:
        return "".join(self.deltas)


class Harness:
    def __init__(self, service: ChatService, store: SessionStore, up: ScriptedUpstream) -> None:
        self.service = service
        self.store = store
        self.up = up

    async def turn(self, text: str, key: SessionKey = A, **files: Any) -> TurnResult:
        return await self.service.run(PreparedTurn(key, text, **files), Collected())

    def sent(self, index: int = -1) -> list[dict[str, Any]]:
        return self.up.received[index].messages


@pytest.fixture(name="upstream")
async def _upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as upstream:
        yield upstream


@asynccontextmanager
async def harness(
    upstream: ScriptedUpstream,
    *,
    tools: Sequence[Tool] = (),
    system_prompt: str | None = "You are terse.",
    max_tool_iterations: int = 8,
    timeout_s: float = 10,
    max_history_messages: int | None = None,
) -> AsyncIterator[Harness]:
    store = InMemorySessionStore()
    async with chat_model(upstream) as model:
        agent = LlmAgent(model, "served", tools, system_prompt, max_tool_iterations)
        service = ChatService(
            agent,
            store,
            NoUploads(),
            timeout_s=timeout_s,
            max_history_messages=max_history_messages,
        )
        yield Harness(service, store, upstream)


def roles_and_text(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["role"], m["content"]) for m in messages]


async def test_each_turn_sends_system_prompt_history_and_the_new_message_in_order(
    upstream: ScriptedUpstream,
) -> None:
    upstream.add(Text("one!"), Text("two!"), Text("three!"))
    async with harness(upstream) as h:
        for text in ["one", "two", "three"]:
            await h.turn(text)
    assert roles_and_text(h.sent()) == [
        ("system", "You are terse."),
        ("user", "one"),
        ("assistant", "one!"),
        ("user", "two"),
        ("assistant", "two!"),
        ("user", "three"),
    ]
    assert h.up.received[0].body["model"] == "scripted-model"


async def test_sessions_never_see_each_others_turns(upstream: ScriptedUpstream) -> None:
    async with harness(upstream, system_prompt=None) as h:
        await h.turn("alpha secret", A)
        await h.turn("bravo", B)
        await h.turn("alpha again", A)
        await h.turn("bravo again", B)
    assert roles_and_text(h.sent()) == [
        ("user", "bravo"),
        ("assistant", "echo: bravo"),
        ("user", "bravo again"),
    ]
    assert "alpha" not in json.dumps(h.sent())


async def test_history_sent_upstream_is_cut_at_turn_boundaries(upstream: ScriptedUpstream) -> None:
    async with harness(upstream, system_prompt=None, max_history_messages=4) as h:
        for text in ["t1", "t2", "t3", "t4"]:
            await h.turn(text)
    assert [m["content"] for m in h.sent()] == ["t2", "echo: t2", "t3", "echo: t3", "t4"]


async def test_images_and_document_text_reach_the_model_and_history_keeps_a_note(
    upstream: ScriptedUpstream,
) -> None:
    image = Image(b"\x89PNG\r\n\x1a\nfake", "image/png", "/ws/media/api/x.png", "cat.png")
    doc = Document("notes.md", "# Heading\nthe body", "/ws/media/api/y.md")
    async with harness(upstream, system_prompt=None) as h:
        await h.turn("look", images=(image,), documents=(doc,))
        await h.turn("and now?")
    first = h.up.received[0].messages[-1]["content"]
    assert first == [
        {"type": "text", "text": "look"},
        {"type": "text", "text": "[File: notes.md]\n# Heading\nthe body"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgpmYWtl"}},
    ]
    past_user = h.sent()[0]["content"]
    assert past_user.startswith("look\n[image: cat.png")
    assert "notes.md" in past_user
    assert "iVBOR" not in json.dumps(h.sent())


async def test_a_tool_call_round_trip_is_fed_back_and_kept_in_history(
    upstream: ScriptedUpstream,
) -> None:
    add = AddTool()
    upstream.add(Calls((("add", '{"a": 1, "b": 2}'),), text="Adding."), Text("It is 3."))
    async with harness(upstream, tools=[add], system_prompt=None) as h:
        reply = Collected()
        result = await h.service.run(PreparedTurn(A, "1+2?"), reply)
        await h.turn("thanks")
    assert add.calls == [({"a": 1, "b": 2}, A)]
    assert result.text == "Adding.\n\nIt is 3."
    second = h.up.received[1].messages
    call_id = second[1]["tool_calls"][0]["id"]
    assert second[1:] == [
        {
            "role": "assistant",
            "content": "Adding.",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                }
            ],
        },
        {"role": "tool", "content": "3", "tool_call_id": call_id},
    ]
    assert h.up.received[0].tools[0]["function"]["name"] == "add"
    # The next turn sees the whole previous turn, tool call and result paired.
    assert [m["role"] for m in h.sent()] == ["user", "assistant", "tool", "assistant", "user"]
    assert h.sent()[3]["content"] == "It is 3."


async def test_several_calls_per_response_run_in_order_and_mistakes_become_tool_errors(
    upstream: ScriptedUpstream,
) -> None:
    add = AddTool()
    upstream.add(
        Calls(
            (
                ("add", '{"a": 2, "b": 3}'),
                ("add", '{"a": 2, "b": '),
                ("add", '{"a": "two", "b": 3}'),
                ("add", '{"a": 2}'),
                ("nope", "{}"),
                ("broken", "{}"),
                ("refuse", ""),
            )
        ),
        Text("done"),
    )
    async with harness(upstream, tools=[add, BrokenTool(), RefusingTool()]) as h:
        result = await h.turn("go")
    results = [m["content"] for m in h.up.received[1].messages if m["role"] == "tool"]
    assert results[0] == "5"
    assert "not valid JSON" in results[1]
    assert "arguments.a: 'two' is not of type 'integer'" in results[2]
    assert "arguments: 'b' is a required property" in results[3]
    assert "no tool named 'nope'" in results[4]
    assert results[5] == "Error: broken failed with an internal error."
    assert results[6] == "Error: refuse failed: not allowed here"
    assert len(add.calls) == 1
    assert result.text == "done"


async def test_the_loop_stops_after_the_iteration_limit_with_a_clear_text(
    upstream: ScriptedUpstream,
) -> None:
    add = AddTool()
    upstream.add(*[Calls((("add", '{"a": 1, "b": 1}'),))] * 5)
    async with harness(upstream, tools=[add], max_tool_iterations=2) as h:
        result = await h.turn("loop forever")
        history = await h.store.history(A)
    assert len(upstream.received) == 2
    assert result.text == iteration_limit_text(2)
    roles = [m.role for m in history[0].messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert history[0].messages[-1].content == iteration_limit_text(2)


async def test_usage_is_summed_over_the_turns_model_calls(upstream: ScriptedUpstream) -> None:
    upstream.add(
        Calls((("add", '{"a": 1, "b": 1}'),), usage=(100, 20)),
        Calls((("add", '{"a": 2, "b": 2}'),), usage=(130, 25)),
        Text("4", usage=(160, 5)),
    )
    async with harness(upstream, tools=[AddTool()]) as h:
        result = await h.turn("sum")
    assert result.usage == Usage(390, 50)


async def test_a_failed_call_mid_turn_leaves_history_unchanged(upstream: ScriptedUpstream) -> None:
    upstream.add(Text("first"), Calls((("add", '{"a": 1, "b": 1}'),)), Status(400, "bad"))
    async with harness(upstream, tools=[AddTool()]) as h:
        await h.turn("keep me")
        before = await h.store.history(A)
        with pytest.raises(UpstreamFailed, match="HTTP 400: bad"):
            await h.turn("lose me")
        assert await h.store.history(A) == before
        await h.turn("next")
    assert "lose me" not in json.dumps(h.sent())
    assert [m["role"] for m in h.sent()] == ["system", "user", "assistant", "user"]


async def test_a_cancelled_or_timed_out_turn_leaves_history_unchanged(
    upstream: ScriptedUpstream,
) -> None:
    upstream.add(Text("kept"), Calls((("add", '{"a": 1, "b": 1}'),)), Hang())
    async with harness(upstream, tools=[AddTool()], timeout_s=1) as h:
        await h.turn("keep me")
        before = await h.store.history(A)
        with pytest.raises(TurnTimedOut):
            await h.turn("cut me")
        assert await h.store.history(A) == before
        upstream.add(Calls((("add", '{"a": 1, "b": 1}'),)), Hang())
        with anyio.move_on_after(0.5):
            await h.turn("cancel me")
        assert await h.store.history(A) == before


async def test_an_empty_answer_is_recorded_as_the_fallback_the_caller_saw(
    upstream: ScriptedUpstream,
) -> None:
    upstream.add(Text("", usage=(1, 0)))
    async with harness(upstream) as h:
        result = await h.turn("say nothing")
        history = await h.store.history(A)
    assert result.text
    assert history[0].messages[-1] == Message.assistant(result.text)


async def test_a_plain_completion_sends_exactly_the_given_messages(
    upstream: ScriptedUpstream,
) -> None:
    upstream.add(Text("A title", usage=(3, 2)))
    async with chat_model(upstream) as model:
        agent = LlmAgent(model, "served", [AddTool()], "system prompt", 8)
        reply = Collected()
        await agent.complete([Message("system", "make a title"), Message.user("hi")], reply)
    assert roles_and_text(upstream.received[0].messages) == [
        ("system", "make a title"),
        ("user", "hi"),
    ]
    assert "tools" not in upstream.received[0].body
    assert reply.text == "A title"
    assert reply.usage == Usage(3, 2)
    assert reply.remembered == []
