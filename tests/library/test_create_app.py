"""create_app and serve: configuration by keyword, checked like config.json; a real serve()."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests

from nanobot_api import NanobotError, Turn, create_app
from nanobot_api.app.config import Config
from nanobot_api.testing import Harness


async def shout(turn: Turn) -> str:
    return turn.text.upper()


def test_a_plain_function_is_served_under_its_name() -> None:
    app = create_app(shout)
    assert app.name == "nanobot_api"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 0}, "api.port: expected an integer 1-65535, got 0"),
        ({"timeout": "abc"}, 'api.timeout: expected a number > 0, got "abc"'),
        ({"host": "0.0.0.0"}, "api.host: binding 0.0.0.0 needs api.apiKey"),
        ({"history": "all"}, 'api.history: expected "reject" or "latest", got "all"'),
    ],
)
def test_a_bad_keyword_value_is_refused_like_a_bad_config_file(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(NanobotError) as refused:
        create_app(shout, **overrides)
    assert refused.value.message.startswith(message)


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="'max_file_size'"):
        create_app(shout, max_file_size=3)


async def test_keywords_override_the_given_config(tmp_path: Path) -> None:
    config = attrs.evolve(Config(), api=attrs.evolve(Config().api, api_key="from-config"))
    async with Harness(shout, config, max_file_mb=1, workspace=tmp_path) as h:
        assert h.workspace == tmp_path
        assert (await h.chat("hi")).text == "HI"  # the harness sends the config's key
        refused = await h.chat("hi", headers={"Authorization": "Bearer other"})
        assert refused.status == 401
        big = await h.chat("x", files=[("big.txt", b"a" * (1024 * 1024 + 1))], files_as="json")
        assert big.status == 413
        assert big.error is not None
        assert big.error.message == "File 'big.txt' exceeds 1MB limit"


async def test_values_of_the_given_config_are_kept_as_they_are(tmp_path: Path) -> None:
    """A key that holds "${...}" once expanded (or set in code) is not expanded again
    when a keyword overrides another field."""
    key = "sk-${NOT_A_VARIABLE}"
    config = attrs.evolve(Config(), api=attrs.evolve(Config().api, api_key=key))
    async with Harness(shout, config, timeout=30, workspace=tmp_path) as h:
        assert (await h.chat("hi")).text == "HI"  # sent with the key exactly as given
        assert (await h.chat("hi", headers={"Authorization": "Bearer sk-"})).status == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_answers_until_sigint_then_exits_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    script = textwrap.dedent(
        f"""
        from nanobot_api import serve

        async def shout(turn):
            return turn.text.upper()

        serve(shout, port={port}, workspace={str(tmp_path)!r})
        """
    )
    server = subprocess.Popen(
        [sys.executable, "-c", script],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "serve() did not start"
                time.sleep(0.05)
        answer = requests.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert answer.json()["choices"][0]["message"]["content"] == "HI"
        assert answer.json()["model"] == "shout"
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert "nanobot: model shout" in stderr
    assert f"nanobot: listening on http://127.0.0.1:{port}/v1" in stderr
