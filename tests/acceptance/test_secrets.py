"""Every kind of configured secret, planted where an upstream or a model could quote it
back, and looked for in everything that leaves the server: answers (whole and
streamed), stream error events, error bodies, history and the log."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import attrs
import pytest
from openai import APIError, APIStatusError, AsyncOpenAI

from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.app.config import (
    AgentDefaults,
    AgentsConfig,
    ApiConfig,
    ChannelsConfig,
    Config,
    PluginChannelConfig,
    ProviderConfig,
    TelegramConfig,
    WebhookConfig,
)
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.app.wiring.redaction import configured_redactor
from nanobot_api.domain.sessions import SessionKey
from tests.subprocess_server import one_turn
from tests.upstream import ScriptedUpstream, Status, Text

PROVIDER_KEY = "sk-provider-KEY-0001"
AZURE_HEADER = "azure-api-key-HEADER-0002"
ORG_HEADER = "org-HEADER-value-0003"
OTHER_PROVIDER_KEY = "sk-other-provider-KEY-0004"
TELEGRAM_TOKEN = "99999:telegram-TOKEN-0005"
WEBHOOK_URL = "https://hooks.example.com/T0006/webhook-URL-SECRET"
WEBHOOK_SECRET = "webhook-signing-SECRET-0007"
PLUGIN_TOKEN = "plugin-setting-TOKEN-0008"
SERVER_KEY = "server-api-key-0009-long-enough"
SECRETS = (
    PROVIDER_KEY,
    AZURE_HEADER,
    ORG_HEADER,
    OTHER_PROVIDER_KEY,
    TELEGRAM_TOKEN,
    WEBHOOK_URL,
    WEBHOOK_SECRET,
    PLUGIN_TOKEN,
    SERVER_KEY,
)
ALL = " | ".join(SECRETS)


def configured(workspace: Path, up: ScriptedUpstream) -> Config:
    """One secret of each kind; the channels are configured but not enabled."""
    channels = ChannelsConfig(
        telegram=TelegramConfig(token=TELEGRAM_TOKEN),
        webhook=WebhookConfig(url=WEBHOOK_URL, secret=WEBHOOK_SECRET),
        plugins={"matrix": PluginChannelConfig(settings={"token": PLUGIN_TOKEN})},
    )
    providers = {
        "custom": ProviderConfig(
            api_base=up.base_url,
            api_key=PROVIDER_KEY,
            extra_headers={"api-key": AZURE_HEADER, "OpenAI-Organization": ORG_HEADER},
        ),
        "spare": ProviderConfig(api_base=up.base_url, api_key=OTHER_PROVIDER_KEY),
    }
    return attrs.evolve(
        Config(),
        api=ApiConfig(api_key=SERVER_KEY),
        agents=AgentsConfig(AgentDefaults(provider="custom", model="MiniMax-M2.7")),
        providers=providers,
        channels=channels,
        workspace=workspace,
    )


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


def test_the_redactor_lists_every_kind_of_secret(tmp_path: Path) -> None:
    redactor = configured_redactor(configured(tmp_path, ScriptedUpstream()))
    assert set(SECRETS) <= set(redactor.secrets)
    assert redactor(f"x {ALL} y").count("***") == len(SECRETS)


async def test_an_upstream_error_quoting_every_secret_reaches_no_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with ScriptedUpstream() as up:
        up.add(Status(400, f"bad credentials: {ALL}"), Status(400, f"again: {ALL}"))
        async with (
            running_server(build(configured(tmp_path, up))) as server,
            AsyncOpenAI(base_url=server.base_url, api_key=SERVER_KEY, max_retries=0) as client,
        ):
            with pytest.raises(APIStatusError) as refused:
                await client.chat.completions.create(
                    model="MiniMax-M2.7", messages=[{"role": "user", "content": "hi"}]
                )
            stream = await client.chat.completions.create(
                model="MiniMax-M2.7",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            with pytest.raises(APIError) as broken:
                async for _ in stream:
                    pass
    assert refused.value.status_code == 502
    assert "Upstream model error: HTTP 400: bad credentials: ***" in json.dumps(refused.value.body)
    assert_clean(json.dumps(refused.value.body))
    assert "again: ***" in str(broken.value.body)
    assert_clean(str(broken.value.body))
    assert "HTTP 400" in caplog.text  # the failure was logged ...
    assert_clean(caplog.text)  # ... without a secret


async def test_a_model_repeating_secrets_is_masked_in_answers_streams_and_history(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    # Split mid-secret across pieces: the stream must not let a half through either.
    pieces = ("the key is sk-prov", "ider-KEY-0001 and ", f"{AZURE_HEADER[:9]}", AZURE_HEADER[9:])
    async with ScriptedUpstream() as up:
        up.add(Text(f"whole: {ALL}"), Text("".join(pieces), pieces=pieces))
        async with (
            running_server(build(configured(workspace, up))) as server,
            AsyncOpenAI(base_url=server.base_url, api_key=SERVER_KEY, max_retries=0) as client,
        ):
            whole = await client.chat.completions.create(
                model="MiniMax-M2.7", messages=[{"role": "user", "content": "leak"}]
            )
            stream = await client.chat.completions.create(
                model="MiniMax-M2.7",
                messages=[{"role": "user", "content": "leak slowly"}],
                stream=True,
            )
            deltas = [c.choices[0].delta.content async for c in stream if c.choices]
    answer = whole.choices[0].message.content or ""
    assert answer.startswith("whole: *** | ***")
    assert_clean(answer)
    streamed = "".join(d or "" for d in deltas)
    assert streamed == "the key is *** and ***"
    for delta in deltas:
        assert_clean(delta or "")
        assert "sk-prov" not in (delta or "")
    store = SqliteSessionStore(workspace / "sessions.sqlite3")
    await store.open()
    try:
        history = await store.history(SessionKey("api", "default"))
    finally:
        await store.close()
    assert_clean(repr(history))


async def test_responses_never_show_a_secret_an_upstream_quotes(tmp_path: Path) -> None:
    """/v1/responses: the error body, the ``response.failed`` event, the answer and
    the stored response are all masked."""
    workspace = tmp_path / "ws"
    async with ScriptedUpstream() as up:
        up.add(Status(400, f"bad: {ALL}"), Status(400, f"again: {ALL}"), Text(f"whole: {ALL}"))
        async with (
            running_server(build(configured(workspace, up))) as server,
            AsyncOpenAI(base_url=server.base_url, api_key=SERVER_KEY, max_retries=0) as client,
        ):
            with pytest.raises(APIStatusError) as refused:
                await client.responses.create(model="MiniMax-M2.7", input="hi")
            stream = await client.responses.create(model="MiniMax-M2.7", input="hi", stream=True)
            events = [event.model_dump_json() async for event in stream]
            answer = await client.responses.create(model="MiniMax-M2.7", input="leak")
            stored = await client.responses.retrieve(answer.id)
    assert refused.value.status_code == 502
    assert "bad: ***" in json.dumps(refused.value.body)
    assert_clean(json.dumps(refused.value.body))
    assert "response.failed" in events[-1]
    assert "again: ***" in events[-1]
    assert_clean("".join(events))
    assert answer.output_text.startswith("whole: *** | ***")
    assert_clean(answer.output_text + stored.model_dump_json())
    files = list(workspace.glob("responses.sqlite3*"))
    assert files
    for path in files:
        assert_clean(path.read_bytes().decode("utf-8", "replace"))


@pytest.mark.slow
async def test_a_real_servers_stderr_holds_no_secret_an_upstream_quotes(tmp_path: Path) -> None:
    async with ScriptedUpstream() as up:
        up.add(Status(400, f"bad credentials: {ALL}"))
        config = {
            "agents": {"defaults": {"provider": "custom", "model": "MiniMax-M2.7"}},
            "providers": {
                "custom": {
                    "apiBase": up.base_url,
                    "apiKey": PROVIDER_KEY,
                    "extraHeaders": {"api-key": AZURE_HEADER, "OpenAI-Organization": ORG_HEADER},
                },
                "spare": {"apiBase": up.base_url, "apiKey": OTHER_PROVIDER_KEY},
            },
            "channels": {
                "telegram": {"token": TELEGRAM_TOKEN},
                "webhook": {"url": WEBHOOK_URL, "secret": WEBHOOK_SECRET},
            },
        }
        body = {"messages": [{"role": "user", "content": "hi"}], "session_id": "s"}
        served = await one_turn(tmp_path, config, body, request_id="secret-1", flags=("-v",))
    assert served.answer.status_code == 502
    assert "bad credentials: ***" in served.answer.text
    assert "[secret-1]" in served.stderr  # the failure was logged ...
    assert "HTTP 400" in served.stderr
    for secret in SECRETS[:-2]:  # ... without any (the plugin and server key: not set)
        assert secret not in served.stderr, secret
    assert served.exit_code == 0
