from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from nanobot_api.app.config import Config


@pytest.fixture(name="config")
def _config(tmp_path: Path) -> Config:
    """Embedded defaults, with state in a fresh workspace."""
    return attrs.evolve(Config(), workspace=tmp_path / "workspace")
