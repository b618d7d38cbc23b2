"""`storage.url` as a user sets it: `nanobot serve` and the admin commands on PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from tests.acceptance.test_cli import free_port, run_nanobot, serving


@pytest.mark.parametrize(
    "url", ["mysql://admin:hunter2secret@db/x", "sqlite:///tmp/x.db", "just words"]
)
def test_a_storage_url_of_another_kind_is_one_line_naming_the_key(tmp_path: Path, url: str) -> None:
    for how in ("flag", "file"):
        args = ["--storage-url", url] if how == "flag" else []
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"storage": {"url": url}} if how == "file" else {}))
        result = run_nanobot("serve", "-c", str(config), *args, home=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "storage.url" in lines[0]
        assert "hunter2secret" not in result.stderr


def test_a_database_that_never_comes_up_stops_start_up_in_one_line(tmp_path: Path) -> None:
    """Retried for storage.connectRetryS, then exit 2; the password is never shown."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"storage": {"connectRetryS": 1.5}}))
    url = f"postgresql://nanobot:s3cretpass@127.0.0.1:{free_port()}/nanobot"
    began = time.monotonic()
    result = run_nanobot("serve", "-c", str(config), "--storage-url", url, home=tmp_path)
    assert result.returncode == 2
    assert 1.0 < time.monotonic() - began < 20
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach the database 127.0.0.1" in lines[0]
    assert "s3cretpass" not in result.stderr


@pytest.mark.slow
def test_serve_sessions_and_outbox_share_one_database(tmp_path: Path, postgres_url: str) -> None:
    """Turns served on PostgreSQL are what `nanobot sessions` reads from it, with the same
    --storage-url, from a workspace that holds no database file at all."""
    workspace = tmp_path / "ws"
    where = ["-w", str(workspace), "--storage-url", postgres_url]
    with serving(tmp_path, *where) as served:
        url = f"{served.origin}/v1/chat/completions"
        for session, text in (("alpha", "first words"), ("alpha", "second"), ("beta", "other")):
            body = {"messages": [{"role": "user", "content": text}], "session_id": session}
            requests.post(url, json=body, timeout=10).raise_for_status()
    assert served.returncode == 0, served.stderr
    assert not list(workspace.glob("*.sqlite3"))

    listed = run_nanobot("sessions", "list", *where, home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "api:alpha  2 turns" in listed.stdout
    shown = run_nanobot("sessions", "show", "api:alpha", *where, home=tmp_path)
    assert shown.stdout.index("first words") < shown.stdout.index("echo: second")
    outbox = run_nanobot("outbox", "list", *where, home=tmp_path)
    assert outbox.returncode == 0, outbox.stderr
    assert "The outbox is empty." in outbox.stdout
    # The environment variable names the database as well as the flag does.
    listed_env = run_nanobot(
        "sessions",
        "list",
        "-w",
        str(workspace),
        home=tmp_path,
        NANOBOT_STORAGE_URL=postgres_url,
    )
    assert "api:beta   1 turn" in listed_env.stdout
