"""Access lines over a real socket: one per request, its request id on every line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

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
