"""OpenAICompatChatModel against the scripted upstream on a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.adapters.llm.openai_compat import OpenAICompatChatModel
from nanobot_api.adapters.llm.openai_wire import StreamAccumulator
from nanobot_api.domain.attachments import Document, Image
from nanobot_api.domain.conversation import Message, ToolCall, Usage
from nanobot_api.domain.errors import UpstreamFailed
from nanobot_api.domain.models import ModelRequest, ToolCallPiece, ToolSpec, UserContent
from tests.upstream import (
    Break,
    Calls,
    Hang,
    ScriptedUpstream,
    Status,
    Text,
    chat_model,
    closed_port,
)

KEY = "sk-test-secret-key"
ASK = ModelRequest((Message("system", "be brief"), Message.user("hi")))


@pytest.fixture(name="upstream")
async def _upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture(name="model")
async def _model(upstream: ScriptedUpstream) -> AsyncIterator[OpenAICompatChatModel]:
    async with chat_model(upstream, KEY) as model:
        yield model


class Deltas:
    def __init__(self) -> None:
        self.items: list[str] = []

    async def __call__(self, text: str) -> None:
        self.items.append(text)


async def test_streams_text_and_reports_usage(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    upstream.add(Text("Hello there friend", usage=(12, 3)))
    deltas = Deltas()
    response = await model.complete(ASK, deltas)
    assert "".join(deltas.items) == "Hello there friend"
    assert response.message == Message.assistant("Hello there friend")
    assert response.usage == Usage(12, 3)
    sent = upstream.received[0]
    assert sent.body["model"] == "scripted-model"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert "tools" not in sent.body


async def test_first_delta_arrives_before_the_answer_ends(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    gate = anyio.Event()
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        seen.append(text)
        if len(seen) == 1:
            gate.set()  # only reachable if the first piece was passed on at once

    upstream_gate = asyncio.Event()
    upstream.add(Text("first second", gate=upstream_gate))
    async with anyio.create_task_group() as tg:
        tg.start_soon(model.complete, ASK, on_delta)
        with anyio.fail_after(5):
            await gate.wait()
        assert seen == ["first"]
        upstream_gate.set()
    assert seen == ["first", " second"]


async def test_pieces_that_arrive_together_are_passed_on_as_one(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    """A reader that fell behind catches up in one step, not one per token."""
    upstream.add(Text("one two three", together=True))
    deltas = Deltas()
    response = await model.complete(ASK, deltas)
    assert deltas.items == ["one two three"]
    assert response.message == Message.assistant("one two three")


async def test_not_streamed_when_configured(upstream: ScriptedUpstream) -> None:
    upstream.add(Text("whole answer", usage=(4, 2)))
    async with chat_model(upstream, KEY, stream=False) as model:
        deltas = Deltas()
        response = await model.complete(ASK, deltas)
    assert "stream" not in upstream.received[0].body
    assert deltas.items == ["whole answer"]
    assert response.usage == Usage(4, 2)


@pytest.mark.parametrize("stream", [True, False])
async def test_several_tool_calls_are_assembled_in_order(
    upstream: ScriptedUpstream, stream: bool
) -> None:
    upstream.add(Calls((("add", '{"a": 1, "b": 2}'), ("echo", '{"text": "x"}')), text="Let me"))
    tool = ToolSpec("add", "adds", {"type": "object", "properties": {"a": {"type": "integer"}}})
    async with chat_model(upstream, KEY, stream=stream) as model:
        response = await model.complete(ModelRequest(ASK.messages, (tool,)), Deltas())
    calls = response.message.tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("add", '{"a": 1, "b": 2}'),
        ("echo", '{"text": "x"}'),
    ]
    assert all(c.id for c in calls)
    assert len({c.id for c in calls}) == 2
    assert response.message.content == "Let me"
    assert response.finish_reason == "tool_calls"
    assert upstream.received[0].tools == [
        {
            "type": "function",
            "function": {"name": "add", "description": "adds", "parameters": tool.parameters},
        }
    ]


async def test_tool_history_is_sent_in_openai_shape(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    call = ToolCall("call_1", "add", '{"a": 1}')
    messages = (
        Message.user("q"),
        Message.assistant(None, (call,)),
        Message.tool_result("call_1", "2"),
    )
    await model.complete(ModelRequest(messages), Deltas())
    assert upstream.received[0].messages[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1}'},
                }
            ],
        },
        {"role": "tool", "content": "2", "tool_call_id": "call_1"},
    ]


async def test_a_request_of_several_mib_is_sent_whole_and_again_on_a_retry(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    """Past 1 MiB aiohttp warns that raw bytes may hold the loop (an error in this
    suite): such a body goes as a stream of pieces, and a retry sends it all again."""
    history = tuple(Message.user(f"{i}" + "x" * 1024 * 1024) for i in range(3))
    upstream.add(Status(503), Text("read it"))
    response = await model.complete(ModelRequest(history), Deltas())
    assert response.message.content == "read it"
    first, second = upstream.received
    assert first.size == second.size > 3 * 1024 * 1024
    assert [m["content"][0] for m in second.messages] == ["0", "1", "2"]
    assert second.headers["Content-Type"] == "application/json"


async def test_images_go_as_data_urls_and_documents_as_named_text(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    image = Image(b"\x89PNG-bytes", "image/png", "/ws/media/a.png", "a.png")
    doc = Document("report.pdf", "quarterly numbers", "/ws/media/b.pdf")
    content = UserContent.of_turn("what is this?", [image], [doc])
    await model.complete(ModelRequest((content,)), Deltas())
    parts = upstream.received[0].messages[0]["content"]
    assert parts == [
        {"type": "text", "text": "what is this?"},
        {"type": "text", "text": "[File: report.pdf]\nquarterly numbers"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORy1ieXRlcw=="}},
    ]


async def test_5xx_is_retried_then_succeeds(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    upstream.add(Status(500), Status(503), Text("ok"))
    response = await model.complete(ASK, Deltas())
    assert response.message.content == "ok"
    assert len(upstream.received) == 3


async def test_429_waits_as_long_as_retry_after_says(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    upstream.add(Status(429, retry_after="1"), Text("ok"))
    started = time.monotonic()
    await model.complete(ASK, Deltas())
    waited = upstream.received[1].at - upstream.received[0].at
    assert 0.95 <= waited < 3, waited
    assert time.monotonic() - started >= 0.95


async def test_429_whose_retry_after_passes_the_deadline_fails_at_once(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    upstream.add(Status(429, retry_after="30"), Text("never"))
    started = time.monotonic()
    with anyio.fail_after(5), pytest.raises(UpstreamFailed, match="HTTP 429"):
        await model.complete(ASK, Deltas())
    assert time.monotonic() - started < 1
    assert len(upstream.received) == 1


async def test_5xx_that_persists_names_the_status(upstream: ScriptedUpstream) -> None:
    upstream.add(*[Status(503)] * 3)
    async with chat_model(upstream, KEY, max_retries=2) as model:
        with pytest.raises(UpstreamFailed) as failure:
            await model.complete(ASK, Deltas())
    assert failure.value.message.startswith("Upstream model error: HTTP 503")
    assert len(upstream.received) == 3


async def test_4xx_is_not_retried_and_its_message_never_shows_the_key(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    upstream.add(Status(400, message=f"bad request for key {KEY}"))
    with pytest.raises(UpstreamFailed) as failure:
        await model.complete(ASK, Deltas())
    assert failure.value.message == "Upstream model error: HTTP 400: bad request for key ***"
    assert len(upstream.received) == 1


async def test_401_says_the_key_was_refused_without_quoting_it(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    upstream.add(Status(401, message=f"Incorrect API key provided: {KEY[:6]}***"))
    with pytest.raises(UpstreamFailed, match=r"HTTP 401: the provider refused the API key$"):
        await model.complete(ASK, Deltas())


async def test_connection_refused_is_an_upstream_failure() -> None:
    async with aiohttp.ClientSession() as session:
        model = OpenAICompatChatModel(session, f"http://127.0.0.1:{closed_port()}/v1", KEY, "m")
        with pytest.raises(UpstreamFailed, match="cannot connect") as failure:
            await model.complete(ASK, Deltas())
    assert KEY not in failure.value.message


async def test_silence_past_the_read_timeout_is_an_upstream_failure(
    upstream: ScriptedUpstream,
) -> None:
    upstream.add(Hang())
    async with chat_model(upstream, KEY, read_timeout_s=0.3) as model:
        with pytest.raises(UpstreamFailed, match=r"no answer within 0.3s"):
            await model.complete(ASK, Deltas())


async def test_a_hang_is_cut_by_the_callers_deadline(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    upstream.add(Hang())
    with pytest.raises(TimeoutError), anyio.fail_after(0.3):
        await model.complete(ASK, Deltas())


async def test_a_stream_that_breaks_off_is_an_upstream_failure(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    upstream.add(Break("half an ans"))
    deltas = Deltas()
    with pytest.raises(UpstreamFailed, match="Upstream model error"):
        await model.complete(ASK, deltas)
    assert len(upstream.received) == 1, "a broken stream must not be retried"


async def test_the_key_never_reaches_the_log(
    upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.add(Status(500, message=KEY), Status(400, message=KEY), Break(), Hang())
    async with chat_model(upstream, KEY, max_retries=1, read_timeout_s=0.2) as model:
        for _ in range(3):
            with pytest.raises(UpstreamFailed):
                await model.complete(ASK, Deltas())
        assert KEY not in repr(model)
    assert caplog.records
    assert KEY not in caplog.text


async def test_a_runaway_streamed_answer_is_not_read_past_the_reply_bound(
    upstream: ScriptedUpstream, model: OpenAICompatChatModel
) -> None:
    pieces = tuple("z" * 1000 for _ in range(2000))  # 2 MB of answer
    upstream.add(Text("".join(pieces), pieces=pieces))
    deltas = Deltas()
    bounded = ModelRequest((Message.user("talk"),), max_reply_chars=5000)
    response = await model.complete(bounded, deltas)
    assert response.message.content == "z" * 5000
    assert response.finish_reason == "length"
    assert sum(map(len, deltas.items)) < 100_000  # stopped reading early


async def test_a_runaway_whole_answer_is_asked_for_again_as_a_stream_and_cut(
    upstream: ScriptedUpstream,
) -> None:
    upstream.add(Text("w" * 200_000), Text("v" * 200_000))
    async with chat_model(upstream, KEY, stream=False) as model:
        bounded = ModelRequest((Message.user("talk"),), stream=False, max_reply_chars=1000)
        response = await model.complete(bounded, Deltas())
    assert response.message.content == "v" * 1000
    assert [r.body.get("stream", False) for r in upstream.received] == [False, True]


def test_streamed_calls_are_handed_on_in_pieces_with_the_ids_of_the_whole_calls() -> None:
    """A server that sends no id gets one made up at the call's first piece, so the
    pieces a client sees and the whole call it answers agree."""

    def chunk(*calls: dict[str, object]) -> dict[str, object]:
        return {"choices": [{"index": 0, "delta": {"tool_calls": list(calls)}}]}

    chunks = [
        chunk({"index": 0, "function": {"name": "add", "arguments": ""}}),
        chunk({"index": 0, "function": {"arguments": '{"a":'}}),
        chunk({"index": 1, "id": "call_b", "function": {"name": "echo", "arguments": "{}"}}),
        chunk({"index": 0, "function": {"arguments": " 1}"}}),
    ]
    acc = StreamAccumulator()
    pieces: list[ToolCallPiece] = []
    for item in chunks:
        acc.add(json.dumps(item), item)
        pieces += acc.take_pieces()
    add, echo = acc.response().message.tool_calls
    assert add.id.startswith("call_")
    assert (add.arguments, echo.id) == ('{"a": 1}', "call_b")
    assert pieces == [
        ToolCallPiece(0, add.id, "add", ""),
        ToolCallPiece(0, "", "", '{"a":'),
        ToolCallPiece(1, "call_b", "echo", "{}"),
        ToolCallPiece(0, "", "", " 1}"),
    ]


@given(
    st.lists(st.lists(st.text(max_size=6), min_size=1, max_size=5), min_size=1, max_size=3),
    st.randoms(use_true_random=False),
)
def test_pieces_joined_are_the_whole_calls_however_the_chunks_interleave(
    fragments: list[list[str]], rng: random.Random
) -> None:
    # Each call: a first chunk naming it, then its argument fragments; calls interleaved.
    queues = [
        [{"index": i, "id": f"c{i}", "function": {"name": f"f{i}", "arguments": ""}}]
        + [{"index": i, "function": {"arguments": text}} for text in texts]
        for i, texts in enumerate(fragments)
    ]
    acc = StreamAccumulator()
    pieces: list[ToolCallPiece] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        item = {"choices": [{"index": 0, "delta": {"tool_calls": [queue.pop(0)]}}]}
        acc.add(json.dumps(item), item)
        pieces += acc.take_pieces()
    calls = acc.response().message.tool_calls
    for index, call in enumerate(calls):
        mine = [p for p in pieces if p.index == index]
        assert (mine[0].id, mine[0].name) == (call.id, call.name)
        assert not any(p.starts_call for p in mine[1:])
        assert "".join(p.arguments for p in mine) == call.arguments == "".join(fragments[index])
