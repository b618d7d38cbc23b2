"""A live server in front of the stand-in model, for every client library's tests.

Each test gets a fresh server (and workspace) on a free port; a client names its
session the way its users would (an ``X-Session-Id`` header set on the client, or
``session_id`` in the body), so the tests of one module never share history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest

from nanobot_api.app.config import (
    AgentDefaults,
    AgentsConfig,
    ApiConfig,
    Config,
    ProviderConfig,
)
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.clients.standin import StandInModel

MODEL = "standin-model"
SERVER_PROMPT = "You are the server's agent."


@attrs.frozen
class Live:
    """Where the server answers, and the stand-in model behind it."""

    base_url: str
    model: StandInModel


@asynccontextmanager
async def serving(workspace: Path, api: ApiConfig) -> AsyncIterator[Live]:
    async with StandInModel() as model:
        config = Config(
            agents=AgentsConfig(AgentDefaults(model=MODEL, system_prompt=SERVER_PROMPT)),
            providers={"custom": ProviderConfig(api_base=model.base_url, api_key="sk-standin")},
            workspace=workspace,
            api=api,
        )
        async with running_server(build(config)) as server:
            yield Live(server.base_url, model)


@pytest.fixture(name="live")
async def _live(tmp_path: Path) -> AsyncIterator[Live]:
    async with serving(tmp_path / "ws", ApiConfig()) as live:
        yield live


@pytest.fixture(name="live_latest")
async def _live_latest(tmp_path: Path) -> AsyncIterator[Live]:
    """The server in ``api.history = "latest"`` mode, for clients that resend the whole
    conversation (smolagents' agents)."""
    async with serving(tmp_path / "ws", ApiConfig(history="latest")) as live:
        yield live
