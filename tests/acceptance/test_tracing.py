"""Optional OpenTelemetry: with an OTLP endpoint set, a request is one trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from nanobot_api.adapters.observability.tracing import ENDPOINT_VARIABLES
from tests.local_http import serve_locally
from tests.platforms import WEBHOOK_SECRET, FakePlatforms
from tests.subprocess_server import Served, one_turn
from tests.upstream import Calls, ScriptedUpstream, Step, Text

pytestmark = pytest.mark.slow


class OtlpReceiver:
    """An OTLP/HTTP trace collector of the tests' own: keeps every span it receives."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, bytes, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource in export.resource_spans:
            for scoped in resource.scope_spans:
                for span in scoped.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    self.spans.append((span.name, span.trace_id, attributes))
        return web.Response(body=b"", content_type="application/x-protobuf")


async def _turn_with_a_tool_call(home: Path, env: dict[str, str]) -> Served:
    """One turn through `nanobot serve` (the model calls `message`, the webhook gets it,
    the turn commits), run with ``env`` and Python's import log (``-X importtime``) on."""
    send = json.dumps({"content": "deployed", "channel": "webhook", "chat_id": "ops"})
    steps: list[Step] = [Calls((("message", send),)), Text("traced")]
    async with ScriptedUpstream(steps) as up, FakePlatforms() as fake:
        webhook = {"enabled": True, "url": fake.webhook_url, "secret": WEBHOOK_SECRET}
        config = {
            "agents": {"defaults": {"provider": "local", "model": "m1"}},
            "providers": {"local": {"apiBase": up.base_url, "apiKey": "sk-x"}},
            "channels": {"webhook": webhook},
        }
        body = {"messages": [{"role": "user", "content": "go"}]}
        env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
        served = await one_turn(home, config, body, request_id="req-traced-1", env=env)
    assert (served.answer.status_code, served.exit_code) == (200, 0), served.stderr
    return served


def _imported(stderr: str) -> list[str]:
    """The modules a process imported, from its ``-X importtime`` lines."""
    return [
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]


async def test_a_request_is_one_trace_of_its_turn_model_tool_and_channel_calls_and_commit(
    tmp_path: Path,
) -> None:
    receiver = OtlpReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    runner, otlp_port = await serve_locally(app)
    try:
        otlp = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        served = await _turn_with_a_tool_call(tmp_path, otlp)
    finally:
        await runner.cleanup()
    assert f"traces: OpenTelemetry to http://127.0.0.1:{otlp_port}" in served.stderr
    # On, OpenTelemetry shows in the import log (what the test below relies on).
    assert "opentelemetry.sdk.trace" in _imported(served.stderr)
    (chat_trace,) = {t for name, t, _ in receiver.spans if name == "POST /v1/chat/completions"}
    in_trace = [(name, attrs) for name, t, attrs in receiver.spans if t == chat_trace]
    names = [name for name, _ in in_trace]
    # HTTP -> turn -> model calls -> the tool call and its channel delivery -> commit.
    assert {"turn", "tool message", "channel delivery", "store commit"} <= set(names)
    assert names.count("model call") == 2
    assert {attrs.get("nanobot.request_id") for _, attrs in in_trace} == {"req-traced-1"}


async def test_nanobot_serve_without_an_endpoint_imports_nothing_of_opentelemetry(
    tmp_path: Path,
) -> None:
    """Off and free: the extra installed, no OTLP endpoint (set empty, as an unset one),
    `nanobot serve` runs a turn with a tool call and a channel delivery, and its import
    log names no `opentelemetry` module (the module that would load it was imported)."""
    off = dict.fromkeys(ENDPOINT_VARIABLES, "")
    served = await _turn_with_a_tool_call(tmp_path, off)
    imported = _imported(served.stderr)
    assert "nanobot_api.adapters.observability.tracing" in imported
    assert "traces:" not in served.stderr
    assert [name for name in imported if "opentelemetry" in name] == []


def test_without_an_endpoint_nothing_of_opentelemetry_is_loaded(tmp_path: Path) -> None:
    """Off and free: with the extra installed but no OTLP endpoint, a turn through the
    app imports no OpenTelemetry module (span() is a shared no-op)."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from nanobot_api import create_app

        async def reply(turn):
            return "ok"

        async def main():
            app = create_app(reply, workspace={str(tmp_path / "ws")!r})
            body = {{"messages": [{{"role": "user", "content": "x"}}]}}
            async with app.test_app():
                answer = await app.test_client().post("/v1/chat/completions", json=body)
                assert answer.status_code == 200, answer.status_code
            print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
