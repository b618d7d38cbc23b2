"""`nanobot` as a user runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

NANOBOT = [sys.executable, "-m", "nanobot_api.main"]


def run_nanobot(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    env.pop("NANOBOT_CONFIG", None)
    return subprocess.run(
        [*NANOBOT, *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


@pytest.mark.parametrize(
    ("config", "flags", "expected"),
    [
        ({"api": {"port": "abc"}}, [], 'api.port: expected an integer 1-65535, got "abc"'),
        ({"api": {"bogus": 1}}, [], "api.bogus"),
        ({}, ["--host", "0.0.0.0"], "api.host"),
        ({}, ["--port", "99999"], "--port"),
        ("{broken", [], "config"),
    ],
)
def test_serve_with_bad_config_prints_one_line_and_exits_2(
    tmp_path: Path, config: object, flags: list[str], expected: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    result = run_nanobot("serve", "-c", str(path), *flags, home=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_a_missing_explicit_config_file_is_refused(tmp_path: Path) -> None:
    result = run_nanobot("serve", "-c", str(tmp_path / "nope.json"), home=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_on_defaults_announces_the_echo_agent_and_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("NANOBOT_CONFIG", None)
    server = subprocess.Popen(
        [*NANOBOT, "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.05)
        assert health.json() == {"status": "ok"}
        reply = requests.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        )
        assert reply.json()["model"] == "nanobot-echo"
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=15)
    assert server.returncode == 0
    assert "echo agent" in stderr
    assert "nanobot-echo" in stderr
