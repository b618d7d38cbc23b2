"""What an operator's tools see: health probes and a Prometheus scrape, over a socket."""

from __future__ import annotations

import asyncio
import base64
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx2
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.acceptance.test_channels import call, configured
from tests.platforms import Fail, FakePlatforms, Hold
from tests.subprocess_server import one_turn
from tests.upstream import Calls, ScriptedUpstream, Status, Step, Text


def _with_upstream(config: Config, upstream: ScriptedUpstream, **api: object) -> Config:
    return attrs.evolve(
        config,
        api=attrs.evolve(config.api, **api),
        agents=AgentsConfig(AgentDefaults(model="MiniMax-M2.7")),
        providers={"custom": ProviderConfig(api_base=upstream.base_url, api_key="sk-up")},
    )


@asynccontextmanager
async def _client(config: Config) -> AsyncIterator[httpx2.AsyncClient]:
    async with (
        running_server(build(config)) as server,
        httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
    ):
        yield client


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by Prometheus' own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_the_health_probes_answer_without_a_key(config: Config) -> None:
    config = attrs.evolve(config, api=attrs.evolve(config.api, api_key="sk-operations-key"))
    async with _client(config) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        metrics = await client.get("/metrics")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"storage": "ok"}}
    assert metrics.status_code == 401  # /metrics follows the key rules


def _guides_scrape_config() -> dict[str, Any]:
    """The Prometheus job the operations guide shows."""
    guide = (Path(__file__).parents[2] / "docs/how-to/operations.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", guide, re.S) if "scrape_configs" in b]
    (job,) = yaml.safe_load(block)["scrape_configs"]
    return dict(job)


async def test_the_guides_scrape_config_reads_a_keyed_servers_metrics(
    config: Config, tmp_path: Path
) -> None:
    """The guide's job, followed as Prometheus follows it: its path, its bearer
    credentials from the file it names (here a copy in tmp_path), its target's host."""
    job = _guides_scrape_config()
    auth = job["authorization"]
    assert auth["type"] == "Bearer"
    key_file = tmp_path / Path(auth["credentials_file"]).name
    key_file.write_text("sk-scrape-key-0123456789\n")
    key = key_file.read_text().strip()  # Prometheus trims the file's line end too
    (target,) = job["static_configs"][0]["targets"]
    host = target.rsplit(":", 1)[0]
    config = attrs.evolve(config, api=attrs.evolve(config.api, api_key=key))
    async with running_server(build(config)) as server:
        url = f"http://{host}:{server.port}{job['metrics_path']}"
        async with httpx2.AsyncClient(timeout=30) as client:
            scrape = await client.get(url, headers={"Authorization": f"Bearer {key}"})
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(scrape.text)}
    assert {"nanobot_http_requests", "nanobot_turns_in_flight"} <= families


@asynccontextmanager
async def _migrated_by_a_newer_version(config: Config) -> AsyncIterator[None]:
    """While the block runs, the storage looks migrated by a newer nanobot-api: one more
    migration recorded (PostgreSQL), a higher schema version (the sessions file)."""
    url = config.storage.url
    if url:
        async with PostgresDatabase(url) as db:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO nanobot_schema (name) VALUES ('from-newer')")
            try:
                yield
            finally:
                async with db.transaction() as conn:
                    await conn.execute("DELETE FROM nanobot_schema WHERE name = 'from-newer'")
        return
    conn = sqlite3.connect(config.workspace / "sessions.sqlite3", isolation_level=None)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        conn.execute(f"PRAGMA user_version={version + 1}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA user_version={version}")
    finally:
        conn.close()


async def test_readiness_is_503_while_another_version_has_migrated_the_storage(
    config: Config, storage_url: str
) -> None:
    """Ready means the storage is reachable and migrated to this version's schema."""
    config = attrs.evolve(config, storage=attrs.evolve(config.storage, url=storage_url))
    async with _client(config) as client:
        before = await client.get("/health/ready")
        async with _migrated_by_a_newer_version(config):
            during = await client.get("/health/ready")
        after = await client.get("/health/ready")
    assert (before.status_code, during.status_code, after.status_code) == (200, 503, 200)
    assert during.json() == {
        "status": "unavailable",
        "checks": {"storage": "unavailable (SchemaMismatch)"},
    }


async def test_a_scrape_counts_turns_model_calls_and_uploads_and_names_nothing_private(
    config: Config,
) -> None:
    async with (
        ScriptedUpstream([Text("hello there")]) as up,
        _client(_with_upstream(config, up)) as client,
    ):
        before = _samples((await client.get("/metrics")).text)
        note = base64.b64encode(b"secret notes").decode()
        body = {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "private words"},
                        {
                            "type": "file",
                            "file": {
                                "filename": "n.txt",
                                "file_data": f"data:text/plain;base64,{note}",
                            },
                        },
                    ],
                }
            ],
            "session_id": "secret-session",
        }
        answer = await client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200
        scrape = await client.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain")
    after = _samples(scrape.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("nanobot_turn_duration_seconds_count", outcome="ok") == 1
    assert grew("nanobot_turn_time_to_first_token_seconds_count") == 1
    assert grew("nanobot_model_calls_total", status="ok") == 1
    assert grew("nanobot_model_call_duration_seconds_count") == 1
    assert grew("nanobot_session_wait_seconds_count") == 1
    assert grew("nanobot_uploads_total", kind="text") == 1
    assert after[("nanobot_turns_in_flight", ())] == 0
    assert after[("nanobot_outbox_events", (("status", "pending"),))] == 0
    assert after[("nanobot_outbox_oldest_pending_age_seconds", ())] == 0
    for private in ("secret-session", "private words", "secret notes", "sk-up"):
        assert private not in scrape.text


async def test_requests_are_counted_by_route_method_and_status(config: Config) -> None:
    key = "sk-operations-key"
    auth = {"Authorization": f"Bearer {key}"}
    config = attrs.evolve(config, api=attrs.evolve(config.api, api_key=key))
    async with _client(config) as client:
        before = _samples((await client.get("/metrics", headers=auth)).text)
        assert (await client.get("/health/live")).status_code == 200
        for _ in range(2):
            bad = await client.post("/v1/chat/completions", json={"messages": []}, headers=auth)
            assert bad.status_code == 400
        assert (
            await client.get("/v1/models", headers={"Authorization": "Bearer no"})
        ).status_code == 401
        assert (await client.get("/v1/no-such-thing", headers=auth)).status_code == 404
        scrape = await client.get("/metrics", headers=auth)
    assert key not in scrape.text
    after = _samples(scrape.text)

    def grew(route: str, method: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        series = ("nanobot_http_requests_total", labels)
        return after.get(series, 0.0) - before.get(series, 0.0)

    assert grew("/health/live", "GET", "200") == 1
    assert grew("/v1/chat/completions", "POST", "400") == 2
    assert grew("/v1/models", "GET", "401") == 1
    assert grew("unmatched", "GET", "404") == 1
    assert grew("/metrics", "GET", "200") == 1  # the first scrape (a scrape counts after it)
    assert grew("/v1/chat/completions", "POST", "200") == 0


async def test_a_scrape_shows_a_failed_model_call_and_a_wait_for_a_busy_session(
    config: Config,
) -> None:
    gate = asyncio.Event()
    steps: list[Step] = [Status(400, "bad request"), Text("first second", gate=gate), Text("after")]
    async with ScriptedUpstream(steps) as up, _client(_with_upstream(config, up)) as client:
        before = _samples((await client.get("/metrics")).text)
        failed = await client.post("/v1/chat/completions", json=_ask("fails"))
        assert failed.status_code == 502

        async def turn(body: dict[str, object]) -> None:
            answer = await client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200

        async with anyio.create_task_group() as group:
            group.start_soon(turn, _ask("slow", stream=True))
            await up.wait_received(2)
            group.start_soon(turn, _ask("behind"))
            await anyio.sleep(0.3)  # the session is busy: the second turn waits
            during = _samples((await client.get("/metrics")).text)
            gate.set()
        after = _samples((await client.get("/metrics")).text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert during[("nanobot_turns_in_flight", ())] == 2  # the running one, the one behind it
    assert grew("nanobot_model_calls_total", status="error") == 1
    assert grew("nanobot_model_calls_total", status="ok") == 2
    assert grew("nanobot_turn_duration_seconds_count", outcome="error") == 1
    assert grew("nanobot_turn_duration_seconds_count", outcome="ok") == 2
    assert grew("nanobot_session_wait_seconds_count") == 3
    assert grew("nanobot_session_wait_seconds_sum") >= 0.3


def _ask(text: str, *, stream: bool = False) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}], "session_id": "busy", "stream": stream}


def _outbox(scrape: str) -> tuple[dict[str, float], float]:
    samples = _samples(scrape)
    counts = {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "nanobot_outbox_events"
    }
    return counts, samples[("nanobot_outbox_oldest_pending_age_seconds", ())]


async def test_the_outbox_gauges_follow_an_event_from_pending_to_delivered(
    tmp_path: Path,
) -> None:
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        # The webhook is down for the turn's own attempt; the retry is held open.
        fake.fail("webhook", Fail(500), Hold())
        up.add(Calls((call(content="deploy done", channel="webhook", chat_id="ops"),)), Text("ok"))
        async with _client(configured(tmp_path / "workspace", up, fake)) as client:
            before, age = _outbox((await client.get("/metrics")).text)
            assert (before.get("pending"), age) == (0, 0)
            answer = await client.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "go"}]}
            )
            assert answer.status_code == 200
            counts, first_age = _outbox((await client.get("/metrics")).text)
            assert counts["pending"] == 1
            assert first_age > 0
            await anyio.sleep(0.05)
            counts, second_age = _outbox((await client.get("/metrics")).text)
            assert counts["pending"] == 1
            assert second_age >= first_age + 0.05
            fake.release()  # the platform answers: delivered
            await fake.wait_for(lambda f: len(f.messages("webhook")) == 1)
            with anyio.fail_after(10):
                while True:  # the server writes "delivered" after the answer arrives
                    counts, age = _outbox((await client.get("/metrics")).text)
                    if counts["pending"] == 0:
                        break
                    await anyio.sleep(0.02)
    assert age == 0
    assert counts["delivered"] == before["delivered"] + 1
    assert (counts["queued"], counts["failed"]) == (0, 0)


@pytest.mark.slow
async def test_verbose_logs_show_model_calls_and_tool_steps_with_timings(tmp_path: Path) -> None:
    steps = [Calls((("no_such_tool", "{}"),)), Text("done")]
    async with ScriptedUpstream(steps) as up:
        config = {
            "agents": {"defaults": {"provider": "local", "model": "m1"}},
            "providers": {"local": {"apiBase": up.base_url, "apiKey": "sk-x"}},
        }
        body = {"messages": [{"role": "user", "content": "go"}]}
        served = await one_turn(tmp_path, config, body, request_id="verbose-1", flags=("-v",))
    assert served.answer.status_code == 200
    logged = served.stderr
    assert "model call 1 to m1: ok in " in logged
    # Every line about the request carries its id: the model call's, the tool's, the access line.
    about = [line for line in logged.splitlines() if "model call" in line or "tool no_such" in line]
    assert about
    assert all("[verbose-1]" in line for line in about)
    assert "[verbose-1] nanobot_api.access: POST /v1/chat/completions 200" in logged
    assert "model call 2 to m1: ok in " in logged
    assert "tool no_such_tool [" in logged
    assert " ms, " in logged
