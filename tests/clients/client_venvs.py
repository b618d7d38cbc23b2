"""Virtual environments for client libraries that cannot live beside the project's own
dependencies (LlamaIndex wants ``openai<3``; the project's other clients want 3.x).

Each is made once per machine from PyPI by pip, under the user's cache folder, keyed by
the Python version and the exact requirements, so a changed pin makes a new one and a
fresh clone's ``make test`` makes its own (about a minute, once). A lock keeps two test
runs from building the same one at once; a half-built one is never used (it is built
aside and renamed into place when pip has finished).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# pip's own limit: a venv not built in this time fails the test that asked for it.
BUILD_TIMEOUT_S = 600


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nanobot-api" / "client-venvs"


def client_venv(name: str, requirements: Sequence[str]) -> Path:
    """The Python interpreter of a venv holding exactly ``requirements`` (pip pins)."""
    key = "\n".join([sys.version, *sorted(requirements)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    home = root / f"{name}-{digest}"
    python = home / "bin" / "python"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not python.exists():
            _build(home, requirements)
    return python


def _build(home: Path, requirements: Sequence[str]) -> None:
    aside = home.with_name(home.name + ".building")
    shutil.rmtree(aside, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(aside)], check=True)
    pip = [str(aside / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "--quiet", *requirements],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(aside, ignore_errors=True)
        raise RuntimeError(f"pip could not install {list(requirements)}:\n{done.stderr[-2000:]}")
    # A venv keeps working when moved as a whole: its interpreter finds pyvenv.cfg
    # beside itself, and only console scripts (not used here) name the old path.
    aside.rename(home)
