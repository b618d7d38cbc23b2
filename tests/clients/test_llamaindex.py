"""LlamaIndex's OpenAILike: chat with a system prompt, a streamed chat, two remembered
turns, a structured prediction and a FunctionAgent's tool round trip.

LlamaIndex runs in a venv of its own (see ``client_venvs.py``), as a script whose
answers come back as JSON, against the live server of this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.clients.client_venvs import client_venv
from tests.clients.conftest import MODEL, Live

# Exact pins: the venv is made again only when these change.
REQUIREMENTS = (
    "llama-index-core==0.14.25",
    "llama-index-llms-openai==0.8.3",
    "llama-index-llms-openai-like==0.8.1",
)
SCRIPT = Path(__file__).with_name("llamaindex_client.py")


@pytest.fixture(name="llamaindex", scope="session")
def _llamaindex() -> Path:
    return client_venv("llamaindex", REQUIREMENTS)


@pytest.mark.slow
async def test_llamaindex_openai_like(live: Live, llamaindex: Path) -> None:
    done = await anyio.run_process(
        [str(llamaindex), str(SCRIPT), live.base_url, MODEL], check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = json.loads(done.stdout)
    assert seen["plain"] == "echo: hello (user messages: 1)"
    assert live.model.systems()[0].endswith("for this turn:\nTalk like a pirate.")
    # Joined: how many pieces depends on the upstream's reads (one read, one delta).
    assert "".join(seen["pieces"]) == "echo: again (user messages: 2)"  # history kept
    # A forced tool (its function-calling program) is the structured answer.
    assert seen["forecast"] == {"city": "Paris", "celsius": 0}
    # The agent ran the tool the model called (streamed in pieces) and sent its result.
    assert seen["agent"] == "The tool answered: sunny in Paris"
    tool_results = [
        m for body in live.model.received for m in body["messages"] if m["role"] == "tool"
    ]
    assert [m["content"] for m in tool_results] == ["sunny in Paris"]
