"""Access lines over a real socket: one per request, its request id on every line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from nanobot_api.adapters.observability.logs import (
    ACCESS_LOGGER,
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
)
from nanobot_api.app.config import Config
from nanobot_api.app.echo import EchoAgent
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.platforms import WEBHOOK_SECRET, Fail, FakePlatforms
from tests.subprocess_server import one_turn
from tests.upstream import Calls, ScriptedUpstream, Text

TEXT_LINE = re.compile(
    r"^\S+ \S+ INFO \[(?P<rid>[^\]]+)\] nanobot_api\.access: "
    r"(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>[\d.]+)ms "
    r"session=(?P<session>\S+) model=(?P<model>[\d.]+)ms tokens=(?P<tokens>\d+)$"
)


@pytest.fixture(name="lines")
def _lines() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What the package logs, written by the text and the JSON formatter."""
    text, js = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in ((text, TextFormatter()), (js, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        handlers.append(handler)
    package = logging.getLogger("nanobot_api")
    level = package.level
    package.setLevel(logging.INFO)
    for handler in handlers:
        package.addHandler(handler)
    try:
        yield text, js
    finally:
        for handler in handlers:
            package.removeHandler(handler)
        package.setLevel(level)


async def test_each_request_gets_one_access_line_with_its_id_session_and_tokens(
    config: Config, lines: tuple[io.StringIO, io.StringIO]
) -> None:
    text, js = lines
    async with (
        running_server(build(config, agent=EchoAgent())) as server,
        httpx2.AsyncClient(base_url=server.origin) as client,
    ):
        body = {"messages": [{"role": "user", "content": "hi"}], "session_id": "log\nforged"}
        refused = await client.post(
            "/v1/chat/completions", json=body, headers={"X-Request-ID": "r-1"}
        )
        body["session_id"] = "logged"
        ok = await client.post("/v1/chat/completions", json=body, headers={"X-Request-ID": "r-2"})
        missing = await client.get("/nowhere", headers={"X-Request-ID": "r-3"})
    assert (refused.status_code, ok.status_code, missing.status_code) == (400, 200, 404)
    access = [line for line in text.getvalue().splitlines() if ACCESS_LOGGER in line]
    parsed = [TEXT_LINE.match(line) for line in access]
    assert all(parsed), access
    found = [m.groupdict() for m in parsed if m]
    assert [(f["rid"], f["method"], f["path"], f["status"]) for f in found] == [
        ("r-1", "POST", "/v1/chat/completions", "400"),
        ("r-2", "POST", "/v1/chat/completions", "200"),
        ("r-3", "GET", "/nowhere", "404"),
    ]
    assert found[1]["session"] == "logged"
    records = [json.loads(line) for line in js.getvalue().splitlines()]
    entry = next(r for r in records if r["logger"] == ACCESS_LOGGER and r["request_id"] == "r-2")
    assert entry["status"] == 200
    assert entry["session"] == "logged"
    assert entry["tokens"] >= 0
    assert entry["duration_ms"] >= 0
    assert entry["time"].endswith("+00:00")


# A chat id the model chose, made to look like a line of its own in the server's log.
FORGED = "ops\n2026-01-01 00:00:00,000 WARNING [-] nanobot_api.access: GET /admin 200"
# How long the stand-in model takes to answer the turn's second call.
MODEL_S = 0.2
ANY_TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \[[^\]]+\] \S+: ")


@pytest.mark.parametrize("log_format", ["text", "json-flag", "json-config"])
async def test_nanobot_serve_logs_one_record_a_line_in_its_format_with_text_escaped(
    tmp_path: Path, log_format: str
) -> None:
    """`--log-format json` (or `api.logFormat`) makes every stderr line a JSON object; in
    either format a model-chosen chat id with a newline stays inside its own line, and
    the access line shows the turn's model time and the tokens the model reported."""
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        fake.fail("webhook", Fail(500))  # the send fails: its chat id is logged
        send = {"content": "deployed", "channel": "webhook", "chat_id": FORGED}
        # Two model calls: 7+3 and 20+9 tokens, the second taking MODEL_S at least.
        calls = Calls((("message", json.dumps(send)),), usage=(7, 3))
        up.add(calls, Text("done", usage=(20, 9), delay_s=MODEL_S))
        config: dict[str, object] = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "channels": {
                "webhook": {"enabled": True, "url": fake.webhook_url, "secret": WEBHOOK_SECRET}
            },
        }
        if log_format == "json-config":
            config["api"] = {"logFormat": "json"}
        flags = ("--log-format", "json") if log_format == "json-flag" else ()
        body = {"messages": [{"role": "user", "content": "tell ops"}], "session_id": "ops"}
        served = await one_turn(tmp_path, config, body, request_id="log-1", flags=flags)
    assert (served.answer.status_code, served.exit_code) == (200, 0)
    lines = served.stderr.splitlines()
    if log_format == "text":
        # Log records, and the start-up lines `nanobot serve` prints for a person.
        assert all(ANY_TEXT_LINE.match(line) or line.startswith("nanobot: ") for line in lines)
        (failure,) = [line for line in lines if "failed (attempt 1)" in line]
        assert "[log-1] nanobot_api.app.outbox: " in failure
        assert "webhook:ops\\n2026-01-01 00:00:00,000 WARNING" in failure
        (access_line,) = [line for line in lines if "[log-1] nanobot_api.access: " in line]
        found = TEXT_LINE.match(access_line)
        assert found is not None, access_line
        assert found["path"] == "/v1/chat/completions"
        assert found["status"] == "200"
        assert MODEL_S * 1000 <= float(found["model"]) <= float(found["ms"])
        assert int(found["tokens"]) == 39
        return
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("listening on" in r["message"] for r in records)
    (failure,) = [r for r in records if "failed (attempt 1)" in r["message"]]
    assert failure["request_id"] == "log-1"
    assert f"webhook:{FORGED} failed" in failure["message"]
    (access,) = [r for r in records if r["logger"] == ACCESS_LOGGER and r["request_id"] == "log-1"]
    assert (access["method"], access["path"], access["status"]) == (
        "POST",
        "/v1/chat/completions",
        200,
    )
    assert access["session"] == "ops"
    assert MODEL_S * 1000 <= access["model_ms"] <= access["duration_ms"]
    assert access["tokens"] == 39
