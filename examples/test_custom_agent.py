"""The example agent, tested through the real HTTP app in process (no server, no socket).

Copy it beside custom_agent.py and run ``pytest``: the ``nanobot_harness`` fixture comes
with nanobot-api, and anyio (a dependency) runs the async tests on asyncio.
"""

from __future__ import annotations

import pytest
from custom_agent import counter

from nanobot_api.testing import HarnessFactory

# Marked here rather than left to a pytest setting, so the file works in any folder.
pytestmark = pytest.mark.anyio


async def test_counter_streams_and_counts_turns_per_session(
    nanobot_harness: HarnessFactory,
) -> None:
    async with nanobot_harness(counter) as h:
        first = await h.chat("hello there", session_id="alice")
        assert first.ok
        assert first.text == "hello there (turn 1 of session alice)"
        assert first.usage is not None
        assert first.usage.total_tokens == 3

        streamed = await h.chat("again", session_id="alice", stream=True)
        assert streamed.done
        assert [c["choices"][0]["delta"].get("content") for c in streamed.chunks[1:3]] == [
            "again ",
            "(turn 2 of session alice)",
        ]

        other = await h.chat("hi", session_id="bob")
        assert other.text == "hi (turn 1 of session bob)"


async def test_counter_is_served_under_its_own_model_id(nanobot_harness: HarnessFactory) -> None:
    async with nanobot_harness(counter) as h:
        assert await h.models() == ["counter"]
        wrong = await h.chat("hi", model="gpt-4o")
        assert wrong.status == 400
        assert wrong.error is not None
        assert wrong.error.message == "Only configured model 'counter' is available"
