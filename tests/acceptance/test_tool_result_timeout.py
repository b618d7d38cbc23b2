"""A turn paused on a client tool and left unanswered past ``api.toolResultTimeoutS``,
over a real socket: the late result is refused, the pause is closed in the stored
history with the result "not returned by the client", and a new message runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from openai import BadRequestError

from nanobot_api.domain.pauses import NOT_RETURNED
from tests.acceptance.test_client_requests import MODEL, served, stored
from tests.client_tools import WEATHER
from tests.upstream import Calls, ScriptedUpstream, Text


async def test_a_late_tool_result_is_refused_and_the_pause_closed(tmp_path: Path) -> None:
    call = ("get_weather", json.dumps({"city": "Paris"}))
    async with (
        ScriptedUpstream() as up,
        served(tmp_path, up, tool_result_timeout_s=0.5) as client,
    ):
        up.add(Calls((call,)), Text("Hello again."))
        question: Any = [{"role": "user", "content": "weather in Paris?"}]
        paused = await client.chat.completions.create(
            model=MODEL, messages=question, tools=[WEATHER], extra_body={"session_id": "t"}
        )
        assert paused.choices[0].finish_reason == "tool_calls"
        (tool_call,) = paused.choices[0].message.tool_calls or []
        await anyio.sleep(1.0)
        with pytest.raises(BadRequestError) as refused:
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "tool", "tool_call_id": tool_call.id, "content": "sunny"}],
                tools=[WEATHER],
                extra_body={"session_id": "t"},
            )
        assert tool_call.id in str(refused.value)
        assert "expired" in str(refused.value).lower()
        assert len(up.received) == 1  # the late result reached no model
        answer = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello?"}],
            tools=[WEATHER],
            extra_body={"session_id": "t"},
        )
        assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == (
            "Hello again.",
            "stop",
        )
        sent = up.received[1].messages
        assert [m["role"] for m in sent[-3:]] == ["assistant", "tool", "user"]
        assert (sent[-2]["tool_call_id"], sent[-2]["content"]) == (tool_call.id, NOT_RETURNED)
    first, second = await stored(tmp_path, "t")
    assert first.paused_at is None
    roles = [(m.role, m.tool_call_id, m.content) for m in first.messages]
    assert roles[-1] == ("tool", tool_call.id, NOT_RETURNED)
    assert [m.role for m in second.messages] == ["user", "assistant"]
