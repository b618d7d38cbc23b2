"""create_app and serve: configuration by keyword, checked like config.json; a real serve()."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests

from nanobot_api import NanobotError, Turn, create_app
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.library import app_workspace
from nanobot_api.testing import Harness


async def shout(turn: Turn) -> str:
    return turn.text.upper()


def test_a_plain_function_is_served_under_its_name() -> None:
    app = create_app(shout)
    assert app.name == "nanobot_api"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": -1}, "api.port: expected an integer 0-65535, got -1"),
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


LISTENING = re.compile(r"nanobot: listening on (http://127\.0\.0\.1:(\d+))/v1")


@pytest.mark.slow
def test_serve_on_port_0_announces_its_port_and_keeps_its_own_workspace(tmp_path: Path) -> None:
    """serve() binds the free port it announces, and keeps its sessions in a workspace of
    its own, apart from ``nanobot serve``'s ~/.nanobot/workspace; SIGINT stops it."""
    script = textwrap.dedent(
        """
        from nanobot_api import serve

        async def shout(turn):
            return turn.text.upper()

        serve(shout, port=0)
        """
    )
    server = subprocess.Popen(
        [sys.executable, "-c", script],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)},
    )
    assert server.stderr is not None
    try:
        seen = []
        for line in server.stderr:
            seen.append(line)
            if announced := LISTENING.search(line):
                break
        else:
            raise AssertionError("".join(seen))
        origin = announced[1]
        answer = requests.post(
            f"{origin}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert answer.json()["choices"][0]["message"]["content"] == "HI"
        assert answer.json()["model"] == "shout"
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert int(announced[2]) != 0
    assert "nanobot: model shout" in "".join(seen)
    own = tmp_path / ".nanobot" / "apps" / "shout"
    assert f"nanobot: storage: SQLite in {own} " in "".join(seen)
    assert (own / "sessions.sqlite3").is_file()
    assert not (tmp_path / ".nanobot" / "workspace").exists()


def test_an_app_workspace_is_a_safe_folder_name() -> None:
    home = Path("/home/u")
    assert app_workspace("counter", home) == home / ".nanobot" / "apps" / "counter"
    assert app_workspace("acme/large:v2", home) == home / ".nanobot" / "apps" / "acme_large_v2"
    assert app_workspace("..", home) == home / ".nanobot" / "apps" / "agent"
