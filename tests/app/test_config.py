from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.app.config import (
    Config,
    ConfigOverrides,
    ProviderConfig,
    load_config,
    parse_config,
)
from nanobot_api.domain.errors import ConfigError

HOME = {"HOME": "/home/u"}


def refused(raw: object, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, HOME if environ is None else environ)
    assert "\n" not in str(info.value)
    return info.value


# ---- defaults -----------------------------------------------------------------------


def test_an_empty_file_gives_every_documented_default() -> None:
    config = parse_config({}, HOME)

    api = config.api
    assert (api.host, api.port, api.timeout, api.api_key) == ("127.0.0.1", 8900, 120.0, "")
    assert (api.max_file_mb, api.max_files, api.max_request_mb) == (10, 16, 64)
    assert (api.sse_keepalive_s, api.history, api.cors_origins) == (15.0, "reject", ())
    defaults = config.agents.defaults
    assert (defaults.provider, defaults.model, defaults.system_prompt) == (None, None, None)
    assert (defaults.max_tool_iterations, defaults.max_history_messages) == (8, 200)
    assert config.providers == {}
    assert config.workspace == Path("/home/u/.nanobot/workspace")


def test_every_channel_is_disabled_by_default_and_points_at_its_platform() -> None:
    channels = parse_config({}, HOME).channels

    assert not any(
        c.enabled for c in (channels.telegram, channels.discord, channels.slack, channels.webhook)
    )
    assert channels.telegram.api_base == "https://api.telegram.org"
    assert channels.discord.api_base == "https://discord.com/api/v10"
    assert channels.slack.api_base == "https://slack.com/api"
    assert (channels.webhook.url, channels.webhook.secret) == ("", "")


def test_no_providers_means_the_echo_agent() -> None:
    assert parse_config({}, HOME).provider is None


def test_the_configured_provider_is_named_by_agents_defaults() -> None:
    config = parse_config(
        {
            "agents": {"defaults": {"provider": "b", "model": "m"}},
            "providers": {"a": {"apiBase": "https://a/v1"}, "b": {"apiBase": "https://b/v1"}},
        },
        HOME,
    )

    assert config.provider == ("b", ProviderConfig(api_base="https://b/v1"))


def test_the_only_configured_provider_is_used_without_being_named() -> None:
    config = parse_config(
        {"agents": {"defaults": {"model": "gpt-4o-mini"}}, "providers": {"openai": OPENAI}}, HOME
    )

    assert config.provider == ("openai", ProviderConfig(api_base="https://api.openai.com/v1"))
    assert config.model == "gpt-4o-mini"


OPENAI = {"apiBase": "https://api.openai.com/v1"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"providers": {"openai": OPENAI}},
            "agents.defaults.model: expected the model to ask providers.openai for "
            "(a provider is configured)",
        ),
        (
            {"agents": {"defaults": {"model": "m"}}, "providers": {"a": OPENAI, "b": OPENAI}},
            "agents.defaults.provider: expected the name of the provider to use, one of (a, b)",
        ),
    ],
)
def test_a_provider_needs_a_model_and_several_need_a_choice(raw: object, message: str) -> None:
    assert str(refused(raw)) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"api": {"apikey": "x"}}, 'api.apikey: unknown key (did you mean "apiKey"?)'),
        ({"api": {"API_KEY": "x"}}, 'api.API_KEY: unknown key (did you mean "apiKey"?)'),
        ({"api": {"prot": 1}}, 'api.prot: unknown key (did you mean "port"?)'),
        ({"agent": {}}, 'agent: unknown key (did you mean "agents"?)'),
        (
            {"agents": {"defaults": {"modle": "m"}}},
            'agents.defaults.modle: unknown key (did you mean "model"?)',
        ),
        ({"api": {"bogus": 1}}, "api.bogus: unknown key"),
    ],
)
def test_a_mistyped_key_gets_a_suggestion(raw: object, message: str) -> None:
    assert str(refused(raw)) == message


# ---- key styles and ${ENV} ----------------------------------------------------------------


@pytest.mark.parametrize(
    "api",
    [
        {"apiKey": "k", "maxFileMb": 3, "maxFiles": 4, "maxRequestMb": 5, "sseKeepaliveS": 0},
        {
            "api_key": "k",
            "max_file_mb": 3,
            "max_files": 4,
            "max_request_mb": 5,
            "sse_keepalive_s": 0,
        },
    ],
)
def test_camel_case_and_snake_case_keys_mean_the_same(api: dict[str, Any]) -> None:
    config = parse_config({"api": {**api, "corsOrigins": ["https://ui.example"]}}, HOME)

    assert config.api.api_key == "k"
    assert (config.api.max_file_mb, config.api.max_files, config.api.max_request_mb) == (3, 4, 5)
    assert config.api.sse_keepalive_s == 0
    assert config.api.cors_origins == ("https://ui.example",)


def test_one_key_in_both_spellings_is_refused() -> None:
    error = refused({"api": {"apiKey": "a", "api_key": "b"}})

    assert str(error) == "api.api_key: given twice (also as apiKey)"


def test_env_variables_expand_in_every_string_value() -> None:
    raw = {
        "api": {"apiKey": "${KEY}", "corsOrigins": ["https://${HOST}"]},
        "agents": {"defaults": {"model": "m"}},
        "providers": {
            "custom": {
                "apiBase": "https://${HOST}/v1",
                "apiKey": "pre-${KEY}-post",
                "extraHeaders": {"X-Team": "${TEAM}"},
            }
        },
        "channels": {"telegram": {"enabled": True, "token": "${TG}"}},
    }
    environ = {"KEY": "s3cret", "HOST": "api.example", "TEAM": "blue", "TG": "123:abc"}

    config = parse_config(raw, environ)

    assert config.api.api_key == "s3cret"
    assert config.api.cors_origins == ("https://api.example",)
    assert config.providers["custom"] == ProviderConfig(
        api_base="https://api.example/v1",
        api_key="pre-s3cret-post",
        extra_headers={"X-Team": "blue"},
    )
    assert config.channels.telegram.token == "123:abc"


def test_an_unset_env_variable_names_the_key_and_the_variable() -> None:
    raw = {"providers": {"custom": {"apiBase": "https://x/v1", "apiKey": "${CUSTOM_API_KEY}"}}}

    error = refused(raw, environ={})

    assert str(error) == "providers.custom.apiKey: environment variable CUSTOM_API_KEY is not set"
    assert error.param == "providers.custom.apiKey"


def test_expansion_is_checked_like_the_written_value() -> None:
    error = refused({"api": {"history": "${MODE}"}}, environ={"MODE": "all"})

    assert str(error) == 'api.history: expected "reject" or "latest", got "all"'


# ---- bad values, wrong types, unknown keys ------------------------------------------------

BAD_VALUES = [
    ({"api": {"port": "abc"}}, 'api.port: expected an integer 0-65535, got "abc"'),
    ({"api": {"port": -1}}, "api.port: expected an integer 0-65535, got -1"),
    ({"api": {"port": 65536}}, "api.port: expected an integer 0-65535, got 65536"),
    ({"api": {"port": 8900.0}}, "api.port: expected an integer 0-65535, got 8900.0"),
    ({"api": {"timeout": 0}}, "api.timeout: expected a number > 0, got 0"),
    ({"api": {"timeout": -1.5}}, "api.timeout: expected a number > 0, got -1.5"),
    ({"api": {"timeout": "120"}}, 'api.timeout: expected a number > 0, got "120"'),
    ({"api": {"maxFileMb": 0}}, "api.maxFileMb: expected a positive integer, got 0"),
    ({"api": {"maxFiles": -1}}, "api.maxFiles: expected a positive integer, got -1"),
    ({"api": {"max_request_mb": 0}}, "api.max_request_mb: expected a positive integer, got 0"),
    ({"api": {"sseKeepaliveS": -1}}, "api.sseKeepaliveS: expected a number >= 0, got -1"),
    ({"api": {"history": "all"}}, 'api.history: expected "reject" or "latest", got "all"'),
    ({"api": {"corsOrigins": "https://a"}}, 'api.corsOrigins: expected a list, got "https://a"'),
    ({"api": {"corsOrigins": ["https://a", 1]}}, "api.corsOrigins[1]: expected a string, got 1"),
    ({"api": {"host": ""}}, 'api.host: expected a host name or address, got ""'),
    (
        {"agents": {"defaults": {"maxToolIterations": 0}}},
        "agents.defaults.maxToolIterations: expected an integer >= 1, got 0",
    ),
    (
        {"agents": {"defaults": {"maxHistoryMessages": 1}}},
        "agents.defaults.maxHistoryMessages: expected an integer >= 2, got 1",
    ),
    (
        {"agents": {"defaults": {"systemPrompt": 3}}},
        "agents.defaults.systemPrompt: expected a string, got 3",
    ),
    (
        {
            "agents": {"defaults": {"provider": "other", "model": "m"}},
            "providers": {"custom": {"apiBase": "https://x"}},
        },
        'agents.defaults.provider: expected one of the configured providers (custom), got "other"',
    ),
    ({"providers": {"custom": {}}}, "providers.custom.apiBase: required key missing"),
    (
        {"providers": {"custom": {"apiBase": "ftp://x"}}},
        'providers.custom.apiBase: expected an http(s) URL, got "ftp://x"',
    ),
    ({"providers": []}, "providers: expected an object, got []"),
    (
        {"channels": {"telegram": {"enabled": True}}},
        "channels.telegram.token: expected a token when telegram is enabled",
    ),
    (
        {"channels": {"webhook": {"enabled": True}}},
        "channels.webhook.url: expected an http(s) URL when the webhook is enabled",
    ),
    ([], "config: expected an object, got []"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_its_key_path(raw: object, message: str) -> None:
    error = refused(raw)

    assert str(error) == message
    assert error.param == (
        None if message.startswith("config:") else message.split(":", maxsplit=1)[0]
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"api": {"port": True}}, "api.port: expected an integer 0-65535, got true"),
        ({"api": {"maxFiles": False}}, "api.maxFiles: expected a positive integer, got false"),
        ({"api": {"timeout": True}}, "api.timeout: expected a number > 0, got true"),
        (
            {"channels": {"telegram": {"enabled": 1}}},
            "channels.telegram.enabled: expected a boolean, got 1",
        ),
        (
            {"channels": {"slack": {"enabled": "true"}}},
            'channels.slack.enabled: expected a boolean, got "true"',
        ),
        ({"api": {"apiKey": 123}}, "api.apiKey: expected a string, got 123"),
        ({"api": {"apiKey": None}}, "api.apiKey: expected a string, got null"),
    ],
)
def test_types_are_never_coerced(raw: object, message: str) -> None:
    assert str(refused(raw)) == message


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"bogus": 1}, "bogus"),
        ({"workspace": "/tmp/ws"}, "workspace"),
        ({"api": {"bogus": 1}}, "api.bogus"),
        ({"agents": {"bogus": {}}}, "agents.bogus"),
        ({"agents": {"defaults": {"temperature": 0.2}}}, "agents.defaults.temperature"),
        ({"providers": {"custom": {"apiBase": "https://x", "org": "y"}}}, "providers.custom.org"),
        ({"channels": {"irc": {}}}, "channels.irc"),
        ({"channels": {"webhook": {"enabled": False, "headers": {}}}}, "channels.webhook.headers"),
    ],
)
def test_an_unknown_key_at_any_level_is_refused(raw: object, path: str) -> None:
    error = refused(raw)

    assert str(error) == f"{path}: unknown key"
    assert error.param == path


# ---- binding beyond loopback ----------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.org"])
def test_a_non_loopback_host_without_an_api_key_is_refused(host: str) -> None:
    error = refused({"api": {"host": host}})

    assert str(error).startswith(f"api.host: binding {host} needs api.apiKey")
    assert error.param == "api.host"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_a_loopback_host_needs_no_api_key(host: str) -> None:
    assert parse_config({"api": {"host": host}}, HOME).api.host == host


def test_a_non_loopback_host_with_an_api_key_is_accepted() -> None:
    key = "sk-0123456789abcdef"
    config = parse_config({"api": {"host": "0.0.0.0", "apiKey": "${K}"}}, {"K": key})

    assert (config.api.host, config.api.api_key) == ("0.0.0.0", key)


@pytest.mark.parametrize("key", [" ", "x", "short", "fifteen-chars-k", "sixteen chars ok"])
def test_a_short_or_whitespace_key_is_refused_for_a_non_loopback_bind(key: str) -> None:
    """A whitespace key can never match a Bearer token: it would lock every client out."""
    error = refused({"api": {"host": "0.0.0.0", "apiKey": key}})

    assert str(error) == (
        "api.apiKey: binding 0.0.0.0 needs a key of at least 16 characters without whitespace"
    )
    assert parse_config({"api": {"apiKey": key}}, HOME).api.api_key == key  # loopback: any


# ---- load_config ------------------------------------------------------------------------


@pytest.fixture(name="home")
def _home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_missing_default_file_means_all_defaults(home: Path) -> None:
    config = load_config(None, {"HOME": str(home)}, ConfigOverrides())

    assert config == parse_config({}, {"HOME": str(home)})
    assert config.workspace == home / ".nanobot" / "workspace"


def test_the_default_file_is_read_from_home(home: Path) -> None:
    write(home / ".nanobot" / "config.json", {"api": {"port": 9001}})

    assert load_config(None, {"HOME": str(home)}, ConfigOverrides()).api.port == 9001


def test_nanobot_config_names_the_file(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.json", {"api": {"port": 9002}})
    environ = {"HOME": str(home), "NANOBOT_CONFIG": str(path)}

    assert load_config(None, environ, ConfigOverrides()).api.port == 9002


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_missing_explicit_file_is_an_error(home: Path, tmp_path: Path, how: str) -> None:
    missing = tmp_path / "nope.json"
    environ = {"HOME": str(home)} | ({"NANOBOT_CONFIG": str(missing)} if how == "env" else {})

    with pytest.raises(ConfigError, match="config file not found"):
        load_config(missing if how == "flag" else None, environ, ConfigOverrides())


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "api": {"port": 8900,}\n}\n', encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_config(path, {}, ConfigOverrides())

    assert str(info.value).startswith(f"{path}: invalid JSON at line 2, column 24")
    assert "\n" not in str(info.value)


def test_nan_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"api": {"timeout": NaN}}', encoding="utf-8")

    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config(path, {}, ConfigOverrides())


def test_errors_in_the_file_name_the_key_path(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"api": {"port": "abc"}})

    with pytest.raises(ConfigError) as info:
        load_config(path, {}, ConfigOverrides())

    assert str(info.value) == 'api.port: expected an integer 0-65535, got "abc"'


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.json",
        {"api": {"host": "127.0.0.2", "port": 9000, "timeout": 5, "maxFiles": 3}},
    )
    overrides = ConfigOverrides(
        host="localhost", port=9100, timeout=30.0, workspace=tmp_path / "ws"
    )

    config = load_config(path, {}, overrides)

    assert (config.api.host, config.api.port, config.api.timeout) == ("localhost", 9100, 30.0)
    assert config.api.max_files == 3
    assert config.workspace == tmp_path / "ws"


def test_a_non_loopback_host_flag_still_needs_an_api_key(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {})

    with pytest.raises(ConfigError, match=r"^api\.host: binding 0\.0\.0\.0 needs api\.apiKey"):
        load_config(path, {}, ConfigOverrides(host="0.0.0.0"))


# ---- any JSON at all ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
SECTIONS = {
    "api": ["host", "port", "timeout", "apiKey", "maxFiles", "history", "corsOrigins"],
    "agents": ["defaults"],
    "providers": ["custom"],
    "channels": ["telegram", "webhook"],
}
near_valid = st.dictionaries(
    st.sampled_from(sorted(SECTIONS)),
    st.one_of(
        json_values,
        st.dictionaries(st.sampled_from([k for ks in SECTIONS.values() for k in ks]), json_values),
    ),
)


@given(st.one_of(json_values, near_valid))
def test_any_json_gives_a_config_or_a_config_error(raw: object) -> None:
    result: Config | ConfigError
    try:
        result = parse_config(raw, {"HOME": "/home/u"})
    except ConfigError as exc:
        result = exc
    assert isinstance(result, Config) or "\n" not in str(result)
