"""The pytest plugin of nanobot-api (entry point ``pytest11``): the ``nanobot_harness`` fixture.

    async def test_echo(nanobot_harness) -> None:
        async with nanobot_harness(my_agent, timeout=5) as h:
            assert (await h.chat("hi")).text == "..."

The fixture is a factory of :class:`~nanobot_api.testing.Harness`, so one test may
run several apps (different agents or settings); each keeps its workspace under the
test's ``tmp_path``, where it can be inspected after a failure. Tests must run on
asyncio (Quart's loop), e.g. with anyio's plugin and ``anyio_backend = "asyncio"``.
Disable the plugin with ``-p no:nanobot_api``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from nanobot_api.app.config import Config
    from nanobot_api.app.wiring.library import AgentLike
    from nanobot_api.testing.in_process import Harness, HarnessFactory


@pytest.fixture(name="nanobot_harness")
def _nanobot_harness(tmp_path: Path) -> HarnessFactory:
    """Makes Harness objects whose workspaces live under this test's ``tmp_path``."""
    # Imported here so that merely having nanobot-api installed costs pytest nothing.
    from nanobot_api.testing.in_process import Harness

    numbers = itertools.count(1)

    def make(agent: AgentLike, config: Config | None = None, **overrides: Any) -> Harness:
        overrides.setdefault("workspace", tmp_path / f"nanobot-{next(numbers)}")
        return Harness(agent, config, **overrides)

    return make
