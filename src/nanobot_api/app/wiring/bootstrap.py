"""The composition root: configuration in, a ready Quart app out. Nothing is built at import."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from quart import Quart

from nanobot_api.adapters.documents import DocumentReaderByKind
from nanobot_api.adapters.http.app import create_quart_app
from nanobot_api.adapters.http.operations import Operations
from nanobot_api.adapters.http.pipeline.authentication import ApiKey, trusted_networks
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.llm.openai_compat import OpenAICompatChatModel
from nanobot_api.adapters.observability.metrics import Metrics
from nanobot_api.app.attachments import AttachmentIntake
from nanobot_api.app.chat import ChatService
from nanobot_api.app.config import Config
from nanobot_api.app.drain import TurnGate
from nanobot_api.app.echo import EchoAgent
from nanobot_api.app.health import Health
from nanobot_api.app.limits import KeyLimits, RequestLimits
from nanobot_api.app.llm_agent import LlmAgent
from nanobot_api.app.telemetry import NO_TELEMETRY
from nanobot_api.app.temporary import TemporaryChats
from nanobot_api.app.tools import ToolSource
from nanobot_api.app.wiring.channels import outgoing_for
from nanobot_api.app.wiring.lifecycle import Opener, add_opener, set_gate
from nanobot_api.app.wiring.mcp import install_mcp, mcp_tools_for
from nanobot_api.app.wiring.redaction import configured_redactor, redacted_logs
from nanobot_api.app.wiring.responses import install_responses_api, response_stores
from nanobot_api.app.wiring.storage import (
    HISTORY_CACHE_SESSIONS,
    SESSIONS_FILE,
    RequestRecords,
    storage_for,
)
from nanobot_api.domain.attachments import MIB, ExtractionLimits, UploadLimits
from nanobot_api.domain.errors import ConfigError
from nanobot_api.domain.outbox import OUTBOX_STATUSES
from nanobot_api.domain.ports import (
    Agent,
    Attachments,
    OutboxAdmin,
    SessionStore,
    Telemetry,
    Tool,
)
from nanobot_api.domain.redaction import Redactor
from nanobot_api.domain.tenants import Tenant


def upload_limits(config: Config) -> UploadLimits:
    api = config.api
    return UploadLimits(
        max_file_bytes=api.max_file_mb * MIB,
        max_files=api.max_files,
        max_request_bytes=api.max_request_mb * MIB,
    )


def session_store_path(config: Config) -> Path:
    """Where the embedded session store keeps its file."""
    return config.workspace / SESSIONS_FILE


def build(
    config: Config,
    *,
    agent: Agent | None = None,
    store: SessionStore | None = None,
    attachments: Attachments | None = None,
) -> Quart:
    """The whole server for ``config``; each keyword replaces the part it names."""
    limits = upload_limits(config)
    metrics = Metrics()
    gate = TurnGate()
    health = Health(gate)
    redactor = configured_redactor(config)
    model: OpenAICompatChatModel | None = None
    # The message tool and its outbox come with the LLM agent; enabled channels alone
    # still get the worker, to drain what is pending.
    with_llm = agent is None and config.provider is not None
    # History lives in the storage whatever the agent, so `nanobot sessions` sees it.
    storage = storage_for(config)
    retry_s = config.storage.connect_retry_s
    if store is not None:
        storage = storage.with_sessions(store)
    store = storage.sessions
    outgoing = outgoing_for(
        config,
        with_tool=with_llm,
        outbox=storage.outbox,
        secrets=redactor,
        telemetry=metrics,
        uploads=storage.media,
    )
    # MCP servers give the LLM agent tools; the echo agent calls none.
    mcp = mcp_tools_for(config.tools, redactor) if with_llm and config.tools.mcp_servers else None
    if with_llm:
        agent, model = llm_agent(
            config,
            tools=() if outgoing is None else (outgoing.tool,),
            tool_sources=() if mcp is None else (mcp,),
            telemetry=metrics,
        )
    if attachments is None:
        # One set of extraction bounds, for the intake's checks and the readers alike.
        extraction = ExtractionLimits(max_chars=config.api.max_document_chars)
        attachments = AttachmentIntake(
            DocumentReaderByKind.standard(extraction),
            storage.media,
            limits,
            extraction=extraction,
            telemetry=metrics,
        )
    service = ChatService(
        agent=agent or EchoAgent(),
        store=store,
        attachments=attachments,
        timeout_s=config.api.timeout,
        max_history_messages=config.agents.defaults.max_history_messages,
        gate=gate,
        telemetry=metrics,
        max_reply_chars=config.agents.defaults.max_reply_chars,
        redactor=redactor,
        busy=config.api.busy,
        lease_s=config.storage.lease_s,
        client_instructions=config.api.client_instructions,
        tool_result_timeout_s=config.api.tool_result_timeout_s,
    )
    settings = HttpSettings(
        api_key=config.api.api_key,
        limits=limits,
        sse_keepalive_s=config.api.sse_keepalive_s,
        body_timeout_s=config.api.body_timeout_s,
        history=config.api.history,
        cors_origins=frozenset(config.api.cors_origins),
        chat_page=config.api.chat_page,
        allowed_hosts=frozenset([config.api.host, *config.api.allowed_hosts]),
    )
    operations = operations_for(config, health, metrics, storage.requests)
    app = create_quart_app(service, settings, operations)
    set_gate(app, gate)
    # Background responses run as Quart background tasks. `nanobot serve` drains them
    # within the grace before Quart stops; served any other way, Quart itself waits
    # for them that long (not its default 5 s), then cancels them: each ends failed.
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = config.api.shutdown_grace_s
    _redact_logs_while_serving(app, redactor)
    stores = response_stores(config.workspace, storage.database)
    temporary = TemporaryChats(
        store, config.api.temporary_ttl_s, uploads=storage.media, records=stores.records
    )
    # Hooks run in the order given: the sweeps stop before any store they sweep closes.
    app.after_serving(temporary.stop)
    install_responses_api(
        app, service, store, settings, stores, redact=redactor, lease_s=config.storage.lease_s
    )
    # Opened before the server starts (a bad file, or a database still down after
    # storage.connectRetryS, is one line and exit 2), and by the app's own start for
    # an app served any other way.
    opener = Opener(storage.kind, storage.path, partial(storage.open, retry_for_s=retry_s))
    add_opener(app, opener)
    for file in storage.made_on_first_use:
        add_opener(app, Opener(file.path.stem, file.path, file.open_if_present))
    if storage.serves_sessions:
        health.add_check("storage", storage.ping)

    @app.before_serving
    async def _open_storage() -> None:
        await opener.open()

    if outgoing is not None:
        outgoing.install(app)  # after the storage opens, before it closes
        metrics.refresh_with(partial(outbox_gauges, outgoing.outbox))
    if mcp is not None:
        install_mcp(app, mcp)
        health.add_part(mcp)
    # The sweeps start once the store is open.
    app.before_serving(temporary.start)
    app.after_serving(storage.close)
    if model is not None:
        app.after_serving(model.close)
    return app


def operations_for(
    config: Config, health: Health, metrics: Metrics, records: RequestRecords
) -> Operations:
    """The operations side of the HTTP app: keys as tenants, limits, idempotent retries."""
    api = config.api
    keys = tuple(ApiKey(entry.key, Tenant(entry.name)) for entry in api.keys)
    if api.api_key:
        keys = (ApiKey(api.api_key), *keys)
    limiter = RequestLimits(
        records,
        keys={entry.name: KeyLimits(entry.rpm, entry.max_concurrent) for entry in api.keys},
        max_concurrent_turns=api.max_concurrent_turns,
        auth_failures_per_min=api.auth_failures_per_min,
        turn_budget_s=api.timeout,
        # Renewed while a turn runs: a dead worker's slots free within one lease.
        slot_lease_s=config.storage.lease_s,
    )
    return Operations(
        health,
        metrics,
        keys=keys,
        limiter=limiter,
        idempotency=records,
        trusted_proxies=trusted_networks(api.trusted_proxies),
        idempotency_ttl_s=api.idempotency_h * 3600,
        # A claim outlives the longest turn; a dead holder's runs out after that.
        turn_lease_s=api.timeout + 60,
        # Renewed while the first runs: a dead worker's claim ends within one lease.
        renewed_lease_s=config.storage.lease_s,
    )


async def outbox_gauges(outbox: OutboxAdmin, metrics: Metrics) -> None:
    """Sets the outbox gauges from the store's tally, as a scrape begins."""
    tally = await outbox.tally()
    for status in OUTBOX_STATUSES:
        metrics.outbox_events.labels(status).set(tally.count(status))
    metrics.outbox_oldest_seconds.set(tally.waiting_age_s(time.time()))


def llm_agent(
    config: Config,
    tools: Sequence[Tool] = (),
    tool_sources: Sequence[ToolSource] = (),
    telemetry: Telemetry = NO_TELEMETRY,
) -> tuple[LlmAgent, OpenAICompatChatModel]:
    """The LLM agent for the configured provider, and its model (to close at shutdown)."""
    provider = config.provider
    if provider is None:
        raise ValueError("no provider is configured")
    settings = provider[1]
    if not config.model:
        # parse_config refuses this; a Config built in code may still lack the model.
        raise ConfigError(
            "agents.defaults.model: expected the model to ask "
            f"providers.{provider[0]} for (a provider is configured)",
            param="agents.defaults.model",
        )
    defaults = config.agents.defaults
    model = OpenAICompatChatModel(
        None,
        settings.api_base,
        settings.api_key,
        config.model,
        settings.extra_headers,
        cached_sessions=HISTORY_CACHE_SESSIONS,
        redactor=configured_redactor(config),
    )
    agent = LlmAgent(
        model,
        config.model,
        tools=tools,
        system_prompt=defaults.system_prompt,
        max_tool_iterations=defaults.max_tool_iterations,
        tool_sources=tool_sources,
        telemetry=telemetry,
        max_reply_chars=defaults.max_reply_chars,
    )
    return agent, model


def _redact_logs_while_serving(app: Quart, redactor: Redactor) -> None:
    """Masks the configured secrets in every log line written while ``app`` serves."""
    stack = ExitStack()

    async def _stop() -> None:
        stack.close()

    @app.before_serving
    async def _start() -> None:
        stack.enter_context(redacted_logs(redactor))
        # After-serving hooks run in the order given: added at the first start, this
        # one runs after every other part has stopped (channels, MCP servers, stores),
        # so what they log on the way out is masked too.
        if _stop not in app.after_serving_funcs:
            app.after_serving(_stop)
