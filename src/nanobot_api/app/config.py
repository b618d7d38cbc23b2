"""The server's configuration: ``config.json``, ``${ENV}`` expansion and the CLI's overrides.

Start-up is the only place a configuration is read, so every problem becomes one
:class:`~nanobot_api.domain.errors.ConfigError` whose message is a single line naming the
key path and what was expected (``api.port: expected an integer 0-65535, got "abc"``).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs
from cattrs.errors import (
    ClassValidationError,
    IterableValidationError,
)

from nanobot_api.app.config_rules import (
    FROM_FILE,
    Problem,
    checked,
    config_error,
    first_error,
    make_config_converter,
    show,
)
from nanobot_api.app.mcp_config import ToolsConfig, check_tools
from nanobot_api.domain.errors import ConfigError


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://")) and len(text) > len("https://")


_URL = "an http(s) URL"


@attrs.frozen
class ApiKeyConfig:
    """One named API key: a tenant with its own sessions and its own limits (0: none)."""

    name: str = checked(
        attrs.NOTHING,
        lambda v: bool(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", v)),
        "a name of 1-64 letters, digits, '.', '_' or '-'",
    )
    key: str = checked(attrs.NOTHING, bool, "a key")
    rpm: int = checked(0, lambda v: v >= 0, "an integer >= 0 (0: no limit)")
    max_concurrent: int = checked(0, lambda v: v >= 0, "an integer >= 0 (0: no limit)")


@attrs.frozen
class ApiConfig:
    """The HTTP API: where it listens and the limits it enforces."""

    host: str = checked("127.0.0.1", bool, "a host name or address")
    # 0: the system picks a free port, which start-up announces.
    port: int = checked(8900, lambda v: 0 <= v <= 65535, "an integer 0-65535")
    timeout: float = checked(120.0, lambda v: 0 < v < math.inf, "a number > 0")
    api_key: str = ""
    max_file_mb: int = checked(10, lambda v: v > 0, "a positive integer")
    max_files: int = checked(16, lambda v: v > 0, "a positive integer")
    max_request_mb: int = checked(64, lambda v: v > 0, "a positive integer")
    sse_keepalive_s: float = checked(15.0, lambda v: 0 <= v < math.inf, "a number >= 0")
    history: Literal["reject", "latest"] = checked(
        "reject", lambda v: v in ("reject", "latest"), '"reject" or "latest"', base=str
    )
    cors_origins: tuple[str, ...] = ()
    chat_page: bool = True
    # Host names a server without a key answers to, beside localhost, the loopback
    # addresses and the bound host (a page reaching it by DNS rebinding is refused).
    allowed_hosts: tuple[str, ...] = ()
    body_timeout_s: float = checked(60.0, lambda v: 0 < v < math.inf, "a number > 0")
    temporary_ttl_s: float = checked(3600.0, lambda v: 0 < v < math.inf, "a number > 0")
    # ---- operations (operations.md): logs, keys and limits, retries, restarts
    log_format: Literal["text", "json"] = checked(
        "text", lambda v: v in ("text", "json"), '"text" or "json"', base=str
    )
    keys: tuple[ApiKeyConfig, ...] = ()
    max_concurrent_turns: int = checked(0, lambda v: v >= 0, "an integer >= 0 (0: no limit)")
    auth_failures_per_min: int = checked(10, lambda v: v >= 1, "an integer >= 1")
    trusted_proxies: tuple[str, ...] = ()
    idempotency_h: float = checked(24.0, lambda v: 0 < v < math.inf, "a number > 0")
    shutdown_grace_s: float = checked(30.0, lambda v: 0 <= v < math.inf, "a number >= 0")
    max_media_mb: int = checked(1024, lambda v: v > 0, "a positive integer")
    workers: int = checked(1, lambda v: 1 <= v <= 64, "an integer 1-64")
    busy: Literal["queue", "reject"] = checked(
        "queue", lambda v: v in ("queue", "reject"), '"queue" or "reject"', base=str
    )
    # ---- clients (clients.md): their instructions, tools and documents
    client_instructions: Literal["append", "ignore"] = checked(
        "append", lambda v: v in ("append", "ignore"), '"append" or "ignore"', base=str
    )
    tool_result_timeout_s: float = checked(600.0, lambda v: 0 < v < math.inf, "a number > 0")
    max_document_chars: int = checked(200_000, lambda v: v > 0, "a positive integer")

    @property
    def keyed(self) -> bool:
        """Whether requests need a key (``apiKey`` or any of ``keys``)."""
        return bool(self.api_key or self.keys)


@attrs.frozen
class AgentDefaults:
    """What every turn's agent uses unless told otherwise."""

    # Both unset by default: the only configured provider is used, and a provider
    # without a model is refused at start-up rather than given a made-up model id.
    provider: str | None = checked(None, bool, "a provider name", base=str)
    model: str | None = checked(None, bool, "a model name", base=str)
    system_prompt: str | None = None
    max_tool_iterations: int = checked(8, lambda v: v >= 1, "an integer >= 1")
    max_history_messages: int = checked(200, lambda v: v >= 2, "an integer >= 2")
    max_reply_chars: int = checked(100_000, lambda v: v >= 1, "a positive integer")
    max_sends_per_turn: int = checked(5, lambda v: v >= 0, "an integer >= 0")


@attrs.frozen
class AgentsConfig:
    defaults: AgentDefaults = AgentDefaults()


@attrs.frozen
class ProviderConfig:
    """An OpenAI-compatible model endpoint."""

    api_base: str = checked(attrs.NOTHING, _is_url, _URL)
    api_key: str = ""
    extra_headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class TokenChannelConfig:
    """A platform reached with a bot token; each one's class sets its API's address."""

    enabled: bool = False
    token: str = ""
    api_base: str = ""
    allow_chat_ids: tuple[str, ...] = ()


@attrs.frozen
class TelegramConfig(TokenChannelConfig):
    api_base: str = checked("https://api.telegram.org", _is_url, _URL)


@attrs.frozen
class DiscordConfig(TokenChannelConfig):
    api_base: str = checked("https://discord.com/api/v10", _is_url, _URL)


@attrs.frozen
class SlackConfig(TokenChannelConfig):
    api_base: str = checked("https://slack.com/api", _is_url, _URL)


@attrs.frozen
class WebhookConfig:
    enabled: bool = False
    url: str = ""
    secret: str = ""
    allow_chat_ids: tuple[str, ...] = ()


@attrs.frozen
class PluginChannelConfig:
    """A channel from an installed package's ``nanobot_api.channels`` entry point; its
    ``settings`` (strings, ``${ENV}`` expanded) are handed to the package's factory."""

    enabled: bool = False
    settings: dict[str, str] = attrs.field(factory=dict)
    allow_chat_ids: tuple[str, ...] = ()


_POSITIVE = "a number > 0"


@attrs.frozen
class OutboxConfig:
    """How the outbox delivers: per-request timeout, retries with backoff, concurrency."""

    timeout_s: float = checked(30.0, lambda v: 0 < v < math.inf, _POSITIVE)
    max_attempts: int = checked(10, lambda v: v >= 1, "an integer >= 1")
    retry_base_s: float = checked(2.0, lambda v: 0 < v < math.inf, _POSITIVE)
    retry_max_s: float = checked(600.0, lambda v: 0 < v < math.inf, _POSITIVE)
    concurrency: int = checked(8, lambda v: v >= 1, "an integer >= 1")


@attrs.frozen
class ChannelsConfig:
    """Chat platforms the ``message`` tool may deliver to; each is off unless enabled."""

    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    slack: SlackConfig = SlackConfig()
    webhook: WebhookConfig = WebhookConfig()
    plugins: dict[str, PluginChannelConfig] = attrs.field(factory=dict)
    outbox: OutboxConfig = OutboxConfig()

    @property
    def token_channels(self) -> tuple[tuple[str, TokenChannelConfig], ...]:
        """The built-in platforms reached with a bot token, by name."""
        return (("telegram", self.telegram), ("discord", self.discord), ("slack", self.slack))

    @property
    def allow_chat_ids(self) -> dict[str, tuple[str, ...]]:
        """Each channel's ``allowChatIds`` (the only chats the ``message`` tool may send
        to), for the channels that list any."""
        lists = {name: section.allow_chat_ids for name, section in self.token_channels}
        lists["webhook"] = self.webhook.allow_chat_ids
        lists.update({name: plugin.allow_chat_ids for name, plugin in self.plugins.items()})
        return {name: ids for name, ids in lists.items() if ids}


@attrs.frozen
class StorageConfig:
    """Where durable state lives: ``url`` empty -> SQLite files in the workspace;
    a PostgreSQL connection string -> that database, shared by every process."""

    url: str = ""
    lease_s: float = checked(30.0, lambda v: 0 < v < math.inf, _POSITIVE)
    # How long start-up waits for a database that is not up yet, before exit 2.
    connect_retry_s: float = checked(30.0, lambda v: 0 <= v < math.inf, "a number >= 0")


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def _is_postgres_url(url: str) -> bool:
    """A libpq URL, or a libpq ``key=value`` string (``host=db dbname=nanobot``)."""
    if url.startswith(_POSTGRES_SCHEMES):
        return True
    return "://" not in url and all("=" in word for word in url.split())


def _default_workspace() -> Path:
    return Path.home() / ".nanobot" / "workspace"


@attrs.frozen
class Config:
    """The whole configuration. ``workspace`` comes from ``--workspace`` only, never the file."""

    api: ApiConfig = ApiConfig()
    agents: AgentsConfig = AgentsConfig()
    providers: dict[str, ProviderConfig] = attrs.field(factory=dict)
    channels: ChannelsConfig = ChannelsConfig()
    storage: StorageConfig = StorageConfig()
    tools: ToolsConfig = attrs.field(factory=ToolsConfig)
    workspace: Path = attrs.field(factory=_default_workspace, metadata={FROM_FILE: False})

    @property
    def provider(self) -> tuple[str, ProviderConfig] | None:
        """The provider turns use as ``(name, settings)``; None means the offline echo agent."""
        if not self.providers:
            return None
        name = self.agents.defaults.provider
        if name is None:
            # _check_whole has made sure exactly one provider is configured.
            name = next(iter(self.providers))
        return name, self.providers[name]

    @property
    def model(self) -> str:
        """The model id turns ask the provider for; set whenever a provider is configured."""
        return self.agents.defaults.model or ""


@attrs.frozen
class ConfigOverrides:
    """Command-line flags that win over the file; None leaves the file's value."""

    host: str | None = None
    port: int | None = None
    timeout: float | None = None
    workspace: Path | None = None
    storage_url: str | None = None
    workers: int | None = None
    api_key: str | None = None


# ---- public entry points ------------------------------------------------------------


def parse_config(raw: object, environ: Mapping[str, str]) -> Config:
    """Turn parsed ``config.json`` data into a checked :class:`Config`.

    ``workspace`` is ``$HOME/.nanobot/workspace`` (``HOME`` from ``environ`` when present).
    Raises ConfigError (one line, ``param`` = the key path) on any unknown key, wrong type,
    bad value, unset ``${VAR}``, or a non-loopback ``api.host`` without a strong ``api.apiKey``
    (16 characters or more, no whitespace).
    """
    converter = make_config_converter(environ)
    try:
        config = converter.structure(raw, Config)
    except (ClassValidationError, IterableValidationError, Problem) as exc:
        raise config_error(*first_error(exc)) from None
    config = attrs.evolve(config, workspace=_home(environ) / ".nanobot" / "workspace")
    _check_whole(config)
    return config


def with_api_overrides(
    base: Config, overrides: Mapping[str, object], environ: Mapping[str, str]
) -> Config:
    """``base`` with fields of ``api`` replaced, each override checked (and its ``${VAR}``
    expanded) by the rules of ``config.json``; ``base``'s own values are not read again."""
    try:
        given = make_config_converter(environ).structure({"api": dict(overrides)}, Config).api
    except (ClassValidationError, IterableValidationError, Problem) as exc:
        raise config_error(*first_error(exc)) from None
    api = attrs.evolve(base.api, **{name: getattr(given, name) for name in overrides})
    config = attrs.evolve(base, api=api)
    _check_whole(config)
    return config


def _check_whole(config: Config) -> None:
    """Rules that relate two fields; checked after structuring, overrides included."""
    _check_provider(config)
    for channel, settings in config.channels.token_channels:
        if settings.enabled and not settings.token:
            raise config_error(
                f"channels.{channel}.token", f"expected a token when {channel} is enabled"
            )
    webhook = config.channels.webhook
    if webhook.enabled and not _is_url(webhook.url):
        raise config_error("channels.webhook.url", f"expected {_URL} when the webhook is enabled")
    url = config.storage.url
    if url and not _is_postgres_url(url):
        # Only the scheme is shown: the rest of a URL may hold a password.
        scheme = url.split("://", 1)[0] + "://..." if "://" in url else "a string"
        raise config_error(
            "storage.url",
            f"expected a postgresql:// URL (or a libpq key=value string), got {scheme}",
        )
    check_tools(config.tools)
    _check_keys(config.api)
    host = config.api.host
    if not config.api.keyed and not _is_loopback(host):
        raise config_error(
            "api.host",
            f"binding {host} needs api.apiKey (a non-loopback address is reachable by others)",
        )
    if _is_loopback(host):
        return
    given = [("api.apiKey", config.api.api_key)] if config.api.api_key else []
    given += [(f"api.keys[{n}].key", entry.key) for n, entry in enumerate(config.api.keys)]
    for param, key in given:
        if len(key) < MIN_KEY_CHARS or _has_space(key):
            # A whitespace key can never match a Bearer token: it locks every client out.
            raise config_error(
                param,
                f"binding {host} needs a key of at least {MIN_KEY_CHARS} characters "
                "without whitespace",
            )


MIN_KEY_CHARS = 16


def _has_space(text: str) -> bool:
    return any(char.isspace() for char in text)


def _check_provider(config: Config) -> None:
    if not config.providers:
        return
    defaults = config.agents.defaults
    names = ", ".join(sorted(config.providers))
    if defaults.provider is None and len(config.providers) > 1:
        raise config_error(
            "agents.defaults.provider",
            f"expected the name of the provider to use, one of ({names})",
        )
    if defaults.provider is not None and defaults.provider not in config.providers:
        raise config_error(
            "agents.defaults.provider",
            f"expected one of the configured providers ({names}), got {show(defaults.provider)}",
        )
    if defaults.model is None:
        name = defaults.provider or next(iter(config.providers))
        raise config_error(
            "agents.defaults.model",
            f"expected the model to ask providers.{name} for (a provider is configured)",
        )


def _check_keys(api: ApiConfig) -> None:
    names: set[str] = set()
    keys = {api.api_key} if api.api_key else set()
    for index, entry in enumerate(api.keys):
        if entry.name in names:
            raise config_error(
                f"api.keys[{index}].name", f"expected a unique name, got {show(entry.name)}"
            )
        if entry.key in keys:
            raise config_error(f"api.keys[{index}].key", "expected a key no other entry uses")
        names.add(entry.name)
        keys.add(entry.key)
    for index, proxy in enumerate(api.trusted_proxies):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise config_error(
                f"api.trustedProxies[{index}]",
                f"expected an IP address or network, got {show(proxy)}",
            ) from None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ["HOME"]) if environ.get("HOME") else Path.home()


def load_config(
    path: Path | None, environ: Mapping[str, str], overrides: ConfigOverrides
) -> Config:
    """Read, check and return the configuration; flags in ``overrides`` win over the file.

    ``storage.url`` comes from the flag, else ``$NANOBOT_STORAGE_URL``, else the file.
    ``path`` None means ``$NANOBOT_CONFIG`` or else ``~/.nanobot/config.json``. A missing
    default file means all defaults; a missing file that was named (flag or variable), an
    unreadable file or invalid JSON raise ConfigError, as does everything parse_config refuses.
    """
    explicit = path is not None or bool(environ.get("NANOBOT_CONFIG"))
    if path is None:
        named = environ.get("NANOBOT_CONFIG")
        path = Path(named) if named else _home(environ) / ".nanobot" / "config.json"
    raw = _read_json(path, explicit=explicit)
    if isinstance(raw, dict):
        raw = _merge_flags(raw, overrides)
        raw = _merge_storage_url(raw, overrides.storage_url or environ.get("NANOBOT_STORAGE_URL"))
    config = parse_config(raw, environ)
    if overrides.workspace is not None:
        config = attrs.evolve(config, workspace=overrides.workspace)
    return config


def _read_json(path: Path, *, explicit: bool) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not explicit:
            return {}
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({type(exc).__name__})") from None

    def refuse_constant(name: str) -> object:
        # Python's json accepts NaN and Infinity; JSON does not.
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None


def _merge_storage_url(raw: dict[str, object], url: str | None) -> dict[str, object]:
    """The file's data with ``storage.url`` replaced by a flag's or the environment's."""
    storage = raw.get("storage", {})
    if not url or not isinstance(storage, dict):
        return raw
    return {**raw, "storage": {**storage, "url": url}}


def _merge_flags(raw: dict[str, object], overrides: ConfigOverrides) -> dict[str, object]:
    """The file's data with the flags written into ``api``, so one set of rules checks both."""
    pairs = (
        ("host", overrides.host),
        ("port", overrides.port),
        ("timeout", overrides.timeout),
        ("workers", overrides.workers),
        ("apiKey", overrides.api_key),
    )
    flags = {key: value for key, value in pairs if value is not None}
    api = raw.get("api", {})
    if not flags or not isinstance(api, dict):
        return raw
    return {**raw, "api": {**api, **flags}}
