"""What a client may ask of a turn besides its message: its own instructions, the
shape of the answer (``response_format``) and tools of its own.

Clients of every kind send these with each request (the Agents SDK's
``instructions``, instructor's format prompt and schema, LangChain's bound tools), so
they belong to the one turn they come with and are never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import attrs

from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.models import JsonObject, JsonValue, ToolSpec

ClientInstructionsMode = Literal["append", "ignore"]
"""``append``: the client's system/developer text joins the agent's system prompt for
its turn; ``ignore``: it is dropped."""

CLIENT_INSTRUCTIONS_HEADING = "Instructions from the client for this turn:"


@attrs.frozen
class ResponseFormat:
    """The answer's shape a client asked for, as OpenAI's ``response_format``.

    ``wire`` is the object as the client sent it, passed on to the model unchanged;
    ``schema`` is the JSON schema of a ``json_schema`` request (None for
    ``json_object``).
    """

    kind: Literal["json_object", "json_schema"]
    wire: Mapping[str, JsonValue] = attrs.field(hash=False)
    schema: Mapping[str, JsonValue] | None = attrs.field(default=None, hash=False)


@attrs.frozen
class TurnOptions:
    """Everything a client asked of its turn besides the message itself."""

    instructions: str | None = None
    response_format: ResponseFormat | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: JsonValue = attrs.field(default=None, hash=False)
    parallel_tool_calls: bool | None = None

    def without_instructions(self) -> TurnOptions:
        return attrs.evolve(self, instructions=None)


NO_OPTIONS: Final = TurnOptions()


def response_format_of(value: object, param: str = "response_format") -> ResponseFormat | None:
    """A request's ``response_format``: None (absent, null or ``{"type": "text"}``), a
    ``json_object`` or a ``json_schema`` with its schema; else InvalidRequest naming
    the field at fault."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{param} must be an object", param)
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object", dict(value))
    if kind != "json_schema":
        raise InvalidRequest(
            f"{param}.type must be one of 'text', 'json_object', 'json_schema'", f"{param}.type"
        )
    spec = value.get("json_schema")
    where = f"{param}.json_schema"
    if not isinstance(spec, dict):
        raise InvalidRequest(f"{where} must be an object", where)
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise InvalidRequest(f"{where}.name must be a non-empty string", f"{where}.name")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{where}.schema must be an object", f"{where}.schema")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise InvalidRequest(f"{where}.strict must be a boolean", f"{where}.strict")
    return ResponseFormat("json_schema", dict(value), schema)


def check_n(value: object) -> None:
    """``n`` absent, null or 1; any other value is refused, saying why."""
    if value is None or (type(value) is int and value == 1):
        return
    raise InvalidRequest("n must be 1: the agent keeps one answer per turn", "n")


def client_tools(value: object, param: str = "tools") -> tuple[ToolSpec, ...]:
    """A request's ``tools``: each ``{"type": "function", "function": {"name",
    "description"?, "parameters"?}}``; InvalidRequest naming the first one at fault
    (two of one name included)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest(f"{param} must be a list", param)
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for index, tool in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise InvalidRequest(
                f"{where}.type must be 'function': only function tools are supported",
                f"{where}.type",
            )
        function = tool.get("function")
        if not isinstance(function, dict):
            raise InvalidRequest(f"{where}.function must be an object", f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                f"{where}.function.name must be a non-empty string", f"{where}.function.name"
            )
        if name in seen:
            raise InvalidRequest(f"two tools are named '{name}'", f"{where}.function.name")
        seen.add(name)
        description = function.get("description") or ""
        if not isinstance(description, str):
            param_at = f"{where}.function.description"
            raise InvalidRequest(f"{param_at} must be a string", param_at)
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            param_at = f"{where}.function.parameters"
            raise InvalidRequest(f"{param_at} must be an object", param_at)
        specs.append(ToolSpec(name, description, parameters))
    return tuple(specs)


def tool_choice_of(value: object, tools: tuple[ToolSpec, ...]) -> JsonValue:
    """A request's ``tool_choice`` as given ("none", "auto", "required" or a named
    function among ``tools``); InvalidRequest otherwise."""
    if value is None or value in ("none", "auto", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and any(spec.name == name for spec in tools):
            return value
        raise InvalidRequest(
            "tool_choice names a function that is not among the request's tools",
            "tool_choice.function.name",
        )
    raise InvalidRequest(
        "tool_choice must be 'none', 'auto', 'required' or a function", "tool_choice"
    )


def system_with_instructions(own: str | None, instructions: str | None) -> str | None:
    """The system prompt of a turn: the agent's own, then the client's instructions
    marked as the client's, so the model can tell whose rule is whose."""
    if not instructions:
        return own
    client = f"{CLIENT_INSTRUCTIONS_HEADING}\n{instructions}"
    return f"{own}\n\n{client}" if own else client


def wire_object(value: Mapping[str, JsonValue]) -> JsonObject:
    """A mapping as a plain JSON object (for a model adapter to encode)."""
    return dict(value)
