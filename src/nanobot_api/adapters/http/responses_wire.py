"""The Responses and Conversations wire formats coming in.

A ``POST /v1/responses`` body is translated into the chat completion body it means
(input items into messages, ``instructions`` into a system message, ``text.format``
into ``response_format``, function tools into chat tools) and read by the same parser
as chat completions, so attachments, session ids, models and every other rule are the
ones chat applies, with the same errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from nanobot_api.adapters.http.lifted import LiftedFile
from nanobot_api.adapters.http.wire import parse_chat_json
from nanobot_api.domain.attachments import UploadLimits
from nanobot_api.domain.conversation import Message, ToolCall
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.requests import HistoryMode
from nanobot_api.domain.responses import ResponseRequest
from nanobot_api.domain.sessions import SessionHeaders, requested_session

TOOL_EVENTS: Final = "nanobot.tool_events"
_ROLES: Final = {
    "user": "user",
    "system": "system",
    "developer": "system",
    "assistant": "assistant",
}


def parse_response_json(
    body: object,
    limits: UploadLimits,
    *,
    history: HistoryMode = "reject",
    headers: SessionHeaders | None = None,
    lifted: Mapping[str, LiftedFile] | None = None,
) -> ResponseRequest:
    """A JSON ``POST /v1/responses`` body as a ResponseRequest, or the InvalidRequest
    that refuses it (its ``param`` named as the Responses API names it where it can)."""
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    messages, shown = _messages(body.get("input"))
    instructions = _optional_str(body, "instructions")
    conversation = _conversation(body.get("conversation"))
    session_id = conversation if conversation is not None else body.get("session_id")
    named = requested_session(session_id, headers or SessionHeaders())
    if instructions:
        # The client's instructions for this turn, as chat reads a system message.
        messages = [{"role": "system", "content": instructions}, *messages]
    chat: dict[str, Any] = {
        "messages": messages,
        "model": body.get("model"),
        "stream": _flag(body, "stream", default=False),
    }
    if session_id is not None:
        chat["session_id"] = session_id
    fmt = _text_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
    request = parse_chat_json(
        chat, limits, history=history, headers=headers or SessionHeaders(), lifted=lifted
    )
    previous = _optional_str(body, "previous_response_id")
    inputs = tuple(shown)
    if instructions:
        inputs = (Message("system", instructions), *inputs)
    return ResponseRequest(
        request,
        named=named,
        previous_response_id=previous,
        instructions=instructions,
        input=inputs,
        background=_flag(body, "background", default=False),
        store=_flag(body, "store", default=True),
        stream=request.stream,
        tool_events=TOOL_EVENTS in _include(body.get("include")),
    )


def _messages(value: object) -> tuple[list[dict[str, Any]], list[Message]]:
    """The chat messages an ``input`` means, and the input as history would show it."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}], [Message.user(value)]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("input must be a string or a non-empty list of items", "input")
    messages: list[dict[str, Any]] = []
    shown: list[Message] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            message, text = _message(item, where)
            messages.append(message)
            shown.append(Message(message["role"], text))
        elif kind == "function_call":
            call = ToolCall(
                _str(item, "call_id", where),
                _str(item, "name", where),
                _str(item, "arguments", where),
            )
            wire = {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            if messages and messages[-1]["role"] == "assistant" and "tool_calls" in messages[-1]:
                messages[-1]["tool_calls"].append(wire)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [wire]})
            shown.append(Message.assistant(None, (call,)))
        elif kind == "function_call_output":
            call_id = _str(item, "call_id", where)
            output = item.get("output")
            text = output if isinstance(output, str) else _parts_text(output, where)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
            shown.append(Message.tool_result(call_id, text))
        else:
            param = f"{where}.type"
            raise InvalidRequest(
                f"{param} must be 'message', 'function_call' or 'function_call_output'", param
            )
    return messages, shown


def _message(item: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
    if role is None:
        param = f"{where}.role"
        raise InvalidRequest(f"{param} must be user, system, developer or assistant", param)
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}, content
    if not isinstance(content, list):
        param = f"{where}.content"
        raise InvalidRequest(f"{param} must be a string or a list of content parts", param)
    parts: list[dict[str, Any]] = []
    texts: list[str] = []
    for index, part in enumerate(content):
        param = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            text = _str(part, "text", param)
            parts.append({"type": "text", "text": text})
            texts.append(text)
        elif kind == "input_image":
            url = part.get("image_url")
            parts.append({"type": "image_url", "image_url": {"url": url}})
            texts.append("[image]")
        elif kind == "input_file":
            file: dict[str, Any] = {"file_data": part.get("file_data")}
            if part.get("filename") is not None:
                file["filename"] = part["filename"]
            parts.append({"type": "file", "file": file})
            texts.append(f"[file: {part.get('filename') or 'unnamed'}]")
        else:
            raise InvalidRequest(
                f"{param}.type must be one of 'input_text', 'input_image', 'input_file'",
                f"{param}.type",
            )
    if role != "user":
        # Only the user's message may carry files; the others are read for their text.
        return {"role": role, "content": "\n".join(t for t in texts)}, "\n".join(texts)
    return {"role": role, "content": parts}, "\n".join(texts)


def _parts_text(value: object, where: str) -> str:
    if isinstance(value, list):
        return "\n".join(
            str(p.get("text", "")) for p in value if isinstance(p, dict) and "text" in p
        )
    param = f"{where}.output"
    raise InvalidRequest(f"{param} must be a string", param)


def _conversation(value: object) -> object:
    """The conversation id: given as a string or as ``{"id": ...}``."""
    if isinstance(value, dict):
        if "id" not in value:
            raise InvalidRequest("conversation.id is required", "conversation.id")
        return value["id"]
    return value


def _text_format(value: object) -> dict[str, Any] | None:
    """``text.format`` as chat's ``response_format``; plain text needs none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("text must be an object", "text")
    fmt = value.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise InvalidRequest(
            "text.format.type must be 'text', 'json_object' or 'json_schema'", "text.format.type"
        )
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": schema}


def _tools(value: object) -> list[dict[str, Any]]:
    """The client's function tools as chat tools; tools of other kinds are ignored."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("tools must be a list", "tools")
    tools = []
    for index, tool in enumerate(value):
        if isinstance(tool, dict) and tool.get("type") == "function":
            where = f"tools[{index}]"
            function = {"name": _str(tool, "name", where)}
            for key in ("description", "parameters", "strict"):
                if tool.get(key) is not None:
                    function[key] = tool[key]
            tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: object) -> object:
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": value.get("name")}}
    return value


def _include(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest("include must be a list of strings", "include")
    return value


def _flag(body: Mapping[str, Any], name: str, *, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean", name)
    return value


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", name)
    return value


def _str(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        param = f"{where}.{name}"
        raise InvalidRequest(f"{param} must be a string", param)
    return value


def conversation_items(value: object) -> tuple[Message, ...]:
    """The initial ``items`` of a new conversation, as messages (their text only)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("items must be a list", "items")
    _, shown = _messages(value) if value else ([], [])
    return tuple(shown)
