"""The Makefile's set-up as a new user meets it: the wrong Python, a broken ``.venv``.

The Makefile is copied into a scratch folder, so these tests never touch the
project's own ``.venv``. (A whole fresh-clone set-up is tests/acceptance/test_fresh_clone.py.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def make(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fake_python(path: Path, version: str) -> Path:
    """An interpreter that only says it is ``version`` and fails everything else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "Python {version}"\nexit 1\n')
    path.chmod(0o755)
    return path


@pytest.fixture(name="clone")
def _clone(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path)
    (tmp_path / "pyproject.toml").write_text("")
    return tmp_path


def test_a_too_old_python_is_one_line_naming_the_fix(clone: Path) -> None:
    old = fake_python(clone / "old" / "python3", "3.9.2")
    done = make(clone, "serve", f"PYTHON={old}")
    assert done.returncode != 0
    first = done.stderr.splitlines()[0]
    assert first == (
        f"nanobot: make needs Python >= 3.11, but {old} is Python 3.9.2; "
        "name another: make PYTHON=python3.12 ..."
    )
    assert not (clone / ".venv").exists()


def test_a_venv_of_another_python_is_planned_again_with_its_install(clone: Path) -> None:
    fake_python(clone / ".venv" / "bin" / "python", "3.9.2")
    (clone / ".venv" / ".installed").touch()
    planned = make(clone, "-n", "serve", f"PYTHON={sys.executable}")
    assert planned.returncode == 0, planned.stderr
    assert "making it again" in planned.stdout
    assert f"{sys.executable} -m venv .venv" in planned.stdout
    assert 'pip install --progress-bar off -e ".[dev]"' in planned.stdout


@pytest.mark.slow
def test_a_venv_of_another_python_is_made_again(clone: Path) -> None:
    fake_python(clone / ".venv" / "bin" / "python", "3.9.2")
    done = make(clone, ".venv/bin/python", f"PYTHON={sys.executable}")
    assert done.returncode == 0, done.stderr
    assert "nanobot: .venv was made by another Python" in done.stdout
    version = subprocess.run(
        [clone / ".venv" / "bin" / "python", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith("Python 3.")
