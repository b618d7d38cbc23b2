"""The server's configuration: ``config.json``, ``${ENV}`` expansion and the CLI's overrides.

Start-up is the only place a configuration is read, so every problem becomes one
:class:`~nanobot_api.domain.errors.ConfigError` whose message is a single line naming the
key path and what was expected (``api.port: expected an integer 1-65535, got "abc"``).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import attrs
from cattrs import Converter
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from nanobot_api.domain.errors import ConfigError

_CHECK = "nanobot_check"
_FROM_FILE = "nanobot_from_file"


@attrs.frozen
class _Check:
    """A value rule of one field; ``base`` is the JSON type checked first (None: the field's)."""

    test: Callable[[Any], bool]
    expected: str
    base: object = None


def _checked(default: Any, test: Callable[[Any], bool], expected: str, base: object = None) -> Any:
    # Returns attrs' field specifier; typed Any so each field keeps its own annotation.
    return attrs.field(default=default, metadata={_CHECK: _Check(test, expected, base)})


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://")) and len(text) > len("https://")


_URL = "an http(s) URL"


@attrs.frozen
class ApiConfig:
    """The HTTP API: where it listens and the limits it enforces."""

    host: str = _checked("127.0.0.1", bool, "a host name or address")
    port: int = _checked(8900, lambda v: 1 <= v <= 65535, "an integer 1-65535")
    timeout: float = _checked(120.0, lambda v: 0 < v < math.inf, "a number > 0")
    api_key: str = ""
    max_file_mb: int = _checked(10, lambda v: v > 0, "a positive integer")
    max_files: int = _checked(16, lambda v: v > 0, "a positive integer")
    max_request_mb: int = _checked(64, lambda v: v > 0, "a positive integer")
    sse_keepalive_s: float = _checked(15.0, lambda v: 0 <= v < math.inf, "a number >= 0")
    history: Literal["reject", "latest"] = _checked(
        "reject", lambda v: v in ("reject", "latest"), '"reject" or "latest"', base=str
    )
    cors_origins: tuple[str, ...] = ()


@attrs.frozen
class AgentDefaults:
    """What every turn's agent uses unless told otherwise."""

    provider: str = _checked("custom", bool, "a provider name")
    model: str = _checked("MiniMax-M2.7", bool, "a model name")
    system_prompt: str | None = None
    max_tool_iterations: int = _checked(8, lambda v: v >= 1, "an integer >= 1")
    max_history_messages: int = _checked(200, lambda v: v >= 2, "an integer >= 2")


@attrs.frozen
class AgentsConfig:
    defaults: AgentDefaults = AgentDefaults()


@attrs.frozen
class ProviderConfig:
    """An OpenAI-compatible model endpoint."""

    api_base: str = _checked(attrs.NOTHING, _is_url, _URL)
    api_key: str = ""
    extra_headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class TelegramConfig:
    enabled: bool = False
    token: str = ""
    api_base: str = _checked("https://api.telegram.org", _is_url, _URL)


@attrs.frozen
class DiscordConfig:
    enabled: bool = False
    token: str = ""
    api_base: str = _checked("https://discord.com/api/v10", _is_url, _URL)


@attrs.frozen
class SlackConfig:
    enabled: bool = False
    token: str = ""
    api_base: str = _checked("https://slack.com/api", _is_url, _URL)


@attrs.frozen
class WebhookConfig:
    enabled: bool = False
    url: str = ""
    secret: str = ""


@attrs.frozen
class ChannelsConfig:
    """Chat platforms the ``message`` tool may deliver to; each is off unless enabled."""

    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    slack: SlackConfig = SlackConfig()
    webhook: WebhookConfig = WebhookConfig()


def _default_workspace() -> Path:
    return Path.home() / ".nanobot" / "workspace"


@attrs.frozen
class Config:
    """The whole configuration. ``workspace`` comes from ``--workspace`` only, never the file."""

    api: ApiConfig = ApiConfig()
    agents: AgentsConfig = AgentsConfig()
    providers: dict[str, ProviderConfig] = attrs.field(factory=dict)
    channels: ChannelsConfig = ChannelsConfig()
    workspace: Path = attrs.field(factory=_default_workspace, metadata={_FROM_FILE: False})

    @property
    def provider(self) -> tuple[str, ProviderConfig] | None:
        """The provider turns use as ``(name, settings)``; None means the offline echo agent."""
        if not self.providers:
            return None
        name = self.agents.defaults.provider
        return name, self.providers[name]


@attrs.frozen
class ConfigOverrides:
    """Command-line flags that win over the file; None leaves the file's value."""

    host: str | None = None
    port: int | None = None
    timeout: float | None = None
    workspace: Path | None = None


# ---- the strict converter ---------------------------------------------------------


class _Problem(ValueError):
    """A fault found by one of our hooks; ``key`` is set when it lies one key deeper."""

    def __init__(self, text: str, key: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.key = key


class _Expected(_Problem):
    def __init__(self, expected: str, got: object) -> None:
        super().__init__(f"expected {expected}, got {_show(got)}")


class _WrittenKeys(str):
    """A note on a ClassValidationError: attribute name -> the key as the user spelled it."""

    names: dict[str, str]

    def __new__(cls, names: dict[str, str]) -> _WrittenKeys:
        note = super().__new__(cls, "keys as written")
        note.names = names
        return note


def _show(value: object, limit: int = 60) -> str:
    try:
        text = json.dumps(value, default=repr)
    except ValueError:  # an int past Python's 4300-digit str() limit
        text = "a huge number"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def make_config_converter(environ: Mapping[str, str]) -> Converter:
    """A converter that structures ``config.json`` data strictly.

    Rules:

    - every object is an attrs class of this module; a key that names no field is refused
      (``forbid_extra_keys``), and each field is accepted as ``snake_case`` or ``camelCase``
      (``api_key`` / ``apiKey``) but not both at once;
    - types are exact, never coerced: an int field refuses bools, floats and strings, a bool
      field refuses ints, a number field accepts ints and floats, a str field only strings,
      a list only a JSON array, an object only a JSON object;
    - every string value (not object keys) has ``${NAME}`` replaced from ``environ``; an unset
      ``NAME`` is an error at that value's key path;
    - a field with a value rule (port range, positive limits, URLs, ``history``) is checked
      right after its type, so the error names that field;
    - ``detailed_validation`` is on, so errors carry the notes :func:`parse_config` turns into
      a key path.
    """
    converter = Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _string_hook(environ))
    converter.register_structure_hook(int, _exact_hook(int, "an integer"))
    converter.register_structure_hook(bool, _exact_hook(bool, "a boolean"))
    converter.register_structure_hook(float, _number)
    converter.register_structure_hook_factory(_is_collection, _collection_hook)
    converter.register_structure_hook_factory(attrs.has, _class_hook)
    return converter


Hook = Callable[[Any, Any], Any]


def _string_hook(environ: Mapping[str, str]) -> Hook:
    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise _Problem(f"environment variable {name} is not set")
        return environ[name]

    def structure(value: object, _: object) -> str:
        if type(value) is not str:
            raise _Expected("a string", value)
        return _ENV.sub(expand, value)

    return structure


def _exact_hook(kind: type[Any], expected: str) -> Hook:
    # type() rather than isinstance(): bool is a subclass of int, and JSON true is not 1.
    def structure(value: object, _: object) -> object:
        if type(value) is not kind:
            raise _Expected(expected, value)
        return value

    return structure


def _number(value: object, _: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Expected("a number", value)
    try:
        return float(value)
    except OverflowError:
        raise _Expected("a number", value) from None


def _is_collection(cl: Any) -> bool:
    return get_origin(cl) is tuple or get_origin(cl) is dict


def _collection_hook(cl: Any, converter: Converter) -> Hook:
    """tuple[X, ...] from a JSON array, dict[str, X] from a JSON object.

    cattrs' own hooks take any iterable, so "abc" would become ("a", "b", "c").
    """
    is_tuple = get_origin(cl) is tuple
    item_type = get_args(cl)[0 if is_tuple else 1]
    item_hook = converter.get_structure_hook(item_type)

    def structure(value: object, _: object) -> object:
        pairs: list[tuple[int | str, object]]
        if is_tuple and type(value) is list:
            pairs = list(enumerate(value))
        elif not is_tuple and type(value) is dict:
            pairs = list(value.items())
        else:
            raise _Expected("a list" if is_tuple else "an object", value)
        done, errors = [], []
        for index, item in pairs:
            try:
                done.append((index, item_hook(item, item_type)))
            except Exception as exc:  # gathered into one group, as cattrs' own hooks do
                exc.add_note(IterableValidationNote(f"@ {index!r}", index, item_type))
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {cl!r}", errors, cl)
        return tuple(v for _, v in done) if is_tuple else dict(done)

    return structure


def _class_hook(cl: Any, converter: Converter) -> Hook:
    """cattrs' generated hook, fed keys in snake_case and told the spelling each had."""
    attrs.resolve_types(cl)
    spellings: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    for field in attrs.fields(cl):
        if field.metadata.get(_FROM_FILE, True) is False:
            overrides[field.name] = override(omit=True)
            continue
        spellings[field.name] = spellings[_camel(field.name)] = field.name
        check = field.metadata.get(_CHECK)
        if check is not None:
            overrides[field.name] = override(struct_hook=_checking(converter, field, check))
    inner = make_dict_structure_fn(cl, converter, **overrides)

    def structure(value: object, _: object) -> object:
        if type(value) is not dict:
            raise _Expected("an object", value)
        normal: dict[str, object] = {}
        written: dict[str, str] = {}
        given: dict[str, object] = value
        for key, item in given.items():
            name = spellings.get(key, key)
            if name in written:
                raise _Problem(f"given twice (also as {written[name]})", key=key)
            normal[name] = item
            written[name] = key
        try:
            return inner(normal, cl)
        except ClassValidationError as exc:
            exc.add_note(_WrittenKeys(written))
            raise

    return structure


def _checking(converter: Converter, field: attrs.Attribute[Any], check: _Check) -> Hook:
    base = check.base if check.base is not None else field.type
    base_hook = converter.get_structure_hook(base)

    def structure(value: object, _: object) -> object:
        try:
            result = base_hook(value, base)
        except _Expected as exc:
            # The field's own wording ("an integer 1-65535") says more than the type's.
            raise _Expected(check.expected, value) from exc
        if not check.test(result):
            # Show a string as expanded from ${ENV}, a number as the user wrote it.
            raise _Expected(check.expected, result if isinstance(result, str) else value)
        return result

    return structure


# ---- from cattrs' exception tree to one line ---------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    step = str(key) if _PLAIN_KEY.fullmatch(str(key)) else f"[{json.dumps(str(key))}]"
    if not path or step.startswith("["):
        return path + step
    return f"{path}.{step}"


def _note(exc: BaseException, kind: type[Any]) -> Any:
    return next((n for n in getattr(exc, "__notes__", ()) if type(n) is kind), None)


def _first_error(exc: BaseException, path: str = "") -> tuple[str, str]:
    """The key path and the problem of the first error in a detailed-validation tree."""
    if not isinstance(exc, ClassValidationError | IterableValidationError):
        return _leaf(exc, path)
    written = getattr(_note(exc, _WrittenKeys), "names", {})
    sub = exc.exceptions[0]
    if isinstance(sub, ForbiddenExtraKeysError):
        return _join(path, min(map(str, sub.extra_fields))), "unknown key"
    attribute = _note(sub, AttributeValidationNote)
    if attribute is not None:
        # A key that is missing was not written: name it the way the docs spell it.
        key = written.get(attribute.name) or _camel(attribute.name)
        return _first_error(sub, _join(path, key))
    item = _note(sub, IterableValidationNote)
    return _first_error(sub, path if item is None else _join(path, item.index))


def _leaf(exc: BaseException, path: str) -> tuple[str, str]:
    if isinstance(exc, _Problem):
        return (path if exc.key is None else _join(path, exc.key)), exc.text
    if isinstance(exc, KeyError):
        return path, "required key missing"
    return path, f"invalid value ({type(exc).__name__})"


def _error(path: str, text: str) -> ConfigError:
    return ConfigError(f"{path or 'config'}: {text}", param=path or None)


# ---- public entry points ------------------------------------------------------------


def parse_config(raw: object, environ: Mapping[str, str]) -> Config:
    """Turn parsed ``config.json`` data into a checked :class:`Config`.

    ``workspace`` is ``$HOME/.nanobot/workspace`` (``HOME`` from ``environ`` when present).
    Raises ConfigError (one line, ``param`` = the key path) on any unknown key, wrong type,
    bad value, unset ``${VAR}``, or a non-loopback ``api.host`` without ``api.apiKey``.
    """
    converter = make_config_converter(environ)
    try:
        config = converter.structure(raw, Config)
    except (ClassValidationError, IterableValidationError, _Problem) as exc:
        raise _error(*_first_error(exc)) from None
    config = attrs.evolve(config, workspace=_home(environ) / ".nanobot" / "workspace")
    _check_whole(config)
    return config


def _check_whole(config: Config) -> None:
    """Rules that relate two fields; checked after structuring, overrides included."""
    name = config.agents.defaults.provider
    if config.providers and name not in config.providers:
        names = ", ".join(sorted(config.providers))
        raise _error(
            "agents.defaults.provider",
            f"expected one of the configured providers ({names}), got {_show(name)}",
        )
    for channel in ("telegram", "discord", "slack"):
        settings = getattr(config.channels, channel)
        if settings.enabled and not settings.token:
            raise _error(f"channels.{channel}.token", f"expected a token when {channel} is enabled")
    webhook = config.channels.webhook
    if webhook.enabled and not _is_url(webhook.url):
        raise _error("channels.webhook.url", f"expected {_URL} when the webhook is enabled")
    host = config.api.host
    if not config.api.api_key and not _is_loopback(host):
        raise _error(
            "api.host",
            f"binding {host} needs api.apiKey (a non-loopback address is reachable by others)",
        )


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


def _merge_flags(raw: dict[str, object], overrides: ConfigOverrides) -> dict[str, object]:
    """The file's data with the flags written into ``api``, so one set of rules checks both."""
    pairs = (("host", overrides.host), ("port", overrides.port), ("timeout", overrides.timeout))
    flags = {key: value for key, value in pairs if value is not None}
    api = raw.get("api", {})
    if not flags or not isinstance(api, dict):
        return raw
    return {**raw, "api": {**api, **flags}}
