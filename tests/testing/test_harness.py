"""The in-process harness: parsed answers, errors as values, uploads, raw bodies, the fixture."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from werkzeug.datastructures import Headers

from nanobot_api import NanobotError, Turn, Usage, agent
from nanobot_api.testing import ApiError, ChatFailed, ChatResult, Harness, HarnessFactory


@agent(model="words")
async def words(turn: Turn) -> AsyncIterator[str | Usage]:
    names = [d.name for d in turn.documents] + [i.mime for i in turn.images]
    for word in [*turn.text.split(), *names]:
        yield f"<{word}>"
    yield Usage(1, len(names))


async def test_a_json_answer_is_parsed() -> None:
    async with Harness(words) as h:
        result = await h.chat("a b", session_id="s")
    assert result.ok
    assert (result.status, result.text, result.session_id) == (200, "<a><b>", "s")
    assert result.usage == Usage(1, 0)
    assert result.finish_reason == "stop"
    assert result.json["object"] == "chat.completion"
    assert result.request_id is not None
    assert not result.streamed


async def test_a_stream_is_parsed_into_chunks_text_and_its_end() -> None:
    async with Harness(words) as h:
        result = await h.chat("a b", stream=True, include_usage=True)
    assert result.ok
    assert result.streamed
    assert result.done
    assert result.text == "<a><b>"
    assert result.chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert result.finish_reason == "stop"
    assert result.usage == Usage(1, 0)
    assert result.json is None


async def test_errors_are_values_until_asked_to_raise() -> None:
    async with Harness(words) as h:
        wrong_model = await h.chat("x", model="other")
        not_json = await h.send(b"{nope")
        two_messages = await h.send({"messages": [{"role": "user", "content": "a"}] * 2})
        missing = await h.get("/v1/nothing")
    assert wrong_model.error == ApiError(
        "Only configured model 'words' is available", "invalid_request_error", "model", 400
    )
    assert not_json.status == 400
    assert two_messages.error is not None
    assert two_messages.error.message.startswith("Only a single user message is supported")
    assert missing.status == 404
    assert missing.error is not None
    assert missing.error.code == 404
    with pytest.raises(ChatFailed, match="HTTP 400"):
        wrong_model.raise_for_error()


async def test_files_go_as_multipart_or_as_json_data_urls() -> None:
    async with Harness(words) as h:
        form = await h.chat("see", files=[("a.txt", b"one"), ("b.md", b"# two")])
        inline = await h.chat("see", files=[("c.txt", b"three")], files_as="json")
        only_files = await h.chat(files=[("d.txt", b"four")])
    assert form.text == "<see><a.txt><b.md>"
    assert inline.text == "<see><c.txt>"
    assert only_files.text.startswith("<Please>")  # the server's prompt for bare uploads
    assert only_files.text.endswith("<d.txt>")


async def test_multipart_refuses_json_only_options() -> None:
    async with Harness(words) as h:
        with pytest.raises(ValueError, match="files_as='json'"):
            await h.chat("x", files=[("a.txt", b"a")], include_usage=True)


async def test_a_configured_api_key_is_sent_unless_headers_replace_it() -> None:
    async with Harness(words, api_key="sk-h") as h:
        assert (await h.chat("x")).ok
        refused = await h.chat("x", headers={"Authorization": "Bearer wrong"})
        assert refused.error is not None
        assert refused.error.type == "authentication_error"
        assert await h.models() == ["words"]


async def test_headers_reach_the_app() -> None:
    async with Harness(words) as h:
        result = await h.chat("x", headers={"X-Session-Id": "from-header"})
    assert result.session_id == "from-header"


async def test_the_workspace_is_temporary_unless_given(tmp_path: Path) -> None:
    async with Harness(words) as h:
        workspace = h.workspace
        assert workspace is not None
        assert workspace.is_dir()
    assert not workspace.exists()
    async with Harness(words, workspace=tmp_path / "w") as h:
        assert h.workspace == tmp_path / "w"


async def test_outside_its_block_the_harness_says_how_to_use_it() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await Harness(words).chat("x")


async def test_keepalive_comments_are_counted() -> None:
    @agent(model="slow")
    async def slow(turn: Turn) -> AsyncIterator[str]:
        yield "a"
        await anyio.sleep(0.05)
        yield "b"

    async with Harness(slow, sse_keepalive_s=0.01) as h:
        result = await h.chat("x", stream=True)
    assert result.text == "ab"
    assert result.keepalives >= 1


def test_a_failed_stream_parses_to_its_error_and_no_done() -> None:
    chunk = {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "par"}}]}
    error = {"error": {"message": "boom", "type": "server_error", "param": None, "code": 502}}
    body = f"data: {json.dumps(chunk)}\n\n: keep-alive\n\ndata: {json.dumps(error)}\n\n"
    headers = Headers({"Content-Type": "text/event-stream"})
    result = ChatResult.parse(200, headers, body.encode())
    assert (result.text, result.done, result.keepalives) == ("par", False, 1)
    assert result.error == ApiError("boom", "server_error", None, 502)
    assert not result.ok


async def test_the_fixture_keeps_each_workspace_under_tmp_path(
    nanobot_harness: HarnessFactory, tmp_path: Path
) -> None:
    async with nanobot_harness(words) as first, nanobot_harness(words, api_key="k") as second:
        assert (await first.chat("x")).ok
        assert (await second.chat("x")).ok
        assert first.workspace is not None
        assert second.workspace is not None
        assert first.workspace.parent == second.workspace.parent == tmp_path
        assert first.workspace != second.workspace


async def test_a_bad_setting_fails_on_entry_and_leaves_no_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A private temp dir: the shared /tmp also holds other runs' harness workspaces.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(NanobotError, match=r"api\.port"):
        async with Harness(words, port=-1):
            pass
    assert not os.listdir(tmp_path)
