"""A new user's first minutes, replayed: clone, ``make serve``, the README's examples.

The repository is cloned into a scratch folder (its committed state, as a user gets
it), ``make serve`` sets it up from nothing and serves until ``/health`` answers,
every ``bash`` and ``python`` example of the README runs as written from the clone's
root (the only change: the port, a free one instead of 8900), and SIGINT stops it.
``HOME`` is the scratch folder, so nothing of the developer's ``~/.nanobot`` is seen.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.docs.test_docs import free_port, read_blocks

ROOT = Path(__file__).resolve().parents[2]
SETUP_BUDGET_S = 900  # a cold pip install on a loaded 2-core machine


def _pip_cache() -> str:
    # The clone's HOME is a scratch folder; pip's cache stays the machine's, so the
    # set-up measures installing, not downloading again what this machine has.
    configured = os.environ.get("PIP_CACHE_DIR")
    return configured or str(Path.home() / ".cache" / "pip")


@pytest.mark.slow
def test_a_fresh_clone_serves_the_readme_examples(tmp_path: Path) -> None:
    clone = tmp_path / "nanobot-api"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NANOBOT_", "PYTEST_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    # A user's PATH, without this test run's virtual environment on it.
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin]
    env |= {"HOME": str(tmp_path), "PATH": os.pathsep.join(path), "PIP_CACHE_DIR": _pip_cache()}
    log = (tmp_path / "make-serve.log").open("w")
    started = time.monotonic()
    server = subprocess.Popen(
        ["make", "serve", f"ARGS=--port {port}"],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # SIGINT to make and the server it started
    )
    try:
        _wait_for_health(port, server, tmp_path / "make-serve.log")
        setup_s = time.monotonic() - started
        output = (tmp_path / "make-serve.log").read_text()
        # Set-up shows progress rather than a minute of silence.
        assert "nanobot: installing nanobot-api" in output
        assert "Successfully installed" in output
        for block in read_blocks(clone / "README.md"):
            if block.lang not in ("bash", "python") or "not-run" in block.directives:
                continue
            _run_example(block.lang, block.body.replace("8900", str(port)), clone, env)
        print(f"fresh clone: make serve answered /health after {setup_s:.0f} s")
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)
        log.close()
    assert server.returncode in (0, 130, -signal.SIGINT), (tmp_path / "make-serve.log").read_text()[
        -2000:
    ]


def _wait_for_health(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SETUP_BUDGET_S
    while True:
        assert server.poll() is None, f"make serve stopped:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no /health:\n{log.read_text()[-3000:]}"
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)


def _run_example(lang: str, body: str, clone: Path, env: dict[str, str]) -> None:
    if lang == "bash":
        command = ["bash", "-eu", "-o", "pipefail", "-c", body]
    else:
        # The README's Python examples run with the clone's own environment.
        command = [str(clone / ".venv" / "bin" / "python"), "-c", body]
    done = subprocess.run(
        command, cwd=clone, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{body}\n{done.stdout}\n{done.stderr}"
    assert re.search(r"echo: ", done.stdout), f"{body}\nprinted:\n{done.stdout}"
