"""Optional OpenTelemetry: with an OTLP endpoint set, a request is one trace."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.local_http import serve_locally
from tests.subprocess_server import wait_until_up
from tests.upstream import ScriptedUpstream, Text

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_request_is_one_trace_of_its_turn_model_call_and_commit(tmp_path: Path) -> None:
    receiver = OtlpReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    runner, otlp_port = await serve_locally(app)
    try:
        async with ScriptedUpstream([Text("traced")]) as up:
            config = {
                "agents": {"defaults": {"provider": "local", "model": "m1"}},
                "providers": {"local": {"apiBase": up.base_url, "apiKey": "sk-x"}},
            }
            (tmp_path / "config.json").write_text(json.dumps(config))
            port = _free_port()
            argv = [sys.executable, "-m", "nanobot_api.main", "serve", "-p", str(port)]
            argv += ["-c", str(tmp_path / "config.json"), "-w", str(tmp_path / "ws")]
            env = {
                **os.environ,
                "HOME": str(tmp_path),
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
                "OTEL_BSP_SCHEDULE_DELAY": "50",
            }
            process = await anyio.open_process(argv, env=env, stdout=subprocess.DEVNULL)
            try:
                await wait_until_up(f"http://127.0.0.1:{port}/health")
                async with httpx2.AsyncClient(timeout=30) as client:
                    answer = await client.post(
                        f"http://127.0.0.1:{port}/v1/chat/completions",
                        json={"messages": [{"role": "user", "content": "go"}]},
                        headers={"X-Request-ID": "req-traced-1"},
                    )
                    assert answer.status_code == 200
            finally:
                process.send_signal(signal.SIGTERM)
                assert process.stderr is not None
                logged = b"".join([chunk async for chunk in process.stderr]).decode()
                assert await process.wait() == 0, logged
    finally:
        await runner.cleanup()
    assert f"traces: OpenTelemetry to http://127.0.0.1:{otlp_port}" in logged
    (chat_trace,) = {t for name, t, _ in receiver.spans if name == "POST /v1/chat/completions"}
    in_trace = [(name, attrs) for name, t, attrs in receiver.spans if t == chat_trace]
    assert {"turn", "model call", "store commit"} <= {name for name, _ in in_trace}
    assert {attrs.get("nanobot.request_id") for _, attrs in in_trace} == {"req-traced-1"}
