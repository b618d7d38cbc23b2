"""The first hour of a new user, through the installed ``nanobot`` command itself.

Each test is one stumble a new user met once: a command that should answer, a flag
that should exist, a mistake that should be named with its fix.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import pytest
import requests

# The console script pip installed beside this interpreter, as a user types it.
NANOBOT = str(Path(sys.executable).parent / "nanobot")
LISTENING = re.compile(r"listening on (http://[^:/]+:(\d+))/v1")
KEY = "sk-first-hour-0123456789"


def nanobot(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NANOBOT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_environ(home, env),
        check=False,
    )


def _environ(home: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANOBOT_")}
    return {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1", **(extra or {})}


@contextmanager
def serving(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``nanobot serve --port 0 ARGS``; yields the origin it announced, then SIGINTs it."""
    server = subprocess.Popen(
        [NANOBOT, "serve", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=_environ(home, env),
    )
    assert server.stderr is not None
    try:
        seen = []
        for line in server.stderr:
            seen.append(line)
            if found := LISTENING.search(line):
                break
        else:
            raise AssertionError("serve never said where it listens:\n" + "".join(seen))
        assert int(found[2]) != 0
        yield found[1]
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("nanobot: ")
    return line


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    done = nanobot("--version", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"nanobot-api {version('nanobot-api')}"


def test_serve_help_shows_every_default(tmp_path: Path) -> None:
    shown = " ".join(nanobot("serve", "--help", home=tmp_path).stdout.split())
    for default in (
        "(default: 127.0.0.1)",
        "(default: 8900)",
        "(default: 120)",
        "~/.nanobot/workspace",
        "~/.nanobot/config.json",
        "$NANOBOT_API_KEY",
        "--api-key",
    ):
        assert default in shown


@pytest.mark.slow
def test_port_0_serves_on_the_free_port_it_announces(tmp_path: Path) -> None:
    with serving(tmp_path) as origin:
        assert requests.get(f"{origin}/health", timeout=5).json() == {"status": "ok"}
        page = requests.get(f"{origin}/", timeout=5)  # the chat page, no longer a 404
        assert page.status_code == 200
        assert "<title>nanobot chat</title>" in page.text


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "variable"])
def test_an_api_key_from_the_flag_or_the_variable_needs_no_config_file(
    tmp_path: Path, how: str
) -> None:
    flags = ("--api-key", KEY) if how == "flag" else ()
    env = {"NANOBOT_API_KEY": KEY} if how == "variable" else {}
    # A non-loopback bind is refused without a key; with one it serves.
    with serving(tmp_path, "--host", "0.0.0.0", *flags, env=env) as announced:
        origin = announced.replace("0.0.0.0", "127.0.0.1")
        assert requests.get(f"{origin}/v1/models", timeout=5).status_code == 401
        keyed = {"Authorization": f"Bearer {KEY}"}
        assert requests.get(f"{origin}/v1/models", headers=keyed, timeout=5).status_code == 200


@pytest.mark.slow
def test_sessions_show_takes_the_bare_session_id(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    with serving(tmp_path, "-w", str(workspace)) as origin:
        for text in ("hello", "again"):
            body = {"messages": [{"role": "user", "content": text}], "session_id": "my-session"}
            answer = requests.post(f"{origin}/v1/chat/completions", json=body, timeout=10)
            answer.raise_for_status()
        # The echo agent shows that the server remembered the first turn.
        assert answer.json()["choices"][0]["message"]["content"] == (
            'echo: again (turn 2; earlier: "hello")'
        )

    for key in ("my-session", "api:my-session"):
        shown = nanobot("sessions", "show", key, "-w", str(workspace), home=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("--- turn 1 ---\nuser: hello\nassistant: echo: hello\n")


def test_a_mistyped_workspace_is_named_and_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "wrokspace"
    for args in (("sessions", "list"), ("sessions", "show", "x"), ("outbox", "list")):
        line = one_line_error(nanobot(*args, "-w", str(typo), home=tmp_path))
        assert f"{typo}: no such workspace" in line
    assert not typo.exists()


def test_reading_an_unused_workspace_creates_no_database(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    listed = nanobot("sessions", "list", "-w", str(workspace), home=tmp_path)
    assert (listed.returncode, listed.stdout) == (0, "No sessions.\n")
    outbox = nanobot("outbox", "list", "-w", str(workspace), home=tmp_path)
    assert (outbox.returncode, outbox.stdout) == (0, "The outbox is empty.\n")
    retried = one_line_error(
        nanobot("outbox", "retry", "ev-1", "-w", str(workspace), home=tmp_path)
    )
    assert "No outbox event with id 'ev-1'" in retried
    assert list(workspace.iterdir()) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"api": {"apikey": "x"}}, 'api.apikey: unknown key (did you mean "apiKey"?)'),
        (
            {"providers": {"openai": {"apiBase": "https://api.openai.com/v1"}}},
            "agents.defaults.model: expected the model to ask providers.openai for",
        ),
    ],
)
def test_config_mistakes_are_one_line_naming_the_fix(
    tmp_path: Path, config: object, expected: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert expected in one_line_error(nanobot("serve", "-c", str(path), home=tmp_path))


@pytest.mark.slow
def test_the_only_configured_provider_is_used(tmp_path: Path) -> None:
    provider = {"apiBase": "http://127.0.0.1:9/v1", "apiKey": "sk-x"}
    config = {"agents": {"defaults": {"model": "gpt-4o-mini"}}, "providers": {"openai": provider}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with serving(tmp_path, "-c", str(path)) as origin:
        models = requests.get(f"{origin}/v1/models", timeout=5).json()
    assert [model["id"] for model in models["data"]] == ["gpt-4o-mini"]
