"""The strict converter behind config.json, and how its errors become one line.

Rules: unknown keys are refused; each key may be written in snake_case or camelCase
(not both); JSON types are checked exactly (no coercion); ``${VAR}`` expands in every
string; each field's value rule (``checked``) runs after its type check; the first
problem found becomes a ConfigError naming its key path.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, get_args, get_origin

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
from nanobot_api.domain.text import shorten

_CHECK = "nanobot_check"
FROM_FILE = "nanobot_from_file"


@attrs.frozen
class _Check:
    """A value rule of one field; ``base`` is the JSON type checked first (None: the field's)."""

    test: Callable[[Any], bool]
    expected: str
    base: object = None


def checked(default: Any, test: Callable[[Any], bool], expected: str, base: object = None) -> Any:
    # Returns attrs' field specifier; typed Any so each field keeps its own annotation.
    return attrs.field(default=default, metadata={_CHECK: _Check(test, expected, base)})


# ---- the strict converter ---------------------------------------------------------


class Problem(ValueError):
    """A fault found by one of our hooks; ``key`` is set when it lies one key deeper."""

    def __init__(self, text: str, key: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.key = key


class _Expected(Problem):
    def __init__(self, expected: str, got: object) -> None:
        super().__init__(f"expected {expected}, got {show(got)}")


class _WrittenKeys(str):
    """A note on a ClassValidationError: attribute name -> the key as the user spelled it."""

    names: dict[str, str]

    def __new__(cls, names: dict[str, str]) -> _WrittenKeys:
        note = super().__new__(cls, "keys as written")
        note.names = names
        return note


def show(value: object, limit: int = 60) -> str:
    try:
        text = json.dumps(value, default=repr)
    except ValueError:  # an int past Python's 4300-digit str() limit
        text = "a huge number"
    return shorten(text, limit)


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
            raise Problem(f"environment variable {name} is not set")
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
        if field.metadata.get(FROM_FILE, True) is False:
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
                raise Problem(f"given twice (also as {written[name]})", key=key)
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
            # The field's own wording ("an integer 0-65535") says more than the type's.
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


def first_error(exc: BaseException, path: str = "") -> tuple[str, str]:
    """The key path and the problem of the first error in a detailed-validation tree."""
    if not isinstance(exc, ClassValidationError | IterableValidationError):
        return _leaf(exc, path)
    written = getattr(_note(exc, _WrittenKeys), "names", {})
    sub = exc.exceptions[0]
    if isinstance(sub, ForbiddenExtraKeysError):
        key = min(map(str, sub.extra_fields))
        return _join(path, key), "unknown key" + _did_you_mean(key, sub.cl)
    attribute = _note(sub, AttributeValidationNote)
    if attribute is not None:
        # A key that is missing was not written: name it the way the docs spell it.
        key = written.get(attribute.name) or _camel(attribute.name)
        return first_error(sub, _join(path, key))
    item = _note(sub, IterableValidationNote)
    return first_error(sub, path if item is None else _join(path, item.index))


def _did_you_mean(key: str, cl: type[Any]) -> str:
    """`` (did you mean "apiKey"?)`` when a known key of ``cl`` is close to ``key``."""
    known = {
        _camel(field.name): field.name
        for field in attrs.fields(cl)
        if field.metadata.get(FROM_FILE, True) is not False
    }
    # Case and underscores are what people get wrong most ("apikey", "api-key", "APIKey").
    folded = {re.sub(r"[_-]", "", name).lower(): name for name in known}
    plain = re.sub(r"[_-]", "", key).lower()
    close = [folded[plain]] if plain in folded else []
    close = close or [folded[m] for m in difflib.get_close_matches(plain, folded, n=1, cutoff=0.75)]
    return f" (did you mean {json.dumps(close[0])}?)" if close else ""


def _leaf(exc: BaseException, path: str) -> tuple[str, str]:
    if isinstance(exc, Problem):
        return (path if exc.key is None else _join(path, exc.key)), exc.text
    if isinstance(exc, KeyError):
        return path, "required key missing"
    return path, f"invalid value ({type(exc).__name__})"


def config_error(path: str, text: str) -> ConfigError:
    return ConfigError(f"{path or 'config'}: {text}", param=path or None)
