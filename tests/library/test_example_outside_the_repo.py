"""examples/ as a user takes them: copied into a folder of their own, far from this repo."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nanobot_api
import nanobot_api.testing

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_the_example_test_passes_copied_into_an_empty_folder(tmp_path: Path) -> None:
    """No pyproject.toml, no conftest.py, no anyio_mode: only what the files say."""
    for name in ("custom_agent.py", "test_custom_agent.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.mark.parametrize("name", ["custom_agent.py", "test_custom_agent.py"])
def test_the_examples_import_only_exported_names(name: str) -> None:
    tree = ast.parse((EXAMPLES / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nanobot_api"):
            module = {"nanobot_api": nanobot_api, "nanobot_api.testing": nanobot_api.testing}
            assert node.module in module, f"{name} imports from {node.module}"
            for alias in node.names:
                assert alias.name in module[node.module].__all__, alias.name
