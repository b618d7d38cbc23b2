from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from nanobot_api.app.config import Config
from nanobot_api.testing.postgres import scratch_database


@pytest.fixture(name="config")
def _config(tmp_path: Path) -> Config:
    """Embedded defaults, with state in a fresh workspace."""
    return attrs.evolve(Config(), workspace=tmp_path / "workspace")


@pytest.fixture(name="storage_url", params=["sqlite", "postgres"])
async def _storage_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """``storage.url``: empty (SQLite files in the workspace), or the suite's one
    PostgreSQL database, emptied after the test."""
    if request.param == "sqlite":
        yield ""
        return
    url = request.getfixturevalue("shared_postgres_url")
    async with scratch_database(url):
        yield url
